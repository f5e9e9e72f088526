"""Classical fourth-order Runge-Kutta on the full port-Hamiltonian field.

Order 4, not symplectic: on conservative systems its energy error drifts secularly over long
rollouts (the contrast the "why symplectic" demo shows). Actions are held over the step.
"""

from __future__ import annotations

from torch import Tensor

from hwm_studio.physics.field import VectorField
from hwm_studio.physics.integrators.base import Integrator
from hwm_studio.state import PhaseState


class RK4(Integrator):
    name = "rk4"
    order = 4
    symplectic = False
    needs_hamiltonian = False

    def step(
        self,
        field: VectorField,
        state: PhaseState,
        u: Tensor | None,
        dt: float,
    ) -> PhaseState:
        k1 = field(state, u)
        k2 = field(state.axpy(0.5 * dt, k1), u)
        k3 = field(state.axpy(0.5 * dt, k2), u)
        k4 = field(state.axpy(dt, k3), u)
        return PhaseState(
            state.q + dt / 6.0 * (k1.q + 2.0 * k2.q + 2.0 * k3.q + k4.q),
            state.p + dt / 6.0 * (k1.p + 2.0 * k2.p + 2.0 * k3.p + k4.p),
        )
