"""Training data as tensors, and random windows of it for multi-step rollout losses."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from hwm_studio.data.format import TrajectoryData
from hwm_studio.models.base import WorldModel


@dataclass
class SeriesTensors:
    """Observations and actions of N trajectories on one device.

    obs: (N, T, E, O) model observations of the data; actions: (N, T, A) or None;
    derivatives: optional exact (dq/dt, dp/dt) labels (N, T, E, D) each, for the derivative loss.
    """

    obs: Tensor
    actions: Tensor | None
    derivatives: tuple[Tensor, Tensor] | None = None

    @property
    def n_trajectories(self) -> int:
        return self.obs.shape[0]

    @property
    def n_times(self) -> int:
        return self.obs.shape[1]


def to_series(
    model: WorldModel,
    data: TrajectoryData,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    derivatives: tuple[np.ndarray, np.ndarray] | None = None,
) -> SeriesTensors:
    """Observe the data as the model does (its coder, or its frames), as tensors on `device`."""
    q = torch.as_tensor(data.q, dtype=dtype, device=device)
    p = torch.as_tensor(data.p, dtype=dtype, device=device)
    frames = None if data.frames is None else torch.as_tensor(data.frames, device=device)  # uint8: 4x smaller
    with torch.no_grad():
        obs = model.observe_data(q, p, frames)
    actions = None if data.u is None else torch.as_tensor(data.u, dtype=dtype, device=device)
    derivs = None
    if derivatives is not None:
        derivs = tuple(torch.as_tensor(d, dtype=dtype, device=device) for d in derivatives)  # type: ignore[assignment]
    return SeriesTensors(obs=obs, actions=actions, derivatives=derivs)


def sample_windows(
    series: SeriesTensors,
    horizon: int,
    batch_size: int,
    generator: torch.Generator,
    rows: slice | None = None,
) -> tuple[Tensor, Tensor | None, tuple[Tensor, Tensor] | None]:
    """Random windows of horizon + 1 consecutive points: obs (B, h+1, ...), actions (B, h, A).

    Drawn uniformly over (trajectory, start); the generator makes the sequence reproducible.
    `rows`: keep only these of the B windows drawn (a data-parallel rank's share of the global
    batch: the generator advances as for the whole batch, so the shares add up to it).
    """
    n, t = series.n_trajectories, series.n_times
    if horizon < 1 or horizon > t - 1:
        raise ValueError(f"horizon {horizon} does not fit trajectories of {t} points")
    dev = series.obs.device
    traj = torch.randint(0, n, (batch_size,), generator=generator).to(dev)
    start = torch.randint(0, t - horizon, (batch_size,), generator=generator).to(dev)
    if rows is not None:
        traj, start = traj[rows], start[rows]
    idx = start[:, None] + torch.arange(horizon + 1, device=dev)  # (B, h+1)
    obs = series.obs[traj[:, None], idx]
    actions = None if series.actions is None else series.actions[traj[:, None], idx[:, :-1]]
    derivs = None
    if series.derivatives is not None:
        derivs = (series.derivatives[0][traj[:, None], idx], series.derivatives[1][traj[:, None], idx])
    return obs, actions, derivs
