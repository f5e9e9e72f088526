"""hwm_studio: Hamiltonian World Models you can watch think in phase space.

The library (this package) never imports panel, holoviews or pyvista; the UI lives in
`hwm_studio.ui` and `apps/`, and imports the library, never the other way round.
"""

from hwm_studio.physics import (
    Hamiltonian,
    PortHamiltonianField,
    Trajectory,
    get_integrator,
    rollout,
)
from hwm_studio.state import PhaseState
from hwm_studio.systems import get_system, system_names

__version__ = "0.1.0"

__all__ = [
    "Hamiltonian",
    "PhaseState",
    "PortHamiltonianField",
    "Trajectory",
    "__version__",
    "get_integrator",
    "get_system",
    "rollout",
    "system_names",
]
