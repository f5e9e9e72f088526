"""Yoshida's fourth-order symplectic composition of leapfrog.

    Phi_h = L_{w1 h} o L_{w0 h} o L_{w1 h},  w1 = 1 / (2 - 2^(1/3)),  w0 = 1 - 2 w1

Order 4, symplectic, symmetric; three leapfrog steps per step (w0 < 0: one substep runs
backwards). Being a composition of the generalized leapfrog, it is valid for non-separable H.
"""

from __future__ import annotations

from torch import Tensor

from hwm_studio.physics.energy import Hamiltonian
from hwm_studio.physics.integrators.base import SplittingIntegrator
from hwm_studio.physics.integrators.leapfrog import leapfrog_composition
from hwm_studio.state import PhaseState

W1 = 1.0 / (2.0 - 2.0 ** (1.0 / 3.0))
W0 = 1.0 - 2.0 * W1


class Yoshida4(SplittingIntegrator):
    name = "yoshida4"
    order = 4

    def __init__(self, iterations: int = 8) -> None:
        self.iterations = iterations

    def conservative_step(self, hamiltonian: Hamiltonian, state: PhaseState, dt: float) -> PhaseState:
        return self.conservative_flow(hamiltonian, state, dt, None)[0]

    def conservative_flow(
        self, hamiltonian: Hamiltonian, state: PhaseState, dt: float, force: Tensor | None
    ) -> tuple[PhaseState, Tensor | None]:
        return leapfrog_composition(hamiltonian, state, dt, (W1, W0, W1), self.iterations, force)
