"""Stormer-Verlet / leapfrog, in the generalized form valid for non-separable H.

    p_half = p0 - h/2 dH/dq(q0, p_half)
    q1     = q0 + h/2 [dH/dp(q0, p_half) + dH/dp(q1, p_half)]
    p1     = p_half - h/2 dH/dq(q1, p_half)

Order 2, symplectic, symmetric (time-reversible). Nothing assumes dq/dt = p: velocities always
come from dH/dp. For separable H (T(p) + V(q)) the implicit lines are explicit and this is the
familiar kick-drift-kick; otherwise they are solved by `iterations` fixed-point sweeps.
"""

from __future__ import annotations

from torch import Tensor

from hwm_studio.physics.energy import Hamiltonian
from hwm_studio.physics.integrators.base import SplittingIntegrator
from hwm_studio.state import PhaseState


def leapfrog_step(hamiltonian: Hamiltonian, state: PhaseState, dt: float, iterations: int) -> PhaseState:
    """One generalized Stormer-Verlet step of J grad H, by fixed-point sweeps (non-separable H)."""
    h2 = 0.5 * dt
    q, p = state.q, state.p
    p_half = p - h2 * hamiltonian.grad_q(q, p)
    for _ in range(iterations):
        p_half = p - h2 * hamiltonian.grad_q(q, p_half)
    v0 = hamiltonian.grad_p(q, p_half)
    q1 = q + dt * v0
    for _ in range(iterations):
        q1 = q + h2 * (v0 + hamiltonian.grad_p(q1, p_half))
    return PhaseState(q1, p_half - h2 * hamiltonian.grad_q(q1, p_half))


def leapfrog_composition(
    hamiltonian: Hamiltonian,
    state: PhaseState,
    dt: float,
    fractions: tuple[float, ...],
    iterations: int,
    force: Tensor | None = None,
) -> tuple[PhaseState, Tensor | None]:
    """Leapfrog steps of w * dt for each w in `fractions`, in order (Yoshida composes three), and
    dH/dq at the end (None for non-separable H).

    For separable H the closing kick of one stage and the opening kick of the next evaluate
    dH/dq at the same q, so it is computed once (first-same-as-last): identical numbers, fewer
    evaluations. `force`, when given, is dH/dq at the state's q (a previous step's closing force).
    """
    if not hamiltonian.separable:
        for w in fractions:
            state = leapfrog_step(hamiltonian, state, w * dt, iterations)
        return state, None
    q, p = state.q, state.p
    if force is None:
        force = hamiltonian.grad_q(q, p)
    for w in fractions:
        h = dt if w == 1.0 else w * dt  # (plain leapfrog: no multiply by one in traced graphs)
        h2 = 0.5 * h
        p_half = p - h2 * force
        q = q + h * hamiltonian.grad_p(q, p_half)
        force = hamiltonian.grad_q(q, p_half)
        p = p_half - h2 * force
    return PhaseState(q, p), force


class Leapfrog(SplittingIntegrator):
    name = "leapfrog"
    order = 2

    def __init__(self, iterations: int = 8) -> None:
        self.iterations = iterations

    def conservative_step(self, hamiltonian: Hamiltonian, state: PhaseState, dt: float) -> PhaseState:
        return self.conservative_flow(hamiltonian, state, dt, None)[0]

    def conservative_flow(
        self, hamiltonian: Hamiltonian, state: PhaseState, dt: float, force: Tensor | None
    ) -> tuple[PhaseState, Tensor | None]:
        return leapfrog_composition(hamiltonian, state, dt, (1.0,), self.iterations, force)
