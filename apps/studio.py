"""`panel serve apps/studio.py`: the studio. Thin composition; the components live in hwm_studio.ui."""

import panel as pn

from hwm_studio.ui.explorer import SimulatorExplorer

pn.extension(throttled=True)

SimulatorExplorer().servable(title="hwm_studio")
