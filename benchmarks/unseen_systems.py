"""The HWM against the MLP on systems nobody here wrote (hwm_studio/data/foreign.py), as a user's files.

    python benchmarks/unseen_systems.py                          # every system, HWM and MLP, seed 0
    python benchmarks/unseen_systems.py --systems wall_chain --steps 500 --seeds 0 1 2

Each system's files carry only its name and states, so the models are configured exactly as for a
user's file (`hwm-studio train --data FILE`, the CLI's default steps and horizon). Per model it
reports, on held-out trajectories: the one-step error and the valid prediction time (VPT) over the
test trajectories (training/evaluate.py, the one definition of both), the true energy's error over
1000 predicted steps for conservative systems (H from the system's own formula), the training
wall time, and for the HWM the learned coupling of every pair (RMS pair force on the test states)
beside the pairs that truly interact. Writes benchmarks/results/unseen_systems.json (merged: rows
of systems, models and seeds not re-run are kept).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _report import locked, merged_rows, spread

from hwm_studio.cli import TRAIN_HORIZON, TRAIN_STEPS
from hwm_studio.data.foreign import FOREIGN_SYSTEMS, ForeignSystem
from hwm_studio.io import atomic_write_text
from hwm_studio.training.evaluate import evaluate, predict_data
from hwm_studio.training.fit import TrainConfig, kind_defaults
from hwm_studio.training.run import train_run

OUT = Path(__file__).resolve().parent / "results" / "unseen_systems.json"
LONG = 1000  # steps of the energy test


# model labels beside the kinds: the HWM as it was before per-pair terms (one interaction shared
# by every pair), to show what they change
VARIANTS = {"hwm-shared": ("hwm", {"per_pair": False, "coupling_sparsity": 0.0})}


def score(system: ForeignSystem, kind: str, steps: int, seed: int, data: dict, workdir: Path) -> dict:
    label = kind
    kind, options = VARIANTS.get(label, (label, {}))
    lr, batch = kind_defaults(kind)
    cfg = TrainConfig(steps=steps, lr=lr, batch_size=batch, horizon=TRAIN_HORIZON, seed=seed, device="cpu")
    t0 = time.perf_counter()
    model, result, _ = train_run(
        data["train"],
        workdir / f"{system.name}_{label}_{seed}",
        kind,
        cfg,
        model_options=options,
        structure="auto" if kind == "hwm" else "full",
    )  # as `hwm-studio train` does
    seconds = time.perf_counter() - t0
    metrics, _, _ = evaluate(model, data["test"])
    row = {
        "system": system.name, "model": label, "seed": seed, "status": result.status,
        "one_step_mse": metrics["mse_at"]["1"], "rollout_mse": metrics["rollout_mse"], "vpt": metrics["vpt"],
        "horizon": metrics["horizon"], "train_seconds": round(seconds, 1),
    }  # fmt: skip
    if system.conservative:
        q_hat, p_hat = predict_data(model, data["long"], LONG)
        e_true = system.true_energy(data["long"].q, data["long"].p)
        err = system.true_energy(q_hat, p_hat) - e_true
        row["energy_mse_1000"] = float(np.mean(err[:, 1:] ** 2)) if np.isfinite(err).all() else float("inf")
    test = data["test"]
    strengths = model.couplings(torch.as_tensor(test.q.reshape(-1, *test.q.shape[2:]), dtype=torch.float32))
    if strengths is not None:
        row["couplings"] = {f"{i}-{j}": round(s, 4) for (i, j), s in strengths.items()}
        row["true_pairs"] = [f"{i}-{j}" for i, j in system.coupled]
    if model.config.structure is not None:
        row["structure"] = {k: model.config.structure[k] for k in ("kept", "removed")}
    return row


def markdown(rows: list[dict]) -> str:
    """The README's table: one row per system and model (mean and range over seeds)."""

    head = ("| system | model | one-step MSE | VPT (of 199) | energy MSE, 1000 steps | train s "
            "| learned couplings | structure |")  # fmt: skip
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    systems = list(dict.fromkeys(r["system"] for r in rows))
    for key in sorted(dict.fromkeys((r["system"], r["model"]) for r in rows), key=lambda k: systems.index(k[0])):
        group = [r for r in rows if (r["system"], r["model"]) == key]
        last = group[-1]
        couplings = ", ".join(f"{k}: {v:.2f}" for k, v in last.get("couplings", {}).items())
        if couplings:
            couplings += f" (true: {', '.join(last['true_pairs']) or 'none'})"
        structure = (", ".join(last["structure"]["kept"]) or "conservative") if "structure" in last else ""
        lines.append(
            f"| {key[0].removeprefix('user_')} | {key[1]} | {spread([r['one_step_mse'] for r in group], '.2e')} "
            f"| {spread([r['vpt'] for r in group], '.1f')} "
            f"| {spread([r['energy_mse_1000'] for r in group if 'energy_mse_1000' in r], '.2e')} "
            f"| {spread([r['train_seconds'] for r in group], '.0f')} | {couplings} | {structure} |"
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--systems", nargs="+", default=list(FOREIGN_SYSTEMS), choices=list(FOREIGN_SYSTEMS))
    ap.add_argument("--kinds", nargs="+", default=["hwm", "mlp"], help=f"model kinds, or {', '.join(VARIANTS)}")
    ap.add_argument("--steps", type=int, default=TRAIN_STEPS, help="optimiser steps per model (the CLI's default)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds (data is fixed)")
    ap.add_argument("--train", type=int, default=64, help="training trajectories")
    ap.add_argument("--points", type=int, default=200, help="time points per training and test trajectory")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--render", action="store_true", help="only print the README table from --out")
    args = ap.parse_args()
    if args.render:
        print(markdown(json.loads(Path(args.out).read_text())["rows"]))
        return 0
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.systems:
            system = FOREIGN_SYSTEMS[name]()
            data = {"train": system.simulate(args.train, args.points, seed=0),
                    "test": system.simulate(16, args.points, seed=100)}  # fmt: skip
            if system.conservative:
                data["long"] = system.simulate(16, LONG + 1, seed=200)
            for seed in args.seeds:
                for kind in args.kinds:
                    row = score(system, kind, args.steps, seed, data, Path(tmp))
                    print(json.dumps(row), flush=True)
                    rows.append(row)
    out = Path(args.out)
    with locked(out):
        rows = merged_rows(out, rows, lambda r: (r["system"], r["model"], r["seed"]))  # re-run rows replaced
        result = {
            "machine": f"{platform.machine()}, {args.threads} torch threads, torch {torch.__version__}",
            "steps": args.steps, "train_trajectories": args.train, "points": args.points, "rows": rows,
        }  # fmt: skip
        atomic_write_text(out, json.dumps(result, indent=1))
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
