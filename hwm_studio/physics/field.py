"""What an integrator needs from a vector field: dz/dt = f(z, u) and the action dimension.

PortHamiltonianField is one; the unstructured neural-ODE baseline is another (RK4 only: the
splitting integrators also need its Hamiltonian).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor

from hwm_studio.state import PhaseState


@runtime_checkable
class VectorField(Protocol):
    @property
    def action_dim(self) -> int: ...

    def __call__(self, state: PhaseState, u: Tensor | None = None) -> PhaseState: ...
