"""The HGN pixel protocol: pixel world models (HWM and the MLP baseline) on 32x32 frames.

    python benchmarks/hgn.py --task mass_spring            # CPU-sized defaults (see --help)
    python benchmarks/hgn.py --task pendulum --train 50000 --steps 100000   # full size, on cuda if present
    python benchmarks/hgn.py --task mass_spring --assets   # also store the runs as pretrained assets
    python benchmarks/hgn.py --task pendulum --style soft  # frames drawn another way (systems/render.py)
    python benchmarks/hgn.py --task mass_spring --seed 1   # another training seed: results/hgn_mass_spring_seed1.json

Trains both kinds on the same frames, scores the mean pixel MSE over 30 predicted steps on
held-out trajectories, and the MSE vs horizon up to `--long` x 30 steps (trained on shorter
windows: long-horizon stability), and whether the latent is the physics (the circular correlation
of the latent and true angles, or the R^2 of an affine map from true to latent positions).
Writes benchmarks/results/hgn_<task>.json (protocol details and caveats: hwm_studio/protocols/hgn.py).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import threading
import time
from pathlib import Path

import torch

from hwm_studio.device import resolve_device
from hwm_studio.io import atomic_write_text
from hwm_studio.protocols.hgn import PUBLISHED_X1E4, ROLLOUT, TASKS, dataset
from hwm_studio.systems.render import STYLES
from hwm_studio.training.checkpoint import load_metrics, load_model
from hwm_studio.training.evaluate import evaluate_pixels
from hwm_studio.training.fit import TrainConfig
from hwm_studio.training.run import save_eval, train_run

ROOT = Path(__file__).resolve().parent
ASSETS = ROOT.parent / "assets" / "models"
KINDS = ("hwm-pixels", "mlp-pixels")
CONTEXT = 3
CONSERVATIVE = {"dissipation": "none", "input_map": "none", "residual": False}


def asset_dir(task: str, kind: str) -> Path:
    return ASSETS / f"hgn_{task}_{kind.split('-')[0]}_pixels"


def _write(results: Path, report: dict) -> None:
    """Merge into the results file: other kinds' latest entries stay when only some were re-run."""
    results.parent.mkdir(parents=True, exist_ok=True)
    models = dict(report["models"])
    if results.exists():
        models = {**json.loads(results.read_text()).get("models", {}), **models}
    atomic_write_text(results, json.dumps({**report, "models": models}, indent=1) + "\n")


def _train(a: argparse.Namespace, train: object, run: Path, kind: str) -> tuple[str, int, float, str]:
    """Train one kind into `run` (within --budget-s if given): status, steps done, seconds, message."""
    cfg = TrainConfig(steps=a.steps, lr=a.lr, batch_size=a.batch_size, horizon=a.horizon,
                      val_every=max(1, a.steps // 10), device=a.device, seed=a.seed)  # fmt: skip
    options = dict(CONSERVATIVE) if kind == "hwm-pixels" and a.structure == "conservative" else {}
    for name in ("sprite_cells", "saliency_pool"):  # ablations of the pixel defaults
        if getattr(a, name) is not None:
            options[name] = getattr(a, name)
    stop = threading.Event()
    timer = threading.Timer(a.budget_s, stop.set) if a.budget_s else None
    if timer is not None:
        timer.start()
    t0 = time.perf_counter()
    _, result, _ = train_run(train, run, kind, cfg, val_fraction=0.1, model_options=options, stop=stop,  # type: ignore[arg-type]
                             source={"hgn": a.task})  # fmt: skip
    if timer is not None:
        timer.cancel()
    return result.status, result.steps_done, round(time.perf_counter() - t0, 1), result.message


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=list(TASKS), required=True)
    ap.add_argument("--train", type=int, default=800, help="training trajectories")
    ap.add_argument("--test", type=int, default=100, help="held-out trajectories")
    ap.add_argument("--steps", type=int, default=3000, help="optimiser steps per model")
    ap.add_argument("--horizon", type=int, default=12, help="final training rollout horizon")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--long", type=int, default=4, help="long test: this many times the 30-step rollout")
    ap.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--out", default=None, help="where runs go (default: a temporary folder)")
    ap.add_argument("--assets", action="store_true", help="copy the runs into assets/models as pretrained")
    ap.add_argument("--structure", choices=("conservative", "port-hamiltonian"), default="conservative",
                    help="the HWM's latent dynamics: conservative (no friction, input or residual: HGN's "
                         "assumption, true of these systems) or the full port-Hamiltonian form")  # fmt: skip
    ap.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help="stop each model's training after this many seconds (keeps its best weights so far)",
    )
    ap.add_argument("--score-only", action="store_true",
                    help="score the runs in --out again with the current evaluation, without training")  # fmt: skip
    ap.add_argument("--style", choices=list(STYLES), default="default", help="how the frames are drawn")
    ap.add_argument("--seed", type=int, default=0,
                    help="training seed (weights, validation split, batches); the data stay the same")  # fmt: skip
    ap.add_argument("--sprite-cells", type=int, default=None,
                    help="ablation: cells across a body template (default: the decoder's, two per pixel)")  # fmt: skip
    ap.add_argument("--saliency-pool", type=int, default=None,
                    help="ablation: the encoder's saliency pooling (default: encoder.saliency_pool_for, "
                         "3 where a body hangs from another, 1 elsewhere)")  # fmt: skip
    ap.add_argument("--results", default=None, help="results JSON (default: benchmarks/results/hgn_<task>.json)")
    a = ap.parse_args()
    if a.assets and a.style != "default":
        ap.error("--assets stores the task's default models: drop --style")
    if a.assets and (a.sprite_cells is not None or a.saliency_pool is not None):
        ap.error("--assets stores the task's default models: drop the ablation options")
    if a.threads:
        torch.set_num_threads(a.threads)
    device = resolve_device(a.device)
    # training trajectories are as long as the training windows need; test ones cover the score
    style = STYLES[a.style]
    train = dataset(a.task, a.train, CONTEXT, steps=a.horizon, seed=0, style=style)
    test = dataset(a.task, a.test, CONTEXT, steps=ROLLOUT, seed=1, style=style)
    long_test = dataset(a.task, a.test, CONTEXT, steps=a.long * ROLLOUT, seed=2, style=style)
    out_root = Path(a.out or f"/tmp/hgn_{a.task}")
    # the score of a model that only learned the background: the training frames' mean image
    mean_frame = (train.frames.astype("float32") / 255.0).mean(axis=(0, 1))  # type: ignore[union-attr]
    truth = test.frames[:, CONTEXT : CONTEXT + ROLLOUT].astype("float32") / 255.0  # type: ignore[index]
    mean_frame_x1e4 = float(((truth - mean_frame) ** 2).mean()) * 1e4
    report = {
        "task": a.task,
        "machine": f"{platform.machine()}, {device}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "published_x1e4": PUBLISHED_X1E4.get(a.task, {}),
        "mean_frame_baseline_x1e4": mean_frame_x1e4,
        "models": {},
    }
    suffix = ("" if a.style == "default" else f"_{a.style}") + ("" if a.seed == 0 else f"_seed{a.seed}")
    results = Path(a.results) if a.results else ROOT / "results" / f"hgn_{a.task}{suffix}.json"
    earlier = json.loads(results.read_text()).get("models", {}) if results.exists() else {}
    settings = {k: v for k, v in vars(a).items() if k not in ("out", "kinds", "score_only")}
    for kind in a.kinds:
        run = out_root / kind
        if a.score_only:  # what training did is in the run's own metrics
            done = load_metrics(run)
            status, steps_done, seconds, message = (
                done[k] for k in ("status", "steps_done", "train_seconds", "message")
            )
            settings = earlier.get(kind, {}).get("settings", settings)
            seconds = earlier.get(kind, {}).get("train_seconds", seconds)  # as timed when it trained
        else:
            status, steps_done, seconds, message = _train(a, train, run, kind)
        model = load_model(run, device)  # exactly what was saved
        score, _, _ = evaluate_pixels(model, test, ROLLOUT)
        long_score, _, _ = evaluate_pixels(model, long_test, a.long * ROLLOUT)
        entry = {
            "settings": settings,
            "status": status,
            "steps_done": steps_done,
            "train_seconds": round(seconds, 1),
            "pixel_mse_x1e4": score["pixel_mse"] * 1e4,
            "reconstruction_mse_x1e4": score["reconstruction_mse"] * 1e4,
            "latent": score["latent"],
            "long_curve_x1e4": [round(x * 1e4, 3) for x in long_score["pixel_mse_curve"]],
        }
        report["models"][kind] = entry
        long_end = entry["long_curve_x1e4"][-1]
        print(f"{kind}: {status} in {seconds:.0f} s; pixel MSE x1e-4 over {ROLLOUT} steps: "
              f"{entry['pixel_mse_x1e4']:.2f} (at {a.long * ROLLOUT} steps: {long_end:.2f}); latent "
              f"{score['latent']['metric']} {score['latent']['value']:.4f}")  # fmt: skip
        if a.assets and status != "completed":
            print(f"{kind}: not stored as an asset ({status}: {message})")
        elif a.assets:
            dest = asset_dir(a.task, kind)
            record = {"task": a.task, "test": score, "test_seed": 1, "context": CONTEXT, "test_trajectories": a.test}
            save_eval(run, record, "hgn")
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(run, dest)
        _write(results, report)  # after every model: a long run that is cut short keeps what it finished
    summary = {k: {"pixel_mse_x1e4": v["pixel_mse_x1e4"], "train_seconds": v["train_seconds"],
                   "latent": v["latent"]["value"]} for k, v in report["models"].items()}  # fmt: skip
    print(json.dumps({"mean_frame_baseline_x1e4": mean_frame_x1e4, **summary}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
