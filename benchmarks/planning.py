"""One CEM planning step on the default pendulum model: time, and the arithmetic it achieves.

    python benchmarks/planning.py                  # cpu (and cuda when present), PlaNet's CEM defaults
    python benchmarks/planning.py --device cuda --repeats 50

A CEM step with PlaNet's defaults (horizon 12, 1000 candidates, top 100, 10 iterations) is
120,000 model steps: 10 batched rollouts of 1000 x 12. Measured: the median wall time of whole
`CEM.plan` calls (warm start on, as in MPC), the same planner on the unfused autograd rollout
(what fusing saves), the FLOPs of one plan (counted by torch's FlopCounterMode on the same
rollout: matrix products only, so a lower bound), and the machine's own fp32 matrix-multiply
rate measured here (a 2048 x 2048 matmul), so the achieved FLOP/s are stated against a peak that
was measured, not quoted. Writes benchmarks/results/planning.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from hwm_studio.device import resolve_device
from hwm_studio.io import atomic_write_text
from hwm_studio.planning import CEM, SwingUp, model_rollout
from hwm_studio.pretrained import run_dir
from hwm_studio.state import PhaseState
from hwm_studio.systems import get_system
from hwm_studio.training.checkpoint import load_model

OUT = Path(__file__).resolve().parent / "results" / "planning.json"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_rate(device: torch.device, n: int = 2048, repeats: int = 10) -> float:
    """The fp32 matrix-multiply FLOP/s this machine reaches: the practical peak to compare with."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    for _ in range(2):
        a @ b
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - t0)


def time_plans(planner: CEM, rollout, state: PhaseState, cost, repeats: int, device: torch.device) -> list[float]:
    for _ in range(2):  # warm-up: traced graphs are built on first use
        planner.plan(rollout, state, cost)
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        planner.plan(rollout, state, cost)
        _sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def measure(device: torch.device, repeats: int, system: str, kind: str) -> dict:
    model = load_model(run_dir(system, kind), device)
    bound = get_system(system).action_bound
    cem = CEM(-bound, bound, horizon=12, candidates=1000, elites=100, iterations=10, seed=0)
    model_steps = cem.candidates * cem.horizon * cem.iterations
    state = PhaseState(torch.tensor([[[2.5]]], device=device), torch.tensor([[[0.0]]], device=device))
    cost = SwingUp(q_up=float(np.pi))
    fused = model_rollout(model)
    fused_ms = time_plans(cem, fused, state, cost, repeats, device)
    unfused = model_rollout(model)
    unfused.fused = False
    unfused_ms = time_plans(cem, unfused, state, cost, max(3, repeats // 5), device)
    with FlopCounterMode(display=False) as counter:
        cem.plan(unfused, state, cost)
    flops = counter.get_total_flops()
    median = float(np.median(fused_ms))
    peak = matmul_rate(device)
    return {
        "device": str(device),
        "model": f"{system}_{kind} ({sum(p.numel() for p in model.parameters())} parameters, "
        f"{model.describe()['integrator']})",
        "cem": {
            "horizon": cem.horizon,
            "candidates": cem.candidates,
            "elites": cem.elites,
            "iterations": cem.iterations,
        },
        "model_steps_per_plan": model_steps,
        "fused_ms": {"median": round(median, 1), "p95": round(float(np.percentile(fused_ms, 95)), 1)},
        "unfused_autograd_ms": {"median": round(float(np.median(unfused_ms)), 1)},
        "model_steps_per_s": round(model_steps / (median / 1e3)),
        "flops_per_plan_matmul": flops,
        "achieved_gflops": round(flops / (median / 1e3) / 1e9, 2),
        "measured_matmul_peak_gflops": round(peak / 1e9, 1),
        "fraction_of_peak": round(flops / (median / 1e3) / peak, 4),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="all", help="cpu, cuda, or all (cpu and cuda when present)")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--system", default="pendulum")
    ap.add_argument("--kind", default="hwm")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) if a.device == "all" else [a.device]
    report = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "runs": [],
    }
    for name in devices:
        r = measure(resolve_device(name), a.repeats, a.system, a.kind)
        report["runs"].append(r)
        print(f"{r['device']}: one CEM plan ({r['model_steps_per_plan']:,} model steps) {r['fused_ms']['median']} ms "
              f"median (unfused autograd {r['unfused_autograd_ms']['median']} ms); "
              f"{r['achieved_gflops']} GFLOP/s of matmul = {100 * r['fraction_of_peak']:.1f}% of the measured "
              f"{r['measured_matmul_peak_gflops']} GFLOP/s")  # fmt: skip
    OUT.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(OUT, json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
