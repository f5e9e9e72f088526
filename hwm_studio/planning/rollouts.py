"""What planners imagine with: a learned world model, or a system's true dynamics, as one callable.

    rollout(q0 (N, E, D), p0 (N, E, D), actions (N, T, A)) -> q, p (N, T+1, E, D), energy (N, T+1) | None

Every candidate goes through one batched call. A learned model rolls out without autograd through
its fused (traced) step on its own device; true dynamics step in float64 on the cpu by default,
exactly as the environment does (`true_step`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from hwm_studio.models.base import WorldModel
from hwm_studio.physics.integrators import get_integrator
from hwm_studio.physics.rollout import flatten_time
from hwm_studio.state import PhaseState
from hwm_studio.systems.base import System

StepFn = Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]  # (q, p (N, E, D), u (N, A)) -> q, p
EnergyFn = Callable[[Tensor, Tensor], Tensor]  # q, p (N, T+1, E, D) -> (N, T+1)


class ModelRollout:
    """A world model's predictions in data coordinates, for planning.

    `device`/`dtype` are the model's: planners sample their candidates there, so states and
    actions never cross to the host inside a plan. With `energy`, the model's own H along each
    future is returned too (models with an energy only; others give None).
    """

    def __init__(self, model: WorldModel, energy: bool = True, fused: bool = True) -> None:
        if model.sees_pixels:
            raise ValueError(f"the {model.kind} model predicts frames; planning needs a state model")
        self.model = model  # not switched to eval(): the studio may plan with a model while it trains
        self.device, self.dtype = model.obs_scale.device, model.obs_scale.dtype
        self.energy = energy and model.hamiltonian_field is not None
        self.fused = fused

    @torch.no_grad()
    def __call__(self, q0: Tensor, p0: Tensor, actions: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        m = self.model
        q0, p0 = q0.to(self.device, self.dtype), p0.to(self.device, self.dtype)
        steps = actions.shape[1]
        acts = actions.to(self.device, self.dtype) if m.action_dim else None
        q, p, traj = m.rollout_data(q0, p0, acts, steps, fused=self.fused)  # (N, T+1, E, D)
        energy = None
        if self.energy:
            field = m.hamiltonian_field
            assert field is not None
            energy = field.hamiltonian.energy(flatten_time(traj.q, traj.p)).reshape(q.shape[:2])  # (N, T+1)
        return q, p, energy


def model_rollout(model: WorldModel, energy: bool = True, fused: bool = True) -> ModelRollout:
    """A learned model as a planner's rollout (one batched, no-grad, fused rollout on its device)."""
    return ModelRollout(model, energy=energy, fused=fused)


class SystemRollout:
    """Roll a discrete step function out over T steps, for all candidates at once."""

    def __init__(
        self,
        step: StepFn,
        energy: EnergyFn | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float64,
    ) -> None:
        self.step, self.energy_fn = step, energy
        self.device, self.dtype = torch.device(device), dtype

    @torch.no_grad()
    def __call__(self, q0: Tensor, p0: Tensor, actions: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        q, p = q0.to(self.device, self.dtype), p0.to(self.device, self.dtype)
        actions = actions.to(self.device, self.dtype)
        qs, ps = [q], [p]
        for t in range(actions.shape[1]):
            q, p = self.step(q, p, actions[:, t])
            qs.append(q)
            ps.append(p)
        q, p = torch.stack(qs, dim=1), torch.stack(ps, dim=1)  # (N, T+1, E, D)
        return q, p, None if self.energy_fn is None else self.energy_fn(q, p)


def system_rollout(step: StepFn, energy: EnergyFn | None = None, device: str | torch.device = "cpu") -> SystemRollout:
    """Ground-truth dynamics as a planner's rollout, from one batched step (q, p, u) -> (q, p)."""
    return SystemRollout(step, energy, device)


def true_step(
    system: System, dt: float | None = None, damping: float = 0.0, integrator: str = "yoshida4", substeps: int = 4
) -> StepFn:
    """The system's true step of dt under a held action.

    A system that declares its own discrete update (`env_step`, the Gymnasium pendulum) is
    stepped with exactly that update (speed clip included) at its default dt; any other system
    integrates its exact port-Hamiltonian field with `substeps` steps of `integrator`, as
    `data.simulate` does.
    """
    dt = system.default_dt if dt is None else float(dt)
    env_step = getattr(system, "env_step", None)
    if env_step is not None:
        if damping:
            raise ValueError(f"{system.name} steps with its environment's own update, which has no damping")
        inertia = system.inertia  # type: ignore[attr-defined]

        def gym_step(q: Tensor, p: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
            th, thdot = env_step(q[:, 0, 0], p[:, 0, 0] / inertia, u[:, 0], dt)  # (N,)
            return th[:, None, None], (inertia * thdot)[:, None, None]

        return gym_step
    if substeps < 1:
        raise ValueError(f"substeps must be >= 1, got {substeps}")
    field, integ, h = system.field(damping), get_integrator(integrator), dt / substeps

    def field_step(q: Tensor, p: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
        state = PhaseState(q, p)
        step = integ.stepper(field, h)
        for _ in range(substeps):
            state = step(state, u)
        return state.q, state.p

    return field_step


def system_energy(system: System) -> EnergyFn:
    """The system's exact H along (N, T+1, E, D) trajectories: (N, T+1)."""

    def energy(q: Tensor, p: Tensor) -> Tensor:
        return system.energy(flatten_time(q, p)).reshape(q.shape[:2])

    return energy


def true_rollout(system: System, dt: float | None = None, damping: float = 0.0) -> SystemRollout:
    """A project system's true dynamics (and true H) as a planner's rollout."""
    return system_rollout(true_step(system, dt, damping), system_energy(system))
