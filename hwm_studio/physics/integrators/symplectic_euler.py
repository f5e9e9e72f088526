"""Symplectic Euler (variant: momentum implicit, position explicit).

    p1 = p0 - h dH/dq(q0, p1)
    q1 = q0 + h dH/dp(q0, p1)

Order 1, symplectic, not symmetric. For separable H the first line is explicit; otherwise it
is solved by fixed-point iteration (`iterations` sweeps; each contracts by about h * Lipschitz).
"""

from __future__ import annotations

from hwm_studio.physics.energy import Hamiltonian
from hwm_studio.physics.integrators.base import SplittingIntegrator
from hwm_studio.state import PhaseState


class SymplecticEuler(SplittingIntegrator):
    name = "symplectic_euler"
    order = 1

    def __init__(self, iterations: int = 8) -> None:
        self.iterations = iterations

    def conservative_step(self, hamiltonian: Hamiltonian, state: PhaseState, dt: float) -> PhaseState:
        q, p = state.q, state.p
        p1 = p - dt * hamiltonian.grad_q(q, p)
        if not hamiltonian.separable:
            for _ in range(self.iterations):
                p1 = p - dt * hamiltonian.grad_q(q, p1)
        q1 = q + dt * hamiltonian.grad_p(q, p1)
        return PhaseState(q1, p1)
