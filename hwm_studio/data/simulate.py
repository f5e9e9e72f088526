"""Generate trajectory files from a ground-truth system.

Truth is integrated with `substeps` internal steps per recorded step (actions held over the
whole recorded interval), so the recorded data is far more accurate than the dt it is sampled at.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import torch

from hwm_studio.data.format import TrajectoryData
from hwm_studio.physics.integrators import get_integrator
from hwm_studio.physics.rollout import rollout
from hwm_studio.state import PhaseState
from hwm_studio.systems.base import System
from hwm_studio.systems.render import RenderStyle

CONTROLS = ("zero", "random")


def random_actions(system: System, n: int, steps: int, generator: torch.Generator) -> torch.Tensor:
    """i.i.d. uniform actions within the system's bound, (n, steps, A): persistent excitation."""
    a = system.action_bound
    return (2 * torch.rand(n, steps, system.action_dim, dtype=torch.float64, generator=generator) - 1) * a


def simulate(
    system: System,
    n_trajectories: int = 16,
    n_times: int = 100,
    dt: float | None = None,
    integrator: str = "yoshida4",
    substeps: int = 4,
    damping: float = 0.0,
    control: str = "zero",
    frame_size: int | None = None,
    seed: int = 0,
    initial: PhaseState | None = None,
    style: RenderStyle | None = None,
) -> TrajectoryData:
    """Simulate `n_trajectories` runs of `n_times` recorded points (n_times - 1 steps of dt).

    Args:
        damping: viscous friction gamma >= 0 on the momenta (R = diag(0, gamma)).
        control: 'zero' (no actions, `u` omitted) or 'random' (uniform within the bound, held per step).
        frame_size: render RGB frames of this size (e.g. 64 or 32), or None for no frames.
        initial: start states (float64, batch n_trajectories) instead of the system's sampler.
        style: how frames are drawn (systems/render.py; default: the project's look).
    """
    if n_trajectories < 1 or n_times < 2:
        raise ValueError(f"need at least 1 trajectory and 2 time points, got {n_trajectories} and {n_times}")
    if substeps < 1:
        raise ValueError(f"substeps must be >= 1, got {substeps}")
    if control not in CONTROLS:
        raise ValueError(f"control must be one of {', '.join(CONTROLS)}, got {control!r}")
    if damping < 0:
        raise ValueError(f"damping must be >= 0 (friction cannot add energy), got {damping}")
    dt = system.default_dt if dt is None else float(dt)
    if not dt > 0:
        raise ValueError(f"dt must be > 0, got {dt}")
    gen = torch.Generator().manual_seed(seed)
    z0 = system.sample_initial(n_trajectories, gen) if initial is None else initial.to(torch.float64)
    if z0.batch_size != n_trajectories:
        raise ValueError(f"initial states have batch {z0.batch_size}, expected {n_trajectories}")
    steps = n_times - 1
    u = random_actions(system, n_trajectories, n_times, gen) if control == "random" else None
    u_fine = None if u is None else u[:, :steps].repeat_interleave(substeps, dim=1)
    with torch.no_grad():
        traj = rollout(
            system.field(damping),
            get_integrator(integrator),
            z0,
            actions=u_fine,
            dt=dt / substeps,
            steps=steps * substeps,
            record_energy=False,
        )
    q, p = traj.q[:, ::substeps], traj.p[:, ::substeps]  # (N, T, E, D)
    if not (torch.isfinite(q).all() and torch.isfinite(p).all()):
        raise ValueError("the simulation diverged (non-finite states); use a smaller dt or more substeps")
    b, t, e, d = q.shape
    energy = system.energy(PhaseState(q.reshape(b * t, e, d), p.reshape(b * t, e, d))).reshape(b, t)
    frames = None if frame_size is None else system.render(q, size=frame_size, style=style).numpy()
    meta = system.meta()
    meta["generator"] = {
        "integrator": integrator,
        "substeps": substeps,
        "damping": damping,
        "control": control,
        "seed": seed,
    }
    if frame_size is not None and style is not None:
        meta["generator"]["style"] = asdict(style)
    return TrajectoryData(
        q=q.numpy(),
        p=p.numpy(),
        dt=dt,
        u=None if u is None else u.numpy(),
        frames=frames,
        energy=energy.numpy(),
        meta=meta,
    )


def as_states(data: TrajectoryData, t: int, dtype: torch.dtype = torch.float64) -> PhaseState:
    """The states of every trajectory at time index t, as a PhaseState (N, E, D)."""
    return PhaseState(
        torch.as_tensor(np.ascontiguousarray(data.q[:, t]), dtype=dtype),
        torch.as_tensor(np.ascontiguousarray(data.p[:, t]), dtype=dtype),
    )
