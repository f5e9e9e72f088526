"""A training run end to end: data in, a checkpointed run directory out.

Used by `hwm-studio train` and the studio's Train tab. Input is validated before anything is
written, so bad input never touches an existing run directory; during training the run is
saved whenever validation improves, so an interrupted run keeps its last good checkpoint. A run
that diverges ends on its last good weights, saved as its checkpoint. A run directory that cannot
be written (a full disk, a directory made read-only or replaced by a file) stops the run at once
with a RunSaveError that holds the model; one removed mid-run is made again by the next save.
Data-parallel (training/distributed.py), every rank trains and rank 0 alone writes the run.
"""

from __future__ import annotations

import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from hwm_studio.data.format import TrajectoryData
from hwm_studio.data.simulate import simulate
from hwm_studio.models import WorldModel, build_model, config_from_data
from hwm_studio.systems import get_system
from hwm_studio.training import distributed
from hwm_studio.training.checkpoint import CheckpointError, RunSaveError, save_metrics, save_run
from hwm_studio.training.evaluate import evaluate
from hwm_studio.training.fit import Callback, FitResult, TrainConfig, fit, seed_everything
from hwm_studio.training.structure import fit_structure


def split_trajectories(
    data: TrajectoryData, val_fraction: float, seed: int
) -> tuple[TrajectoryData, TrajectoryData | None]:
    """Random split by trajectory (never by time within one); no validation set for N = 1."""
    n = data.n_trajectories
    if n < 2 or val_fraction <= 0:
        return data, None
    n_val = min(n - 1, max(1, round(val_fraction * n)))
    order = np.random.default_rng(seed).permutation(n)
    return data.select(np.sort(order[n_val:])), data.select(np.sort(order[:n_val]))


def system_dataset(
    system_name: str,
    trajectories: int = 64,
    points: int = 100,
    damping: float = 0.0,
    control: str = "random",
    seed: int = 0,
    params: dict[str, float] | None = None,
    frame_size: int | None = None,
) -> TrajectoryData:
    """Simulated training data for a named system (random actions excite the input map)."""
    return simulate(
        get_system(system_name, **(params or {})),
        n_trajectories=trajectories,
        n_times=points,
        damping=damping,
        control=control,
        seed=seed,
        frame_size=frame_size,
    )


def check_trainable(data: TrajectoryData, horizon: int) -> None:
    """Problems that make a data set untrainable, as clear errors (before any file is written)."""
    if data.n_times < 2:
        raise ValueError("trajectories need at least 2 time points")
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")


def train_run(
    data: TrajectoryData,
    out: str | Path,
    kind: str = "hwm",
    train_config: TrainConfig | None = None,
    val_fraction: float = 0.2,
    model_options: dict[str, Any] | None = None,
    callbacks: list[Callback] | None = None,
    stop: threading.Event | None = None,
    source: dict[str, Any] | None = None,
    model: WorldModel | None = None,
    structure: str = "full",
) -> tuple[WorldModel, FitResult, dict[str, Any]]:
    """Train a `kind` model on `data`, checkpointing into `out`; returns model, result, metrics.

    Pass `model` to continue training one you hold (the studio does, to draw it while it learns);
    otherwise a fresh one is built from the data. `structure` (HWM only, training/structure.py):
    'full' keeps friction and residual (what the pretrained assets and the planning loop use),
    'auto' keeps each only where held-out rollouts need it (the CLI's default), 'conservative'
    trains without them. Data-parallel, only rank 0 writes `out` and evaluates the result (other
    ranks' metrics have no 'val_eval'); every rank returns the same model and result.
    """
    cfg = train_config or TrainConfig()
    check_trainable(data, cfg.horizon)
    train, val = split_trajectories(data, val_fraction, cfg.seed)
    if model is None:
        seed_everything(cfg.seed)  # weights are initialised here, before fit() runs: seed first
        model = build_model(config_from_data(train, kind, **(model_options or {})))
    elif model.kind != kind:
        raise ValueError(f"train_run was given a {model.kind!r} model but asked to train {kind!r}")
    out = Path(out)
    train_dict = {**asdict(cfg), "source": source or {}, "val_fraction": val_fraction, "structure": structure}
    if distributed.world_size() > 1:
        train_dict["processes"] = distributed.world_size()  # data-parallel: batch_size is the global batch
    writer = distributed.is_writer()
    best = {"val": float("inf")}
    current = {"model": model}
    saved: dict[str, Any] = {"step": None, "error": None}

    def checkpoint_on_improvement(event: dict[str, Any]) -> bool:
        if saved["error"] is not None:
            return False
        if writer and event["event"] == "validation" and event["val_rollout_mse"] < best["val"]:
            progress = {"status": "training", "steps_done": event["step"],
                        "best_val_rollout_mse": event["val_rollout_mse"]}  # fmt: skip
            try:
                save_run(out, current["model"], metrics=progress, train_config=train_dict)
            except (OSError, CheckpointError) as exc:  # the disk, not the model: stop, keep the model
                saved["error"], saved["at"] = exc, event["step"]
                return False
            best["val"], saved["step"] = event["val_rollout_mse"], event["step"]
        return True

    def not_saved(exc: BaseException, step: int, result: FitResult) -> RunSaveError:
        last = "nothing was saved" if saved["step"] is None else f"the last checkpoint saved is of step {saved['step']}"
        return RunSaveError(f"could not save the run to {out} ({exc}); training stopped at step {step}, the model "
                            f"is kept in memory; {last}", model, result)  # fmt: skip

    def rebuilt(new: WorldModel) -> None:  # parts removed: the next checkpoints are of the new form
        current["model"] = new
        best["val"] = float("inf")

    every = [checkpoint_on_improvement, *(callbacks or [])]
    if model.kind == "hwm":
        model, result = fit_structure(model, train, cfg, val, structure, every, stop, rebuilt)
    else:
        result = fit(model, train, cfg, val=val, callbacks=every, stop=stop)
    if saved["error"] is not None:
        raise not_saved(saved["error"], saved["at"], result)
    metrics: dict[str, Any] = {
        "status": result.status,
        "message": result.message,
        "steps_done": result.steps_done,
        "best_val_rollout_mse": result.best_val,
        "train_seconds": result.seconds,
        "history": [
            {k: v for k, v in r.items() if k != "event"}
            for r in result.history
            if r["step"] % max(1, cfg.steps // 200) == 0 or "val_rollout_mse" in r
        ],
    }
    if not writer:
        return model, result, metrics
    if val is not None:
        metrics["val_eval"] = evaluate(model, val)[0]
    try:
        save_run(out, model, metrics=metrics, train_config=train_dict)
    except (OSError, CheckpointError) as exc:
        raise not_saved(exc, result.steps_done, result) from None
    return model, result, metrics


def finite_difference_labels(data: TrajectoryData) -> tuple[np.ndarray, np.ndarray]:
    """Central-difference estimates of (dq/dt, dp/dt), one-sided at the ends (for derivative losses)."""
    return np.gradient(data.q, data.dt, axis=1), np.gradient(data.p, data.dt, axis=1)


def save_eval(run_dir: str | Path, metrics: dict[str, Any], name: str) -> None:
    """Record an evaluation beside the run's metrics (used by the pretrained-asset script)."""
    from hwm_studio.training.checkpoint import load_metrics

    current = load_metrics(run_dir)
    current.setdefault("evals", {})[name] = metrics
    save_metrics(run_dir, current)
