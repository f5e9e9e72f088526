"""Stormer-Verlet / leapfrog, in the generalized form valid for non-separable H.

    p_half = p0 - h/2 dH/dq(q0, p_half)
    q1     = q0 + h/2 [dH/dp(q0, p_half) + dH/dp(q1, p_half)]
    p1     = p_half - h/2 dH/dq(q1, p_half)

Order 2, symplectic, symmetric (time-reversible). Nothing assumes dq/dt = p: velocities always
come from dH/dp. For separable H (T(p) + V(q)) the implicit lines are explicit and this is the
familiar kick-drift-kick; otherwise they are solved by `iterations` fixed-point sweeps.
"""

from __future__ import annotations

from hwm_studio.physics.energy import Hamiltonian
from hwm_studio.physics.integrators.base import SplittingIntegrator
from hwm_studio.state import PhaseState


def leapfrog_step(hamiltonian: Hamiltonian, state: PhaseState, dt: float, iterations: int) -> PhaseState:
    """One generalized Stormer-Verlet step of J grad H (shared with the Yoshida composition)."""
    h2 = 0.5 * dt
    q, p = state.q, state.p
    if hamiltonian.separable:
        p_half = p - h2 * hamiltonian.grad_q(q, p)
        q1 = q + dt * hamiltonian.grad_p(q, p_half)
        return PhaseState(q1, p_half - h2 * hamiltonian.grad_q(q1, p_half))
    p_half = p - h2 * hamiltonian.grad_q(q, p)
    for _ in range(iterations):
        p_half = p - h2 * hamiltonian.grad_q(q, p_half)
    v0 = hamiltonian.grad_p(q, p_half)
    q1 = q + dt * v0
    for _ in range(iterations):
        q1 = q + h2 * (v0 + hamiltonian.grad_p(q1, p_half))
    return PhaseState(q1, p_half - h2 * hamiltonian.grad_q(q1, p_half))


class Leapfrog(SplittingIntegrator):
    name = "leapfrog"
    order = 2

    def __init__(self, iterations: int = 8) -> None:
        self.iterations = iterations

    def conservative_step(self, hamiltonian: Hamiltonian, state: PhaseState, dt: float) -> PhaseState:
        return leapfrog_step(hamiltonian, state, dt, self.iterations)
