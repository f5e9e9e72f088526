"""Gymnasium Pendulum-v1 end to end: learn from experience, swing up with MPC in the learned model.

    python benchmarks/pendulum_v1.py                 # HWM and MLP, 4,000 env steps, 10 episodes, CEM
    python benchmarks/pendulum_v1.py --env-steps 10000 --kinds mlp --results benchmarks/results/pendulum_v1_mlp10k.json

Runs exactly the README's commands (`hwm-studio train --env Pendulum-v1 ...` then
`hwm-studio plan RUN --env Pendulum-v1 --json`), each in its own process, plus the ceiling
(`plan --true-dynamics`), and writes their JSON to benchmarks/results/pendulum_v1.json with the
ratio of each learned model's mean return to the ceiling's (the goal: within 10%).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

from hwm_studio.io import atomic_write_text

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "results" / "pendulum_v1.json"


def cli(*args: str, threads: int) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run([sys.executable, "-m", "hwm_studio.cli", *args], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"hwm-studio {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kinds", nargs="+", default=["hwm", "mlp"], choices=["hwm", "mlp"])
    ap.add_argument("--env-steps", type=int, default=4000)
    ap.add_argument("--episodes", type=int, default=10)
    ap.add_argument("--planner", default="cem", choices=["cem", "mppi"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="/tmp/hwm_pendulum_v1", help="where the runs go")
    ap.add_argument("--results", default=str(OUT), help="results JSON")
    a = ap.parse_args()
    plan_args = ["--env", "Pendulum-v1", "--planner", a.planner, "--episodes", str(a.episodes), "--json"]
    report: dict = {
        "machine": f"{platform.machine()}, cpu, {a.threads} thread(s), torch {torch.__version__}",
        "settings": vars(a),
        "runs": {},
    }
    t0 = time.perf_counter()
    ceiling = json.loads(cli("plan", "--true-dynamics", *plan_args, threads=a.threads))
    report["runs"]["true dynamics"] = {**ceiling, "seconds": round(time.perf_counter() - t0, 1)}
    print(f"true dynamics: mean return {ceiling['mean_return']:.1f}", flush=True)
    for kind in a.kinds:
        run = Path(a.out) / kind
        t0 = time.perf_counter()
        cli("train", "--env", "Pendulum-v1", "--env-steps", str(a.env_steps), "--model", kind, "--out", str(run),
            threads=a.threads)  # fmt: skip
        trained = time.perf_counter() - t0
        result = json.loads(cli("plan", str(run), *plan_args, threads=a.threads))
        result["train_seconds"] = round(trained, 1)
        result["ratio_to_ceiling"] = result["mean_return"] / ceiling["mean_return"]
        report["runs"][kind] = result
        print(f"{kind}: mean return {result['mean_return']:.1f} from {result['env_steps']} env steps "
              f"({result['ratio_to_ceiling']:.3f} x the ceiling's), {result['ms_per_step']:.0f} ms per MPC step",
              flush=True)  # fmt: skip
        Path(a.results).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(a.results), json.dumps(report, indent=1) + "\n")
    atomic_write_text(Path(a.results), json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
