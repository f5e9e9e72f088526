"""`panel serve apps/studio.py`: the studio. Thin composition; the components live in hwm_studio.ui.

panel serve runs this file once per browser session, so each session gets its own Studio
(models, scenes, training thread); closing the tab stops that session's training.
"""

import panel as pn

from hwm_studio.ui.app import studio_page

pn.extension("vtk", throttled=True)

studio_page().servable()
