"""Held-out evaluation: roll out from each test trajectory's first state, replaying its actions.

Metrics (steps t = 1..H, errors in the data's own q, p coordinates; angles compared modulo 2 pi):
    rollout_mse  mean over steps, trajectories and coordinates of squared error
    mse_at       the same at steps 1, 10, 100 and H (those reachable)
    vpt          valid prediction time, in steps: per trajectory, the last step before the
                 normalised error sqrt(mean_c ((x_hat_c - x_c) / sigma_c)^2) first exceeds 0.1
                 (sigma_c: std of coordinate c over the test data); H if it never does; averaged
    energy_mse   when the data names a known system: mean squared difference of that system's
                 true H on predicted vs true states; None otherwise
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from hwm_studio.data.format import TrajectoryData
from hwm_studio.models.base import WorldModel
from hwm_studio.physics.rollout import flatten_time
from hwm_studio.systems import get_system, system_names

VPT_THRESHOLD = 0.1


@torch.no_grad()
def predict_data(model: WorldModel, data: TrajectoryData, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Predicted (q, p) in data coordinates, each (N, horizon + 1, E, D), from each first state."""
    device = next(model.parameters()).device
    q0 = torch.as_tensor(data.q[:, 0], dtype=torch.float32, device=device)
    p0 = torch.as_tensor(data.p[:, 0], dtype=torch.float32, device=device)
    actions = None
    if data.u is not None:
        actions = torch.as_tensor(data.u[:, :horizon], dtype=torch.float32, device=device)
    obs, _ = model.predict(model.coder.observe(q0, p0), actions, horizon)
    q, p = model.coder.to_data(obs)
    return q.double().cpu().numpy(), p.double().cpu().numpy()


def _angle_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = a - b
    return np.arctan2(np.sin(d), np.cos(d))


def evaluate(
    model: WorldModel, data: TrajectoryData, horizon: int | None = None
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Metrics dict and the predicted q, p (N, H+1, E, D)."""
    max_h = data.n_times - 1
    h = max_h if horizon is None else int(horizon)
    if not 1 <= h <= max_h:
        raise ValueError(
            f"horizon must be between 1 and {max_h} (the test trajectories have {data.n_times} points), got {h}"
        )
    if (data.n_entities, data.dim) != (model.config.n_entities, model.config.dim):
        raise ValueError(
            f"the data has {data.n_entities} entities of dim {data.dim}, the model expects "
            f"{model.config.n_entities} of dim {model.config.dim}"
        )
    if model.config.action_dim and data.u is not None and data.u.shape[2] != model.config.action_dim:
        raise ValueError(f"the data's actions have {data.u.shape[2]} dims, the model takes {model.config.action_dim}")
    q_hat, p_hat = predict_data(model, data, h)
    q_true, p_true = data.q[:, : h + 1], data.p[:, : h + 1]
    dq = _angle_diff(q_hat, q_true) if model.coder.angular else q_hat - q_true
    dp = p_hat - p_true
    per_step = 0.5 * ((dq**2).mean(axis=(0, 2, 3)) + (dp**2).mean(axis=(0, 2, 3)))  # (H+1,)
    metrics: dict[str, Any] = {
        "model": model.kind,
        "horizon": h,
        "rollout_mse": float(per_step[1:].mean()),
        "mse_at": {k: float(per_step[s]) for k, s in (("1", 1), ("10", 10), ("100", 100)) if s <= h},
        "vpt": _vpt(dq, dp, data),
        "energy_mse": _energy_mse(data, q_hat, p_hat, h),
    }
    metrics["mse_at"]["H"] = float(per_step[h])
    return metrics, q_hat, p_hat


def _vpt(dq: np.ndarray, dp: np.ndarray, data: TrajectoryData) -> float:
    sigma_q = np.maximum(data.q.std(axis=(0, 1)), 1e-8)  # (E, D)
    sigma_p = np.maximum(data.p.std(axis=(0, 1)), 1e-8)
    err = np.sqrt(0.5 * (((dq / sigma_q) ** 2).mean(axis=(2, 3)) + ((dp / sigma_p) ** 2).mean(axis=(2, 3))))  # (N, H+1)
    h = err.shape[1] - 1
    over = err[:, 1:] > VPT_THRESHOLD
    first = np.where(over.any(axis=1), over.argmax(axis=1), h)  # steps valid before the first exceedance
    return float(first.mean())


def _energy_mse(data: TrajectoryData, q_hat: np.ndarray, p_hat: np.ndarray, h: int) -> float | None:
    if data.system_name not in system_names():
        return None
    system = get_system(data.system_name, **data.meta["params"])
    n, t1 = q_hat.shape[:2]
    pred = flatten_time(torch.as_tensor(q_hat), torch.as_tensor(p_hat))
    true = flatten_time(torch.as_tensor(data.q[:, : h + 1]), torch.as_tensor(data.p[:, : h + 1]))
    e_pred = system.energy(pred).reshape(n, t1).numpy()
    e_true = system.energy(true).reshape(n, t1).numpy()
    diff = (e_pred - e_true)[:, 1:]
    value = float((diff**2).mean())
    return value if math.isfinite(value) else float("inf")
