"""The integrator contract, and the splitting that keeps the conservative part symplectic.

How control and dissipation enter (Strang splitting): one step of size h is
    z -> N_{h/2} -> C_h -> N_{h/2}
where C_h is the integrator's own step for the conservative flow dz/dt = J grad H, and N_{h/2}
a half step of the non-conservative flow dz/dt = -R grad H + G u + r (actions held constant over
the step, zero-order hold) taken with Heun's second-order method. So:
  - with R = 0, no action and no residual, a step is exactly C_h: symplectic schemes stay
    symplectic and keep their declared order;
  - otherwise the composition is second order (Yoshida's fourth order drops to two), and the
    energy change per step is the conservative scheme's bounded error plus the work of N.

Consecutive steps of one rollout (`stepper`) reuse the force dH/dq a step ends with as the next
step's first force whenever nothing between them moves q (H separable, N momentum-only: friction
and actions, no residual): the same numbers, one force evaluation per leapfrog step instead of two.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

from torch import Tensor

from hwm_studio.physics.energy import Hamiltonian
from hwm_studio.physics.field import VectorField
from hwm_studio.physics.port_hamiltonian import PortHamiltonianField
from hwm_studio.state import PhaseState


class Integrator(ABC):
    """One step of dz/dt = f(z, u) with u held over the step.

    Class facts: `name` (registry key), `order` (global order of accuracy for the conservative
    flow), `symplectic` (whether the conservative step preserves the symplectic form),
    `needs_hamiltonian` (whether it steps only a field with an energy H).
    """

    name: ClassVar[str]
    order: ClassVar[int]
    symplectic: ClassVar[bool]
    needs_hamiltonian: ClassVar[bool] = True

    def interval_work(
        self, field: PortHamiltonianField, start: PhaseState, end: PhaseState, u: Tensor | None, dt: float
    ) -> dict[str, Tensor] | None:
        """The ports' work over each step start -> end that this scheme did exactly ('dissipated',
        'control', 'residual', each (B,)), or None when it has no exact form (the ledger then
        integrates the powers by the trapezoid rule and its balance error is the scheme's)."""
        return None

    @abstractmethod
    def step(self, field: VectorField, state: PhaseState, u: Tensor | None, dt: float) -> PhaseState:
        """Advance `state` by dt under action u (B, A) or None."""

    def stepper(self, field: VectorField, dt: float | Tensor) -> Callable[[PhaseState, Tensor | None], PhaseState]:
        """The steps of one rollout, called in order; schemes that can carry work from one step to
        the next override this (the result is that of calling `step` each time)."""
        return lambda state, u: self.step(field, state, u, dt)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(order={self.order}, symplectic={self.symplectic})"


def heun(field: PortHamiltonianField, state: PhaseState, u: Tensor | None, h: float) -> PhaseState:
    """Second-order explicit step of the non-conservative flow only. When that flow cannot move q
    the result keeps the very q tensor (the same numbers as adding its zero q-part)."""
    if not field.moves_positions(u):
        rate = field.momentum_rate(state, u)  # G(q) u computed once for both stages
        k1p = rate(state.p)
        k2p = rate(state.p + h * k1p)
        return PhaseState(state.q, state.p + 0.5 * h * (k1p + k2p))
    k1 = field.nonconservative(state, u)
    k2 = field.nonconservative(state.axpy(h, k1), u)
    return PhaseState(state.q + 0.5 * h * (k1.q + k2.q), state.p + 0.5 * h * (k1.p + k2.p))


class SplittingIntegrator(Integrator):
    """A symplectic scheme for J grad H, composed with the non-conservative flow by Strang splitting."""

    symplectic = True

    @abstractmethod
    def conservative_step(self, hamiltonian: Hamiltonian, state: PhaseState, dt: float) -> PhaseState:
        """Advance dz/dt = J grad H(z) by dt."""

    def conservative_flow(
        self, hamiltonian: Hamiltonian, state: PhaseState, dt: float, force: Tensor | None
    ) -> tuple[PhaseState, Tensor | None]:
        """`conservative_step` given dH/dq at the state (or None), returning the state and dH/dq at
        its end where the scheme computed it (None otherwise: this default reuses nothing)."""
        return self.conservative_step(hamiltonian, state, dt), None

    def stepper(self, field: VectorField, dt: float | Tensor) -> Callable[[PhaseState, Tensor | None], PhaseState]:
        _check_field(self, field)
        assert isinstance(field, PortHamiltonianField)
        carried: list[Tensor | None] = [None]  # dH/dq at the current state's q, when known

        def step(state: PhaseState, u: Tensor | None) -> PhaseState:
            keeps_q = not field.moves_positions(u)  # then the carried force still holds after N
            state, force = self._strang(field, state, u, dt, carried[0] if keeps_q else None)
            carried[0] = force if keeps_q else None
            return state

        return step

    def step(self, field: VectorField, state: PhaseState, u: Tensor | None, dt: float) -> PhaseState:
        _check_field(self, field)
        assert isinstance(field, PortHamiltonianField)
        return self._strang(field, state, u, dt, None)[0]

    def _strang(
        self, field: PortHamiltonianField, state: PhaseState, u: Tensor | None, dt: float | Tensor, force: Tensor | None
    ) -> tuple[PhaseState, Tensor | None]:
        """N_{h/2} C_h N_{h/2} (just C_h when conservative), from dH/dq at the state when known;
        returns the state and the conservative step's closing dH/dq (None if it has none)."""
        if field.is_conservative(u):
            return self.conservative_flow(field.hamiltonian, state, dt, force)
        state = heun(field, state, u, 0.5 * dt)
        state, force = self.conservative_flow(field.hamiltonian, state, dt, force)
        return heun(field, state, u, 0.5 * dt), force


def _check_field(integrator: Integrator, field: VectorField) -> None:
    if not isinstance(field, PortHamiltonianField):
        raise TypeError(f"{integrator.name} integrates a Hamiltonian field; this field has no H (use rk4)")
