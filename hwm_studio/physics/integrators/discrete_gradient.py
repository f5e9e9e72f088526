"""Discrete-gradient step of the whole port-Hamiltonian field (Gonzalez's midpoint discrete gradient).

    z1 = z0 + h [ (J - R(zm)) dH + G(qm) u + r(zm, u) ],          zm = (z0 + z1) / 2
    dH = grad H(zm) + (H(z1) - H(z0) - grad H(zm) . dz) / |dz|^2 dz,   dz = z1 - z0

dH obeys the discrete chain rule H(z1) - H(z0) = dH . dz exactly, and dH . J dH = 0, so a step's
energy change splits exactly into the work of the ports:
    H(z1) - H(z0) = -h dH^T R dH + h dH^T G u + h dH^T r.
`interval_work` returns those three terms, so the energy ledger of a rollout by this scheme
balances to the fixed-point solver's tolerance and float rounding under any actions (the Play
tab's claim that no energy comes from nowhere then holds step by step, not up to O(h^2)); with no
friction, action or residual the scheme conserves the model's H itself, not a nearby modified H.
Order 2, symmetric, not symplectic (Gonzalez 1996; McLachlan, Quispel & Robidoux 1999).

Implicit: solved by `iterations` fixed-point sweeps from an explicit Euler guess (a fixed count,
so no data-dependent host syncs; a plain sweep contracts the error by about h times the field's
Lipschitz constant). With a `tolerance`, sweeps go on (up to `max_iterations`) until the last one
moved the state by less than tolerance x (1 + |z|): one host sync per sweep, which a batch-1 live
loop can afford and a stiff learned field needs (random large weights at dt 0.05 took ~40).
Each next guess is Anderson-mixed from the last `memory` sweeps (Walker & Ni 2011): the guess
minimising the linearised residual over them, as a secant method would (memory 0 is the plain
iteration; `python benchmarks/play_fps.py --ledger-only` counts the sweeps a step takes with each).
Where |dz| is so small that H(z1) - H(z0) is lost to rounding, the correction's denominator is
floored (at eps^(2/3) relative to the state), which changes the chain rule only at rounding level.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hwm_studio.physics.field import VectorField
from hwm_studio.physics.integrators.base import Integrator, _check_field
from hwm_studio.physics.port_hamiltonian import PortHamiltonianField
from hwm_studio.state import PhaseState


def midpoint(z0: PhaseState, z1: PhaseState) -> PhaseState:
    return PhaseState(0.5 * (z0.q + z1.q), 0.5 * (z0.p + z1.p))


def relative_move(guess: PhaseState, swept: PhaseState) -> Tensor:
    """How far a sweep moved the state, |swept - guess| / (1 + |swept|), per batch element (B,):
    the fixed-point iteration has converged when this is below the tolerance."""
    moved = PhaseState(swept.q - guess.q, swept.p - guess.p)
    return moved.dot(moved).sqrt() / (1.0 + swept.dot(swept).sqrt())


def discrete_gradient(
    field: PortHamiltonianField, z0: PhaseState, z1: PhaseState, h0: Tensor | None = None, mid: PhaseState | None = None
) -> PhaseState:
    """Gonzalez's discrete gradient of the field's H between z0 and z1 (batch-wise); `h0` is H(z0)
    and `mid` their midpoint when already known."""
    hamiltonian = field.hamiltonian
    mid = midpoint(z0, z1) if mid is None else mid
    g = hamiltonian.grad(mid)
    dz = PhaseState(z1.q - z0.q, z1.p - z0.p)
    h0 = hamiltonian.energy(z0) if h0 is None else h0
    mismatch = hamiltonian.energy(z1) - h0 - g.dot(dz)  # (B,): O(|dz|^3)
    dz2 = dz.dot(dz)
    eps = torch.finfo(dz2.dtype).eps
    floor = eps ** (2.0 / 3.0) * (1.0 + z0.dot(z0))
    c = (mismatch / torch.maximum(dz2, floor))[:, None, None]
    return PhaseState(g.q + c * dz.q, g.p + c * dz.p)


class DiscreteGradient(Integrator):
    name = "discrete_gradient"
    order = 2
    symplectic = False

    def __init__(
        self, iterations: int = 10, tolerance: float | None = None, max_iterations: int = 100, memory: int = 2
    ) -> None:
        if iterations < 1 or max_iterations < iterations:
            raise ValueError(f"need 1 <= iterations <= max_iterations, got {iterations} and {max_iterations}")
        if tolerance is not None and not tolerance > 0:
            raise ValueError(f"tolerance must be > 0 or None, got {tolerance}")
        if memory < 0:
            raise ValueError(f"memory must be >= 0, got {memory}")
        self.iterations, self.tolerance, self.max_iterations = iterations, tolerance, max_iterations
        self.memory = memory
        self.sweeps = 0  # sweeps run so far, over every step (a benchmark reads the cost per step)

    def step(self, field: VectorField, state: PhaseState, u: Tensor | None, dt: float | Tensor) -> PhaseState:
        _check_field(self, field)
        assert isinstance(field, PortHamiltonianField)
        h0 = field.hamiltonian.energy(state)
        z1 = state.axpy(dt, field(state, u))
        mixer = AndersonMixer(self.memory)
        for sweep in range(self.max_iterations if self.tolerance is not None else self.iterations):
            z_next = state.axpy(dt, self._rate(field, state, z1, u, h0))
            self.sweeps += 1
            solved = self.tolerance is not None and sweep + 1 >= self.iterations
            if solved and bool((relative_move(z1, z_next) <= self.tolerance).all()):
                return z_next
            z1 = mixer.next_guess(z1, z_next)
        return z_next

    def fixed_sweeps(
        self, field: PortHamiltonianField, state: PhaseState, u: Tensor | None, dt: float | Tensor, sweeps: int
    ) -> tuple[PhaseState, Tensor]:
        """`sweeps` mixed sweeps from the explicit guess and no host sync (so it traces): the last
        sweep's state and how far that sweep moved it (`relative_move`, per batch element), which a
        caller compares with `tolerance` once, instead of once per sweep as `step` does."""
        h0 = field.hamiltonian.energy(state)
        z1 = state.axpy(dt, field(state, u))
        mixer = AndersonMixer(self.memory)
        for sweep in range(sweeps):
            z_next = state.axpy(dt, self._rate(field, state, z1, u, h0))
            if sweep + 1 == sweeps:
                return z_next, relative_move(z1, z_next)
            z1 = mixer.next_guess(z1, z_next)
        raise ValueError(f"sweeps must be >= 1, got {sweeps}")

    def _rate(
        self, field: PortHamiltonianField, z0: PhaseState, z1: PhaseState, u: Tensor | None, h0: Tensor | None = None
    ) -> PhaseState:
        """(J - R(zm)) dH + G u + r at the midpoint, with dH the discrete gradient of z0 -> z1."""
        mid = midpoint(z0, z1)
        dh = discrete_gradient(field, z0, z1, h0, mid)
        ports = field.nonconservative(mid, u, gradient=dh)
        return PhaseState(dh.p + ports.q, -dh.q + ports.p)

    def interval_work(
        self, field: PortHamiltonianField, start: PhaseState, end: PhaseState, u: Tensor | None, dt: float
    ) -> dict[str, Tensor]:
        mid = midpoint(start, end)
        dh = discrete_gradient(field, start, end, mid=mid)
        return {k: dt * v for k, v in field.powers(mid, u, gradient=dh).items()}


class AndersonMixer:
    """Anderson mixing (type II) of a fixed-point iteration x -> g(x), batch-wise over states.

    With the residuals f = g(x) - x of the last `memory` + 1 sweeps, the next guess is
    g - dG gamma, where gamma minimises |f - dF gamma| (dF, dG: differences of successive f and g):
    the combination of past sweeps whose linearised residual is smallest. The small normal
    equations are damped by eps x their scale (and a floor), so a history that has stopped moving
    gives gamma = 0 (the plain sweep) instead of a singular solve; no host syncs.
    """

    def __init__(self, memory: int) -> None:
        self.memory = memory
        self._g: list[Tensor] = []
        self._f: list[Tensor] = []

    def next_guess(self, x: PhaseState, g: PhaseState) -> PhaseState:
        if self.memory == 0:
            return g
        gv = torch.cat([g.q.flatten(1), g.p.flatten(1)], 1)
        fv = gv - torch.cat([x.q.flatten(1), x.p.flatten(1)], 1)
        self._g, self._f = [*self._g, gv][-(self.memory + 1) :], [*self._f, fv][-(self.memory + 1) :]
        if len(self._f) < 2:
            return g
        d_f = torch.stack([b - a for a, b in zip(self._f, self._f[1:], strict=False)], 2)  # (B, n, k)
        d_g = torch.stack([b - a for a, b in zip(self._g, self._g[1:], strict=False)], 2)
        normal = d_f.transpose(1, 2) @ d_f  # (B, k, k)
        scale = normal.diagonal(dim1=1, dim2=2).sum(-1)[:, None, None]
        eye = torch.eye(normal.shape[-1], dtype=normal.dtype, device=normal.device)
        damping = torch.finfo(normal.dtype).eps * scale + torch.finfo(normal.dtype).tiny ** 0.5
        gamma, _ = torch.linalg.solve_ex(normal + damping * eye, d_f.transpose(1, 2) @ fv[:, :, None])
        gamma = torch.nan_to_num(gamma, nan=0.0, posinf=0.0, neginf=0.0)  # a failed solve: the plain sweep
        mixed = gv - (d_g @ gamma)[:, :, 0]
        nq = g.q[0].numel()
        return PhaseState(mixed[:, :nq].reshape(g.q.shape), mixed[:, nq:].reshape(g.p.shape))
