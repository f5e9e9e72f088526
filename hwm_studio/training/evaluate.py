"""Held-out evaluation: roll out from each test trajectory's first state, replaying its actions.

Metrics (steps t = 1..H, errors in the data's own q, p coordinates; angles compared modulo 2 pi):
    rollout_mse  mean over steps, trajectories and coordinates of squared error
    mse_at       the same at steps 1, 10, 100 and H (those reachable)
    vpt          valid prediction time, in steps (hwm_studio/metrics.py, sigma_c over the test
                 data), averaged over trajectories
    energy_mse   when the data names a known system: mean squared difference of that system's
                 true H on predicted vs true states; None otherwise
    couplings    models with pairwise terms: each pair's learned interaction strength (RMS force)
                 on the test states, "i-j" -> value
    power        models with a port-Hamiltonian field: the mean |power| of friction, control and
                 residual on the test states, and the residual's share of their sum (how much of
                 what H does not explain the unstructured residual carries)
Pixel models (evaluate_pixels) are scored on frames instead: from the first k frames, with the
recorded actions replayed, pixel_mse (mean over predicted steps 1..H of the per-pixel squared error
of RGB values in [0, 1]), pixel_mse_at (steps 1, 10, 30, 100, H where reachable), pixel_mse_curve
(every step) and reconstruction_mse (frame k - 1, read and redrawn).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from hwm_studio.data.format import TrajectoryData
from hwm_studio.frames import frames_to_uint8
from hwm_studio.metrics import angle_difference, normalised_error, scale, valid_steps
from hwm_studio.models.base import WorldModel
from hwm_studio.models.pixel import FramePrediction
from hwm_studio.models.pixel.alignment import affine_r2, circular_correlation
from hwm_studio.physics.rollout import Trajectory, flatten_time
from hwm_studio.systems import get_system, system_names


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


def evaluate(
    model: WorldModel, data: TrajectoryData, horizon: int | None = None
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Metrics dict and the predicted q, p (N, H+1, E, D) (pixel models: see evaluate_pixels)."""
    if model.sees_pixels:
        metrics, _, traj = evaluate_pixels(model, data, horizon)
        return metrics, traj.q.double().cpu().numpy(), traj.p.double().cpu().numpy()
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
    sigma_q, sigma_p = scale(data.q, (0, 1)), scale(data.p, (0, 1))
    error = normalised_error(q_hat, p_hat, q_true, p_true, sigma_q, sigma_p, model.coder.angular)  # (N, H+1)
    dq = angle_difference(q_hat, q_true) if model.coder.angular else q_hat - q_true
    dp = p_hat - p_true
    per_step = 0.5 * ((dq**2).mean(axis=(0, 2, 3)) + (dp**2).mean(axis=(0, 2, 3)))  # (H+1,)
    metrics: dict[str, Any] = {
        "model": model.kind,
        "horizon": h,
        "rollout_mse": float(per_step[1:].mean()),
        "mse_at": {k: float(per_step[s]) for k, s in (("1", 1), ("10", 10), ("100", 100)) if s <= h},
        "vpt": float(valid_steps(error).mean()),
        "energy_mse": _energy_mse(data, q_hat, p_hat, h),
    }
    metrics["mse_at"]["H"] = float(per_step[h])
    states = torch.as_tensor(data.q.reshape(-1, data.n_entities, data.dim), dtype=torch.float32)
    couplings = model.couplings(states.to(next(model.parameters()).device))
    if couplings is not None:
        metrics["couplings"] = {f"{i}-{j}": v for (i, j), v in couplings.items()}
    metrics["power"] = _power_shares(model, data)
    return metrics, q_hat, p_hat


@torch.no_grad()
def _power_shares(model: WorldModel, data: TrajectoryData) -> dict[str, float] | None:
    field = model.hamiltonian_field
    if field is None or (field.dissipation is None and field.residual is None and field.input_map is None):
        return None
    device = next(model.parameters()).device
    q = torch.as_tensor(data.q.reshape(-1, data.n_entities, data.dim), dtype=torch.float32, device=device)
    p = torch.as_tensor(data.p.reshape(-1, data.n_entities, data.dim), dtype=torch.float32, device=device)
    u = None
    if data.u is not None and field.input_map is not None:
        u = torch.as_tensor(data.u.reshape(-1, data.u.shape[-1]), dtype=torch.float32, device=device)
    z = model.encode(model.coder.observe(q, p))
    mean_abs = {k: float(v.abs().mean()) for k, v in field.powers(z, u).items()}
    total = sum(mean_abs.values())
    return {**mean_abs, "residual_share": mean_abs["residual"] / total if total > 0 else 0.0}


def _energy_mse(data: TrajectoryData, q_hat: np.ndarray, p_hat: np.ndarray, h: int) -> float | None:
    if data.system_name not in system_names():
        return None
    system = get_system(data.system_name, **data.system_params)
    n, t1 = q_hat.shape[:2]
    pred = flatten_time(torch.as_tensor(q_hat), torch.as_tensor(p_hat))
    true = flatten_time(torch.as_tensor(data.q[:, : h + 1]), torch.as_tensor(data.p[:, : h + 1]))
    e_pred = system.energy(pred).reshape(n, t1).numpy()
    e_true = system.energy(true).reshape(n, t1).numpy()
    diff = (e_pred - e_true)[:, 1:]
    value = float((diff**2).mean())
    return value if math.isfinite(value) else float("inf")


@torch.no_grad()
def predict_frames_data(model: WorldModel, data: TrajectoryData, horizon: int, batch: int = 64) -> FramePrediction:
    """The pixel model's prediction from each trajectory's first k frames (in batches), for times
    k-1 .. k-1+horizon: decoded frames (N, horizon + 1, H, W, 3) float in [0, 1], the latent
    trajectory, the drawn and the read positions."""
    device = next(model.parameters()).device
    k = model.config.context_frames
    parts: list[FramePrediction] = []
    for start in range(0, data.n_trajectories, batch):
        sl = slice(start, start + batch)
        frames = torch.as_tensor(data.frames[sl, :k], device=device)  # type: ignore[index]
        actions = None
        if data.u is not None:
            actions = torch.as_tensor(data.u[sl, : k - 1 + horizon], dtype=torch.float32, device=device)
        out = model.predict_frames(frames, actions, horizon, fused=True)  # type: ignore[attr-defined]
        parts.append(out)
    q = torch.cat([o.trajectory.q for o in parts]).cpu()
    traj = Trajectory(q, torch.cat([o.trajectory.p for o in parts]).cpu(), model.dt, None, {}, {}, {})
    return FramePrediction(
        frames=torch.cat([o.frames for o in parts]).cpu(),
        trajectory=traj,
        positions=torch.cat([o.positions for o in parts]).cpu(),
        context_positions=torch.cat([o.context_positions for o in parts]).cpu(),
    )


@torch.no_grad()
def latent_alignment(model: WorldModel, data: TrajectoryData, batch: int = 256) -> dict[str, Any]:
    """Is the pixel model's latent the physics? Every frame read alone to q, against the data's q.

    Angular geometry: the circular correlation per entity (sign-free: its absolute value; the
    smallest over entities is `value`); otherwise the R^2 of an affine map from all entities' true
    q to all inferred q jointly (so a relabelling of entities is an affine map too). When the data
    names a known system, frames where a body's centre is outside the picture (an escaping orbit)
    are left out: no reading of that frame can see it; `in_view` is the share of frames kept.
    """
    if data.frames is None:
        raise ValueError("latent alignment reads the data's frames; the data has none")
    device = next(model.parameters()).device
    frames = data.frames.reshape(-1, *data.frames.shape[2:])
    qs = []
    for start in range(0, frames.shape[0], batch):
        xy = model.locate(torch.as_tensor(frames[start : start + batch], device=device))  # type: ignore[attr-defined]
        qs.append(model.geometry.from_image(xy).double().cpu().numpy())  # type: ignore[attr-defined]
    inferred = np.concatenate(qs)  # (N*T, E, D)
    true = data.q.reshape(-1, *data.q.shape[2:])
    seen = np.ones(len(true), dtype=bool)
    if data.system_name in system_names():
        system = get_system(data.system_name, **data.system_params)
        pos = system.positions(torch.as_tensor(true)).numpy()[..., :2]  # (N*T, E, 2)
        seen = (np.abs(pos) < system.view_extent()).all(axis=(1, 2))
    true, inferred = true[seen], inferred[seen]
    in_view = float(seen.mean())
    if model.angular:
        per_entity = [abs(circular_correlation(true[:, i, 0], inferred[:, i, 0])) for i in range(true.shape[1])]
        return {
            "metric": "circular_correlation",
            "value": min(per_entity),
            "per_entity": per_entity,
            "in_view": in_view,
        }
    value = affine_r2(true.reshape(len(true), -1), inferred.reshape(len(inferred), -1))
    return {"metric": "affine_r2", "value": value, "in_view": in_view}


def evaluate_pixels(
    model: WorldModel, data: TrajectoryData, horizon: int | None = None
) -> tuple[dict[str, Any], np.ndarray, Any]:
    """Pixel metrics, the decoded frames (N, H+1, ...) and the latent trajectory."""
    if data.frames is None:
        raise ValueError(f"the {model.kind} model is scored on frames; the data has no 'frames'")
    k = model.config.context_frames
    size = model.config.frame_size
    if data.frames.shape[2:4] != (size, size):
        raise ValueError(
            f"the data's frames are {data.frames.shape[2]}x{data.frames.shape[3]}, the model reads {size}x{size}"
        )
    max_h = data.n_times - k
    if max_h < 1:
        raise ValueError(f"the model reads {k} frames before predicting; the test trajectories have {data.n_times}")
    h = max_h if horizon is None else int(horizon)
    if not 1 <= h <= max_h:
        raise ValueError(f"horizon must be between 1 and {max_h} ({data.n_times} points, {k} read first), got {h}")
    out = predict_frames_data(model, data, h)
    pred, traj = out.frames.numpy(), out.trajectory
    truth = data.frames[:, k - 1 : k + h].astype(np.float32) / 255.0
    curve = ((pred - truth) ** 2).mean(axis=(0, 2, 3, 4))  # (H+1,): index 0 is the reconstruction
    metrics: dict[str, Any] = {
        "model": model.kind,
        "horizon": h,
        "context_frames": k,
        "pixel_mse": float(curve[1:].mean()),
        "pixel_mse_at": {key: float(curve[s]) for key, s in (("1", 1), ("10", 10), ("30", 30), ("100", 100)) if s <= h},
        "reconstruction_mse": float(curve[0]),
        "pixel_mse_curve": [float(x) for x in curve[1:]],
        "latent": latent_alignment(model, data),
    }
    metrics["pixel_mse_at"]["H"] = float(curve[h])
    return metrics, pred, traj


@torch.no_grad()
def prediction_data(
    model: WorldModel, data: TrajectoryData, metrics: dict[str, Any], q_hat: np.ndarray, p_hat: np.ndarray
) -> TrajectoryData:
    """The predictions of `evaluate` as a trajectory file aligned with the test data's time axis:
    index t of the file is time t of the data.

    State models: predicted (q, p) in data coordinates from t = 0. Pixel models: the latent (q, p)
    and the decoded frames; up to the last context frame (t < k - 1) the encoder's readings of each
    frame (p from their differences), from t = k - 1 on the rollout; `meta["prediction"]` says so.
    """
    h = metrics["horizon"]
    if not model.sees_pixels:
        return TrajectoryData(q=q_hat, p=p_hat, dt=data.dt, u=None if data.u is None else data.u[:, : h + 1],
                              meta=data.meta)  # fmt: skip
    k = metrics["context_frames"]
    device = next(model.parameters()).device
    frames = torch.as_tensor(data.frames[:, :k], device=device)  # type: ignore[index]
    read_q, read_p = model.read_states(frames)  # type: ignore[attr-defined]
    q = np.concatenate([read_q[:, : k - 1].double().cpu().numpy(), q_hat], axis=1)  # (N, k + h, E, D)
    p = np.concatenate([read_p[:, : k - 1].double().cpu().numpy(), p_hat], axis=1)
    drawn = model.decode_frames(torch.as_tensor(q, dtype=torch.float32, device=device))  # type: ignore[attr-defined]
    meta = {
        "system": f"{model.kind} latent",
        "params": {},
        "entities": [f"entity[{i}]" for i in range(q.shape[2])],
        "prediction": {
            "model": model.kind,
            "data_system": data.system_name,
            "first_predicted": k - 1,
            "latent": f"q through the {model.config.geometry} observation geometry, p = M(q) dq/dt",
            "before_first_predicted": "the encoder's readings of each frame",
        },
    }
    return TrajectoryData(q=q, p=p, dt=data.dt, u=None if data.u is None else data.u[:, : k + h],
                          frames=frames_to_uint8(drawn), meta=meta)  # fmt: skip
