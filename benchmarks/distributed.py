"""Data-parallel training, measured: 2 processes (torchrun, gloo) against 1 on the same total batch.

    python benchmarks/distributed.py                 # pendulum HWM, 300 steps, seeds 0 1 2 (~5 min on 2 cores)
    python benchmarks/distributed.py --seeds 0 --steps 100

Each run is the CLI as a user runs it: `hwm-studio train --system pendulum --structure full` (the
CLI's data: 64 trajectories of 100 points, 20% held out; batch 64, horizon 8), once per setting:
  - "1 process, 2 threads": one process, torch's default threads on this machine;
  - "1 process, 1 thread": OMP_NUM_THREADS=1;
  - "2 processes x 1 thread": `torchrun --standalone --nproc-per-node 2 -m hwm_studio train ...`
    (torchrun's default of one thread per process), each process 32 of the 64 windows a step;
  - "1 process, 1 thread, batch 32": one rank's share of the work alone, for timing only (a
    different batch: its errors are not comparable): what 2 processes would cost per step if the
    ranks' agreement and the machine's other load were free.
Settings run in interleaved rounds, one round per seed, so the machine's drift falls on all.
Per run: the held-out rollout error (metrics.json `val_eval.rollout_mse`, whole validation
trajectories) and best validation error, ms per optimiser step (fit's `train_seconds` / steps:
the loop with its 3 validations, not the start-up), the command's wall time (start-up included),
and the largest relative difference of the loss history from the 1-process 2-thread run of the
same seed. The noise the error differences are judged against is the spread over seeds.
Writes benchmarks/results/distributed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from hwm_studio.io import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).resolve().parent / "results" / "distributed.json"
ONE = [sys.executable, "-m", "hwm_studio"]
TWO = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "hwm_studio"]
SETTINGS = {  # label: (command prefix, extra environment, extra arguments)
    "1 process, 2 threads": (ONE, {}, []),
    "1 process, 1 thread": (ONE, {"OMP_NUM_THREADS": "1"}, []),
    "2 processes x 1 thread": (TWO, {}, []),
    "1 process, 1 thread, batch 32": (ONE, {"OMP_NUM_THREADS": "1"}, ["--batch-size", "32"]),
}


def train(
    prefix: list[str], extra_env: dict[str, str], extra: list[str], out: Path, steps: int, seed: int
) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # each setting says its threads
    env.update(extra_env, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    args = ["train", "--system", "pendulum", "--model", "hwm", "--structure", "full", "--steps", str(steps),
            "--seed", str(seed), "--device", "cpu", "--out", str(out), *extra]  # fmt: skip
    t0 = time.perf_counter()
    res = subprocess.run([*prefix, *args], capture_output=True, text=True, env=env, timeout=1800)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(prefix + args)} failed:\n{res.stderr[-3000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    return {
        "seed": seed,
        "val_rollout_mse": metrics["val_eval"]["rollout_mse"],
        "best_val_rollout_mse": metrics["best_val_rollout_mse"],
        "ms_per_step": 1e3 * metrics["train_seconds"] / metrics["steps_done"],
        "wall_s": wall,
        "losses": [r["loss"] for r in metrics["history"]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    a = parser.parse_args()
    load_before = os.getloadavg()
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in SETTINGS}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in a.seeds:
            for i, (label, (prefix, env, extra)) in enumerate(SETTINGS.items()):
                runs[label].append(train(prefix, env, extra, Path(tmp) / f"{i}_{seed}", a.steps, seed))
                r = runs[label][-1]
                print(f"seed {seed} {label:24s} val {r['val_rollout_mse']:.4g}  {r['ms_per_step']:.1f} ms/step  "
                      f"wall {r['wall_s']:.1f} s", flush=True)  # fmt: skip
    reference = runs["1 process, 2 threads"]
    summary = {}
    for label, rs in runs.items():
        loss_diff = [
            max(abs(x - y) / abs(y) for x, y in zip(r["losses"], ref["losses"], strict=True))
            for r, ref in zip(rs, reference, strict=True)
        ]
        summary[label] = {
            "val_rollout_mse": [r["val_rollout_mse"] for r in rs],
            "best_val_rollout_mse": [r["best_val_rollout_mse"] for r in rs],
            "ms_per_step": [round(r["ms_per_step"], 2) for r in rs],
            "ms_per_step_median": round(statistics.median(r["ms_per_step"] for r in rs), 2),
            "wall_s": [round(r["wall_s"], 1) for r in rs],
            "max_relative_loss_difference_from_1_process_2_threads": loss_diff,
        }
    vals = summary["1 process, 2 threads"]["val_rollout_mse"]
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "config": {
            "system": "pendulum",
            "model": "hwm",
            "structure": "full",
            "steps": a.steps,
            "batch": 64,
            "horizon": 8,
            "trajectories": 64,
            "points": 100,
            "val_fraction": 0.2,
            "validations": "every 100 steps and at the last",
        },
        "seeds": a.seeds,
        "settings": summary,
        "seed_spread_of_val_rollout_mse": [min(vals), max(vals)],
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(OUT, json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "settings"}, indent=1))
    for label, s in summary.items():
        print(f"{label:24s} median {s['ms_per_step_median']} ms/step; val rollout MSE {s['val_rollout_mse']}")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
