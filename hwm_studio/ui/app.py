"""The served page: one Studio per session inside a template; its training stops with the session,
and the memory it took goes back to the operating system."""

from __future__ import annotations

import panel as pn
import torch

from hwm_studio.ui.heap import trim_after_next_collection
from hwm_studio.ui.studio import Studio
from hwm_studio.workspace import Workspace

TITLE = "hwm_studio: a Hamiltonian world model, live"


def studio_page(workspace: Workspace | None = None) -> pn.template.BootstrapTemplate:
    torch.set_num_threads(1)  # many tiny ops: threads only contend (and leave a core to training)
    studio = Studio(workspace=workspace)

    def closed(_ctx: object) -> None:
        studio.close()
        trim_after_next_collection()

    pn.state.on_session_destroyed(closed)
    # Bootstrap, not Fast: the Fast design always fetches a Google web font, and the page must
    # render offline with no failed requests.
    page = pn.template.BootstrapTemplate(title=TITLE, main=[studio], header_background="#0b4f6c")
    page.studio = studio  # reachable from tests
    return page
