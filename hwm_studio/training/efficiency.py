"""The data-efficiency protocol: long-horizon quality against the number of training trajectories.

One definition for the benchmark (benchmarks/data_efficiency.py), notebook 09 and the studio:
  - one held-out set per system (TEST trajectories of LONG steps from unseen starts, no actions),
    never trained on;
  - per seed a pool of training trajectories; the size-n set is the pool's first n, so a larger set
    contains the smaller ones and the curve measures data, not which trajectories were drawn;
  - every model trains as `hwm-studio train` trains it (`train_run`: a fifth of the trajectories
    held out for validation; the HWM picks its structure) with the same steps whatever n is;
  - scored by `evaluate` over the LONG steps: the valid prediction time and the true energy's MSE.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from hwm_studio.data.format import TrajectoryData
from hwm_studio.training.evaluate import evaluate
from hwm_studio.training.fit import TrainConfig, kind_defaults
from hwm_studio.training.run import system_dataset, train_run

SYSTEMS = ("pendulum", "chain", "three_body", "double_pendulum")
KINDS = ("hwm", "mlp", "node", "hnn")
SIZES = (2, 4, 8, 16, 32, 64, 128)
REFERENCE_SIZE = 8  # "trajectories the MLP needs to reach the HWM's VPT at this many"
TEST, LONG = 32, 1000  # held-out trajectories, and the steps they are scored over
TEST_SEED = 10_000  # far from every training pool's seed
POINTS = 100  # time points per training trajectory
# where the benchmark writes its rows (in a checkout of the repository; an installed package has none)
RESULTS_FILE = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "data_efficiency.json"


def load_results(path: str | Path = RESULTS_FILE) -> dict[str, Any] | None:
    """The benchmark's results file, or None when it has not been run here; ValueError, saying
    which file, when it is not one (truncated, or not the benchmark's)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        results = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not a data-efficiency results file: {exc}") from exc
    if not isinstance(results, dict) or not isinstance(results.get("rows"), list):
        raise ValueError(f"{path} is not a data-efficiency results file: it has no list of rows")
    return results


def held_out(system: str, steps: int = LONG, trajectories: int = TEST) -> TrajectoryData:
    return system_dataset(system, trajectories, steps + 1, control="zero", seed=TEST_SEED)


def training_pool(system: str, size: int, seed: int, points: int = POINTS) -> TrajectoryData:
    if size < 2:
        raise ValueError(f"a data-efficiency point needs >= 2 trajectories (one is held out), got {size}")
    return system_dataset(system, size, points, control="zero", seed=seed)


def score(
    system: str, kind: str, pool: TrajectoryData, n: int, test: TrajectoryData, steps: int, seed: int,
    horizon: int = TrainConfig.horizon, workdir: str | Path | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Train `kind` on the pool's first n trajectories and score it on `test`: one row."""
    if not 2 <= n <= pool.n_trajectories:
        raise ValueError(f"n must be between 2 and the pool's {pool.n_trajectories} trajectories, got {n}")
    lr, batch = kind_defaults(kind)
    cfg = TrainConfig(steps=steps, lr=lr, batch_size=batch, horizon=horizon, seed=seed, device="cpu")
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        t0 = time.perf_counter()
        model, result, _ = train_run(
            pool.select(np.arange(n)), Path(tmp) / "run", kind, cfg, structure="auto" if kind == "hwm" else "full"
        )
        seconds = time.perf_counter() - t0
    metrics, _, _ = evaluate(model, test, test.n_times - 1)
    energy = metrics["energy_mse"]
    return {
        "system": system, "model": kind, "trajectories": n, "seed": seed, "status": result.status,
        "vpt": metrics["vpt"], "energy_mse": energy if energy is not None and math.isfinite(energy) else None,
        "one_step_mse": metrics["mse_at"]["1"], "train_seconds": round(seconds, 1), "steps": steps,
        "scored_steps": test.n_times - 1,
    }  # fmt: skip


def rows_of(rows: list[dict], system: str, model: str, n: int) -> list[dict]:
    return [r for r in rows if (r["system"], r["model"], r["trajectories"]) == (system, model, n)]


def sizes_of(rows: list[dict], system: str, model: str) -> list[int]:
    """The training-set sizes measured for one model of one system, ascending."""
    return sorted({r["trajectories"] for r in rows if (r["system"], r["model"]) == (system, model)})


def curve(rows: list[dict], system: str, model: str, metric: str) -> dict[str, list[float]]:
    """One model's curve of `metric` over the sizes with a value: mean, min and max over seeds
    (what the benchmark's plot, the notebook and the studio draw; a diverged run has no energy)."""
    out: dict[str, list[float]] = {"n": [], "mean": [], "lo": [], "hi": []}
    for n in sizes_of(rows, system, model):
        values = [r[metric] for r in rows_of(rows, system, model, n) if r[metric] is not None]
        if values:
            for key, v in zip(out, (n, float(np.mean(values)), min(values), max(values)), strict=True):
                out[key].append(v)
    return out


def mean_vpt(rows: list[dict], system: str, model: str, n: int) -> float:
    values = [r["vpt"] for r in rows_of(rows, system, model, n)]
    return float(np.mean(values)) if values else math.nan


def trajectories_to_match(
    rows: list[dict], system: str, model: str = "mlp", reference: str = "hwm", at: int = REFERENCE_SIZE
) -> tuple[int | None, float]:
    """The fewest trajectories at which `model`'s mean VPT reaches `reference`'s at `at`
    trajectories (None: not within the sizes measured), and that target VPT (NaN: no such row)."""
    target = mean_vpt(rows, system, reference, at)
    if math.isnan(target):
        return None, target
    return next((n for n in sizes_of(rows, system, model) if mean_vpt(rows, system, model, n) >= target), None), target


def match_sentence(rows: list[dict], system: str, model: str = "mlp", reference: str = "hwm") -> str:
    """`trajectories_to_match` in words, as the README, the notebook and the studio say it."""
    n, target = trajectories_to_match(rows, system, model, reference)
    if math.isnan(target):
        return f"no {reference} row at {REFERENCE_SIZE} trajectories"
    sizes = sizes_of(rows, system, model)
    found = str(n) if n is not None else (f"more than {max(sizes)}" if sizes else "unmeasured")
    return f"{found} (the {reference}'s VPT at {REFERENCE_SIZE}: {target:.1f} steps)"
