"""The served page: one Studio per session inside a template; its training stops with the session,
and the memory it took goes back to the operating system (`ui/heap.py`).

The Studio is built when the browser's websocket connects (`pn.state.onload`), not when the page
is requested: a plain HTTP GET runs this app too (Bokeh makes a session per request), and building
a Studio there cost ~0.6 s of the server's CPU and ~20-40 MB held until the unused session is
discarded, for a request that may never connect. A GET now builds the template and a placeholder.

A callback that raises is logged and shown on its own session's status line (found through the
session's document, never another's); the other sessions, and this one, keep working.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable

import panel as pn
import torch

from hwm_studio.ui.heap import trim_after_next_collection
from hwm_studio.ui.studio import Studio
from hwm_studio.workspace import Workspace

TITLE = "hwm_studio: a Hamiltonian world model, live"
LOADING = "Loading the studio…"
_log = logging.getLogger(__name__)
_STUDIOS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # a session's document -> its Studio


def _show_error(exc: BaseException) -> None:
    """Panel's exception handler: log, and tell the session whose callback it was."""
    _log.error("a studio callback raised", exc_info=exc)
    studio = _STUDIOS.get(pn.state.curdoc) if pn.state.curdoc is not None else None
    if studio is not None:
        studio.session.status = f"**Something went wrong:** {type(exc).__name__}: {exc}"


def studio_page(
    workspace: Workspace | None = None, on_studio: Callable[[Studio], None] | None = None
) -> pn.template.BootstrapTemplate:
    """The page of one session. `on_studio(studio)` is called once the session's Studio exists
    (after the browser connects); tests and benchmarks use it to reach the server-side session."""
    torch.set_num_threads(1)  # many tiny ops: threads only contend (and leave a core to training)
    holder = pn.Column(pn.pane.Markdown(LOADING), sizing_mode="stretch_width")

    def build() -> None:
        studio, doc = Studio(workspace=workspace), pn.state.curdoc
        _STUDIOS[doc] = studio

        def closed(_ctx: object) -> None:
            _STUDIOS.pop(doc, None)  # the Studio refers to its document: a weak key alone would not go
            studio.close()
            trim_after_next_collection()

        pn.state.on_session_destroyed(closed)
        holder[:] = [studio]
        if on_studio is not None:
            on_studio(studio)

    pn.config.exception_handler = _show_error
    pn.state.onload(build)
    # Bootstrap, not Fast: the Fast design always fetches a Google web font, and the page must
    # render offline with no failed requests.
    return pn.template.BootstrapTemplate(title=TITLE, main=[holder], header_background="#0b4f6c")
