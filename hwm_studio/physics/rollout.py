"""Roll a port-Hamiltonian field forward, and account for where the energy went.

The step loop is the only sequential part. Energy terms and the balance ledger are evaluated
afterwards over all (batch x time) states in one batched call, so recording them costs no
per-step Python overhead.

Ledger conventions (action u[:, t] acts from step t to t+1, zero-order hold):
    dissipated(t)    = integral_0^t grad H^T R grad H           (>= 0, energy lost to friction)
    control_work(t)  = integral_0^t grad H^T G u                (energy put in by actions)
    residual_work(t) = integral_0^t grad H^T r                  (energy added by the residual)
    balance_error(t) = H(t) - H(0) + dissipated - control_work - residual_work
Integrals use the trapezoid rule on each interval with that interval's action, so the balance
error measures integrator plus quadrature error and should sit near zero; a scheme that knows the
exact work of its own step (`Integrator.interval_work`, the discrete-gradient step) supplies that
instead, and its balance error is then the solver's tolerance and float rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from hwm_studio.physics.field import VectorField
from hwm_studio.physics.held import holding_weights
from hwm_studio.physics.integrators.base import Integrator
from hwm_studio.physics.port_hamiltonian import PortHamiltonianField
from hwm_studio.state import PhaseState


@dataclass
class Trajectory:
    """A rollout: states at T+1 times and, optionally, its energy terms and ledger.

    Attributes:
        q, p: (B, T+1, E, D), index 0 is the initial state.
        dt: time step.
        actions: (B, T, A) or None.
        energy: 'kinetic', 'potential', 'interaction', 'total', each (B, T+1); empty if not recorded.
        power: 'dissipated', 'control', 'residual' power at each state, each (B, T+1).
        ledger: cumulative 'dissipated', 'control_work', 'residual_work', 'balance_error', (B, T+1).
    """

    q: Tensor
    p: Tensor
    dt: float
    actions: Tensor | None
    energy: dict[str, Tensor]
    power: dict[str, Tensor]
    ledger: dict[str, Tensor]

    @property
    def steps(self) -> int:
        return self.q.shape[1] - 1

    def state(self, t: int) -> PhaseState:
        return PhaseState(self.q[:, t], self.p[:, t])

    def times(self) -> Tensor:
        return torch.arange(self.steps + 1, dtype=self.q.dtype, device=self.q.device) * self.dt


def flatten_time(q: Tensor, p: Tensor) -> PhaseState:
    """(B, T, E, D) series -> one PhaseState of batch B*T, for batched evaluation."""
    b, t, e, d = q.shape
    return PhaseState(q.reshape(b * t, e, d), p.reshape(b * t, e, d))


def _check_inputs(
    field: VectorField, z0: PhaseState, actions: Tensor | None, dt: float, steps: int | None
) -> tuple[int, int]:
    if not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be a finite positive number, got {dt!r}")
    batch = z0.batch_size
    if actions is None:
        if steps is None or steps < 0:
            raise ValueError("give `steps` (>= 0) when no actions are given")
        return batch, steps
    if field.action_dim == 0:
        raise ValueError("this model takes no actions (action_dim 0), but actions were given")
    if actions.ndim != 3 or actions.shape[2] != field.action_dim:
        raise ValueError(f"actions must have shape (batch, steps, {field.action_dim}), got {tuple(actions.shape)}")
    if actions.shape[0] != batch and 1 not in (actions.shape[0], batch):
        raise ValueError(f"actions batch {actions.shape[0]} does not match state batch {batch}")
    steps = actions.shape[1] if steps is None else steps
    if not 0 <= steps <= actions.shape[1]:
        raise ValueError(f"steps={steps} but only {actions.shape[1]} actions were given")
    return max(batch, actions.shape[0]), steps


def rollout(
    field: VectorField,
    integrator: Integrator,
    z0: PhaseState,
    actions: Tensor | None = None,
    dt: float = 0.05,
    steps: int | None = None,
    record_energy: bool = True,
) -> Trajectory:
    """Integrate `steps` steps from z0 (B, E, D) under actions (B, T, A) or None.

    A batch-1 z0 with batch-B actions (or the reverse) broadcasts: planners roll one state out
    under many action sequences. Differentiable (used by training); wrap in torch.no_grad()
    for inference.
    """
    batch, steps = _check_inputs(field, z0, actions, dt, steps)
    state = z0.expand(batch)
    if actions is not None and actions.shape[0] != batch:
        actions = actions.expand(batch, -1, -1)
    if actions is not None:
        actions = actions[:, :steps]
    qs, ps = [state.q], [state.p]
    step = integrator.stepper(field, dt)
    with holding_weights():  # weight-only parts (inverse mass, friction) built once, not per step
        for t in range(steps):
            u = None if actions is None else actions[:, t]
            state = step(state, u)
            qs.append(state.q)
            ps.append(state.p)
    q, p = torch.stack(qs, dim=1), torch.stack(ps, dim=1)  # (B, T+1, E, D)
    traj = Trajectory(q=q, p=p, dt=float(dt), actions=actions, energy={}, power={}, ledger={})
    if record_energy:
        traj.energy, traj.power, traj.ledger = energy_ledger(field, q, p, actions, float(dt), integrator)
    return traj


def energy_ledger(
    field: PortHamiltonianField,
    q: Tensor,
    p: Tensor,
    actions: Tensor | None,
    dt: float,
    integrator: Integrator | None = None,
) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Tensor]]:
    """Energy terms, powers and the cumulative balance ledger of a (B, T+1, E, D) trajectory
    (the works by `integrator`'s exact form where it has one, else by the trapezoid rule)."""
    b, t1 = q.shape[:2]
    steps = t1 - 1
    flat = flatten_time(q, p)
    energy = {k: v.reshape(b, t1) for k, v in field.hamiltonian.decompose(flat).items()}

    if steps == 0:
        zeros = torch.zeros(b, 1, dtype=q.dtype, device=q.device)
        power = dict.fromkeys(("dissipated", "control", "residual"), zeros)
        ledger = dict.fromkeys(("dissipated", "control_work", "residual_work", "balance_error"), zeros)
        return energy, power, ledger

    # Powers at each interval's start and end, both under that interval's action.
    u_flat = None if actions is None else actions.reshape(b * steps, -1)
    start = flatten_time(q[:, :-1], p[:, :-1])
    end = flatten_time(q[:, 1:], p[:, 1:])
    both = PhaseState(torch.cat([start.q, end.q]), torch.cat([start.p, end.p]))  # one batched evaluation
    powers = field.powers(both, None if u_flat is None else torch.cat([u_flat, u_flat]))
    n = b * steps
    p_start = {k: v[:n].reshape(b, steps) for k, v in powers.items()}
    p_end = {k: v[n:].reshape(b, steps) for k, v in powers.items()}

    exact = None if integrator is None else integrator.interval_work(field, start, end, u_flat, dt)

    def cumulative(name: str) -> Tensor:
        trapezoid = exact is None  # (B, T) per interval: the scheme's exact work, or the trapezoid rule
        work = 0.5 * dt * (p_start[name] + p_end[name]) if trapezoid else exact[name].reshape(b, steps)
        return torch.cat([torch.zeros_like(work[:, :1]), work.cumsum(dim=1)], dim=1)

    power = {k: torch.cat([p_start[k], p_end[k][:, -1:]], dim=1) for k in p_start}
    dissipated = cumulative("dissipated")
    control_work = cumulative("control")
    residual_work = cumulative("residual")
    total = energy["total"]
    ledger = {
        "dissipated": dissipated,
        "control_work": control_work,
        "residual_work": residual_work,
        "balance_error": total - total[:, :1] + dissipated - control_work - residual_work,
    }
    return energy, power, ledger
