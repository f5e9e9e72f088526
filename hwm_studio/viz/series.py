"""Time series the studio plots: phase-space curves and the energy ledger of a trajectory."""

from __future__ import annotations

import numpy as np

from hwm_studio.physics.rollout import Trajectory

LEDGER_KEYS = ("kinetic", "potential", "interaction", "total", "dissipated", "control_work",
               "residual_work", "residual_power", "balance_error")  # fmt: skip


def phase_curves(traj: Trajectory, batch: int = 0, coord: int = 0) -> dict[str, np.ndarray]:
    """q_i(t) and p_i(t) of every entity for one batch element: {'t', 'q0', 'p0', 'q1', ...}."""
    q = traj.q[batch, :, :, coord].detach().cpu().numpy()  # (T+1, E)
    p = traj.p[batch, :, :, coord].detach().cpu().numpy()
    out = {"t": traj.times().cpu().numpy()}
    for i in range(q.shape[1]):
        out[f"q{i}"], out[f"p{i}"] = q[:, i], p[:, i]
    return out


def energy_ledger_series(traj: Trajectory, batch: int = 0) -> dict[str, np.ndarray]:
    """The energy decomposition and cumulative ledger for one batch element (all (T+1,))."""
    if not traj.energy:
        raise ValueError("this trajectory was rolled out with record_energy=False")

    def get(d: dict, k: str) -> np.ndarray:
        return d[k][batch].detach().cpu().numpy()

    return {
        "t": traj.times().cpu().numpy(),
        "kinetic": get(traj.energy, "kinetic"),
        "potential": get(traj.energy, "potential"),
        "interaction": get(traj.energy, "interaction"),
        "total": get(traj.energy, "total"),
        "dissipated": get(traj.ledger, "dissipated"),
        "control_work": get(traj.ledger, "control_work"),
        "residual_work": get(traj.ledger, "residual_work"),
        "residual_power": get(traj.power, "residual"),
        "balance_error": get(traj.ledger, "balance_error"),
    }
