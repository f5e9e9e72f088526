"""Server-side latency of the studio: one slider change -> every view's data recomputed.

    python benchmarks/latency.py            # pendulum, three_body and the HGN pixel models, 40 changes each

Measures `ExplorePanel.recompute` as a slider triggers it (the action slider: truth and both models
re-run; the dissipation slider: models only), without a browser, on CPU with one torch thread
(as served). Also times the pieces: truth, model (fused), baseline, phase planes, frames.
Writes benchmarks/results/latency.json.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from hwm_studio.io import atomic_write_text
from hwm_studio.ui.studio import Studio
from hwm_studio.workspace import Workspace

OUT = Path(__file__).resolve().parent / "results" / "latency.json"


def _stats(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {"median_ms": round(float(np.median(a)), 1), "p95_ms": round(float(np.percentile(a, 95)), 1), "n": len(a)}


def measure(system: str, n: int = 40) -> dict:
    studio = Studio(workspace=Workspace(Path("/tmp/hwm_latency_ws")), system=system)
    session = studio.session
    rng = np.random.default_rng(0)
    results = {}
    for slider, name in (("action_0", "action slider (truth + models)"), ("dissipation_scale", "dissipation slider")):
        for _ in range(3):  # warm-up: traced graphs are built on first use
            setattr(studio, slider, float(rng.uniform(0.1, 0.9)))
        studio.explore.timings.clear()
        for _ in range(n):
            setattr(studio, slider, float(np.round(rng.uniform(0.05, 0.95), 3)))
        results[name] = _stats([t * 1e3 for t in studio.explore.timings])
    # the pieces, for the action slider's work
    spec, knobs = studio.explore.spec(), studio.explore.knobs(studio.session.scene.model)
    pieces: dict[str, list[float]] = {k: [] for k in ("truth", "model", "baseline", "planes", "frames")}
    for i in range(n):
        spec = type(spec)(**{**spec.__dict__, "seed": 1000 + i})
        t0 = time.perf_counter()
        studio.session.scene.truth(spec)
        t1 = time.perf_counter()
        r = studio.session.scene.run(spec, knobs)
        t2 = time.perf_counter()
        studio.session.baseline_scene.run(spec, studio.explore.knobs(studio.session.baseline_scene.model))
        t3 = time.perf_counter()
        studio.explore._plane(studio.session.scene, spec, r.truth_q, r.truth_p, r.actions, 0, 0)
        studio.explore._plane(studio.session.baseline_scene, spec, r.truth_q, r.truth_p, r.actions, 0, 0)
        t4 = time.perf_counter()
        studio.session.scene.frames(r, 10)
        t5 = time.perf_counter()
        for k, dt in zip(pieces, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
            pieces[k].append(dt * 1e3)
    results["pieces (median ms)"] = {k: round(float(np.median(v)), 1) for k, v in pieces.items()}
    results["scene"] = (
        f"{system}, {studio.explore.steps}-step rollout, 64x64 frames, model {session.model_name} vs "
        f"{session.baseline_name}"
    )
    return results


def measure_pixels(system: str, n: int = 40) -> dict:
    """A system's HGN pixel models (HWM vs MLP): a new start renders the true frames, and both
    models read the first three, roll out and decode all 300 frames."""
    studio = Studio(workspace=Workspace(Path("/tmp/hwm_latency_ws")), system=system)
    session = studio.session
    studio.session.model_name = next(o for o in studio.session.param.model_name.objects if o.startswith("hwm-pixels"))
    for seed in range(3):  # warm-up
        studio.explore.seed = 500 + seed
    studio.explore.timings.clear()
    for seed in range(n):
        studio.explore.seed = 1000 + seed
    return {
        "seed slider (truth, frames, both pixel models)": _stats([t * 1e3 for t in studio.explore.timings]),
        "scene": f"{system}, {studio.explore.steps}-step rollout, model {session.model_name} vs "
        f"{session.baseline_name}",
    }


def main() -> int:
    torch.set_num_threads(1)
    report = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch thread, torch {torch.__version__}",
        "pendulum": measure("pendulum"),
        "three_body": measure("three_body"),
        **{f"{system}_pixels": measure_pixels(system) for system in ("spring", "pendulum", "two_body")},
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(OUT, json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
