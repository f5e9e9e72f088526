"""hwm_studio: Hamiltonian World Models you can watch think in phase space.

The library (this package) never imports panel, holoviews or pyvista; the UI lives in
`hwm_studio.ui` and `apps/`, and imports the library, never the other way round.
"""

from typing import Any

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


def studio(**params: Any) -> Any:
    """The whole studio as a notebook component (`hwm_studio.ui.studio.Studio`, a Panel Viewer).

    Run `pn.extension(inline=True)` first in an offline notebook. Keyword arguments are the studio's
    controls (system="chain", steps=200, action_0=0.3, ...) and the options of
    `hwm_studio.ui.notebook.studio` (three_d, workspace, threads). Imports panel only when called.
    """
    from hwm_studio.ui.notebook import studio as _studio

    return _studio(**params)


__all__ = [
    "Hamiltonian",
    "PhaseState",
    "PortHamiltonianField",
    "Trajectory",
    "__version__",
    "get_integrator",
    "get_system",
    "rollout",
    "studio",
    "system_names",
]
