"""The data-efficiency curve: how a model's long-horizon quality grows with the trajectories it learns from.

    python benchmarks/data_efficiency.py                                   # the full grid (hours on CPU)
    python benchmarks/data_efficiency.py --systems pendulum --steps 1000   # one system, shorter training
    python benchmarks/data_efficiency.py --render                          # table and plot from the JSON

For each system, one held-out set (TEST trajectories of LONG steps, never trained on) scores every
model; each seed draws its own pool of training trajectories, and the size-n set is the pool's first
n (so a larger set contains the smaller ones). Every model trains as `hwm-studio train` trains it
(`train_run`: a fifth of the trajectories held out for validation, the CLI's horizon; the HWM picks
its structure), with the same steps whatever n is, so the curve measures data, not compute.
Per (system, model, n, seed): the valid prediction time over the LONG steps and the true energy's
MSE over them (training/evaluate.py, the one definition of both; all systems here conserve energy).
Writes benchmarks/results/data_efficiency.json (rows of runs not redone are kept) and a PNG, and
prints, per system, how many trajectories the MLP needs to reach the HWM's VPT at 8.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _report import merged_rows, spread

from hwm_studio.cli import TRAIN_HORIZON, TRAIN_STEPS
from hwm_studio.io import atomic_write_text
from hwm_studio.training.evaluate import evaluate
from hwm_studio.training.fit import TrainConfig, kind_defaults
from hwm_studio.training.run import system_dataset, train_run

RESULTS = Path(__file__).resolve().parent / "results"
SYSTEMS = ("pendulum", "chain", "three_body", "double_pendulum")
KINDS = ("hwm", "mlp", "node", "hnn")
SIZES = (2, 4, 8, 16, 32, 64, 128)
REFERENCE_SIZE = 8  # "trajectories the MLP needs to match the HWM's VPT at this many"
TEST, LONG = 32, 1000  # held-out trajectories and the steps they are scored over
TEST_SEED = 10_000  # far from every training pool's seed


def held_out(system: str) -> object:
    return system_dataset(system, TEST, LONG + 1, control="zero", seed=TEST_SEED)


def train_pool(system: str, size: int, seed: int, points: int) -> object:
    return system_dataset(system, size, points, control="zero", seed=seed)


def score(system: str, kind: str, n: int, seed: int, pool, test, steps: int, workdir: Path) -> dict:
    lr, batch = kind_defaults(kind)
    cfg = TrainConfig(steps=steps, lr=lr, batch_size=batch, horizon=TRAIN_HORIZON, seed=seed, device="cpu")
    t0 = time.perf_counter()
    model, result, _ = train_run(
        pool.select(np.arange(n)), workdir / f"{system}_{kind}_{n}_{seed}", kind, cfg,
        structure="auto" if kind == "hwm" else "full",
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    metrics, _, _ = evaluate(model, test, LONG)
    energy = metrics["energy_mse"]
    return {
        "system": system, "model": kind, "trajectories": n, "seed": seed, "status": result.status,
        "vpt": metrics["vpt"], "energy_mse": energy if energy is not None and math.isfinite(energy) else None,
        "one_step_mse": metrics["mse_at"]["1"], "train_seconds": round(seconds, 1), "steps": steps,
    }  # fmt: skip


def _group(rows: list[dict], system: str, model: str, n: int) -> list[dict]:
    return [r for r in rows if (r["system"], r["model"], r["trajectories"]) == (system, model, n)]


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def trajectories_to_match(rows: list[dict], system: str, model: str = "mlp", reference: str = "hwm") -> str:
    """The fewest trajectories at which `model`'s mean VPT reaches `reference`'s at REFERENCE_SIZE."""
    target = _mean([r["vpt"] for r in _group(rows, system, reference, REFERENCE_SIZE)])
    if math.isnan(target):
        return f"no {reference} row at {REFERENCE_SIZE} trajectories"
    sizes = sorted({r["trajectories"] for r in rows if (r["system"], r["model"]) == (system, model)})
    for n in sizes:
        if _mean([r["vpt"] for r in _group(rows, system, model, n)]) >= target:
            return f"{n} (the {reference}'s VPT at {REFERENCE_SIZE}: {target:.1f} steps)"
    return f"more than {max(sizes)} (the {reference}'s VPT at {REFERENCE_SIZE}: {target:.1f} steps)" if sizes else "-"


def markdown(rows: list[dict]) -> str:
    """Per system: VPT and energy MSE against training trajectories, mean (range) over seeds."""
    lines = []
    for system in dict.fromkeys(r["system"] for r in rows):
        sizes = sorted({r["trajectories"] for r in rows if r["system"] == system})
        models = list(dict.fromkeys(r["model"] for r in rows if r["system"] == system))
        title = f"**{system}**: VPT over {LONG} held-out steps (energy MSE below it), by training trajectories"
        header = "| model | " + " | ".join(str(n) for n in sizes) + " |"
        lines += [title, "", header, "|---|" + "---|" * len(sizes)]
        for model in models:
            vpt = [spread([r["vpt"] for r in _group(rows, system, model, n)], ".0f") for n in sizes]
            energy = [spread([r["energy_mse"] for r in _group(rows, system, model, n) if r["energy_mse"] is not None],
                             ".1e") for n in sizes]  # fmt: skip
            lines.append(f"| {model} | " + " | ".join(f"{v}<br>{e}" for v, e in zip(vpt, energy, strict=True)) + " |")
        lines += ["", f"MLP trajectories to reach the HWM's VPT at {REFERENCE_SIZE}: "
                  f"{trajectories_to_match(rows, system)}", ""]  # fmt: skip
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    """VPT and energy MSE against trajectories (log x), a line per model, the seeds' range shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = list(dict.fromkeys(r["system"] for r in rows))
    fig, axes = plt.subplots(2, len(systems), figsize=(4 * len(systems), 6.5), squeeze=False)
    for col, system in enumerate(systems):
        for model in dict.fromkeys(r["model"] for r in rows if r["system"] == system):
            sizes = sorted({r["trajectories"] for r in rows if (r["system"], r["model"]) == (system, model)})
            for row, (metric, log) in enumerate((("vpt", False), ("energy_mse", True))):
                vals = [[r[metric] for r in _group(rows, system, model, n) if r[metric] is not None] for n in sizes]
                keep = [i for i, v in enumerate(vals) if v]
                xs = [sizes[i] for i in keep]
                ax = axes[row][col]
                (line,) = ax.plot(xs, [np.mean(vals[i]) for i in keep], marker="o", label=model)
                ax.fill_between(xs, [min(vals[i]) for i in keep], [max(vals[i]) for i in keep],
                                color=line.get_color(), alpha=0.15)  # fmt: skip
                ax.set_xscale("log", base=2)
                ax.set_xticks(xs, [str(x) for x in xs])
                if log:
                    ax.set_yscale("log")
        axes[0][col].set_title(system)
        axes[0][col].set_ylabel(f"VPT (steps of {LONG})")
        axes[1][col].set_ylabel(f"true-energy MSE over {LONG} steps")
        axes[1][col].set_xlabel("training trajectories")
    axes[0][0].legend()
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)  # atomic: a reader never sees half a PNG


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--systems", nargs="+", default=list(SYSTEMS))
    ap.add_argument("--kinds", nargs="+", default=list(KINDS))
    ap.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="training trajectories")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=TRAIN_STEPS, help="optimiser steps per model (the CLI's default)")
    ap.add_argument("--points", type=int, default=100, help="time points per training trajectory")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(RESULTS / "data_efficiency.json"))
    ap.add_argument("--render", action="store_true", help="only print the table and redraw the plot from --out")
    args = ap.parse_args()
    if min(args.sizes) < 2:
        ap.error("--sizes: a model needs >= 2 trajectories (one is held out for validation)")
    out = Path(args.out)
    if args.render:
        rows = json.loads(out.read_text())["rows"]
    else:
        torch.set_num_threads(args.threads)
        rows = []
        with tempfile.TemporaryDirectory() as tmp:
            for system in args.systems:
                test = held_out(system)
                for seed in args.seeds:
                    pool = train_pool(system, max(args.sizes), seed, args.points)
                    for n in sorted(set(args.sizes)):
                        for kind in args.kinds:
                            row = score(system, kind, n, seed, pool, test, args.steps, Path(tmp))
                            print(json.dumps(row), flush=True)
                            rows.append(row)
        key = lambda r: (r["system"], r["model"], r["trajectories"], r["seed"])  # noqa: E731
        rows = [r for r in merged_rows(out, rows, key) if r["steps"] == args.steps]  # one training budget per file
        result = {
            "machine": f"{platform.machine()}, {args.threads} torch threads, torch {torch.__version__}",
            "steps": args.steps, "points": args.points, "test_trajectories": TEST, "scored_steps": LONG,
            "rows": rows,
        }  # fmt: skip
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, json.dumps(result, indent=1))
    plot(rows, out.with_suffix(".png"))
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
