"""The studio in a notebook: build it, show any of its parts, and drive it from code.

    import panel as pn
    pn.extension(inline=True)          # inline: the page needs no CDN (works in offline JupyterLab)
    import hwm_studio
    from hwm_studio.ui import notebook as nb

    studio = hwm_studio.studio()       # the whole studio; the last expression of a cell displays it
    studio.explore.phase               # or any view / panel on its own (see `components`)
    nb.set_action(studio, 0.6)         # a lesson scripts a demonstration
    nb.step(studio, 40)
    nb.train(studio, steps=200)
    nb.play(studio)                    # drive the model from the keyboard (the Play component)

Why these helpers exist: in a notebook, Panel sends a change to the browser by itself only when
the change came from a widget in that browser. A change made by code (a cell, a training or MPC
poll, an ipywidgets callback) edits the views' Bokeh data on the kernel side, and someone has to
send it; `pushed()` does, for every view displayed in this notebook. Views wrapped with
`pn.ipywidget(...)` or `ipywidget(...)` (jupyter_bokeh) send their own changes. A Bokeh view lives in
one output at a time: displaying it again moves it to the new output. Served (`panel serve`, or
Panel's Jupyter preview) none of this is needed, and the helpers still work.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import panel as pn
import param

from hwm_studio.ui.plan import Drawn
from hwm_studio.ui.playing import PlayPanel
from hwm_studio.ui.session import LIVE
from hwm_studio.ui.studio import Studio
from hwm_studio.ui.train import SIMULATE
from hwm_studio.workspace import Workspace


def studio(three_d: bool | None = None, workspace: Workspace | str | None = None, threads: int | None = 1,
           **params: Any) -> Studio:  # fmt: skip
    """The whole studio for a notebook (a `pn.viewable.Viewer`: display it, or any of its parts).

    Args:
        three_d: draw the 3D entity view (a VTK pane). None: only when `pn.extension('vtk')` was
            loaded, because an inline page cannot carry vtk.js (offline JupyterLab needs
            `pn.extension(inline=True)` and so no 3D; Panel's Jupyter preview and a served page can).
        workspace: where runs and trajectory files are read and written (default: $HWM_STUDIO_WORKSPACE,
            else ./workspace).
        threads: torch threads for this kernel (the served studio uses 1: its rollouts are many tiny
            ops, which threads only slow down); None leaves torch's setting alone.
        **params: the session's selectors and the Explore tab's controls, e.g. system="chain",
            steps=200, action_0=0.3.
    """
    import torch

    if threads is not None:
        torch.set_num_threads(int(threads))
    if three_d is None:
        three_d = "vtk" in pn.extension._loaded_extensions
    ws = workspace if isinstance(workspace, Workspace) or workspace is None else Workspace(workspace)
    return Studio(workspace=ws, show_3d=bool(three_d), **params)


def components(s: Studio) -> dict[str, Any]:
    """Every view and control panel of the studio, each displayable on its own (or in `pn.ipywidget`)."""
    e = s.explore
    parts: dict[str, Any] = {
        "phase": e.phase,
        "energy": e.energy,
        "metrics": e.metrics,
        "video": e.video,
        "couplings": e.couplings,
        "compare_model": s.compare.model_phase,
        "compare_base": s.compare.base_phase,
        "controls": s.controls_panel(),
        "training": s.training,
        "planning": s.planning,
        "play": s.play,
    }
    if e.entity3d is not None:
        parts["entity3d"] = e.entity3d
    return parts


# --- sending code-driven changes to the page ------------------------------------------------------
def _notebook_views() -> list[tuple[Any, Any, Any]]:
    """(document, comm, root model) of every Panel output displayed in this kernel, once per document."""
    seen: dict[int, tuple[Any, Any, Any]] = {}
    for _viewable, root, doc, comm in list(pn.state._views.values()):
        if comm is not None and doc is not None and "embedded" not in root.tags:
            seen.setdefault(id(doc), (doc, comm, root))
    return list(seen.values())


def _inline_stylesheets(root: Any) -> None:
    """Panel links the stylesheets of models it creates after the first render (a pane redrawn
    with new content) to its CDN, which an offline page cannot reach; an inline page gets them
    inline, as Panel does when it first renders an output."""
    from bokeh.models import ImportedStyleSheet, UIElement
    from panel.io.notebook import patch_inline_stylesheets

    for model in root.select({"type": UIElement}):
        if any(isinstance(s, ImportedStyleSheet) for s in model.stylesheets):
            patch_inline_stylesheets(model)


def _flush(doc: Any, comm: Any, tries: int = 50) -> None:
    """Send what `doc` holds now. An output whose comm the browser has not opened yet (it opens once
    the kernel is free, after the cell that displayed it and any queued cells) is tried again shortly,
    with what it holds then: Panel's own retry resends a message computed earlier, which can arrive
    after newer ones and leave the view showing a stale state."""
    from panel.io.notebook import push

    if comm._comm:
        push(doc, comm)
    elif tries > 0:
        from tornado.ioloop import IOLoop

        IOLoop.current().call_later(0.2, _flush, doc, comm, tries - 1)


@contextmanager
def pushed() -> Iterator[None]:
    """Run a code-driven change, then send what it changed to every view displayed in the notebook
    (one message per output). Nested uses send once, at the outermost."""
    outer = not pn.state._hold
    views = _notebook_views()
    for doc, _, _ in views:
        if not doc.callbacks.hold_value:
            doc.hold("combine")  # collect the change's events (Panel holds notebook documents too)
    pn.state._hold = True  # Panel's own immediate pushes wait for ours (as panel.io.notebook.block_comm)
    try:
        yield
    finally:
        if outer:
            pn.state._hold = False
            for doc, comm, root in _notebook_views():
                if pn.config.inline:
                    _inline_stylesheets(root)
                _flush(doc, comm)


def _flush_all() -> None:
    """Send what every displayed output holds now (a blocking helper between its steps)."""
    with pushed():
        pass


def _pushing(fn: Callable[[], Any]) -> Callable[[], None]:
    def run() -> None:
        with pushed():
            fn()

    return run


# --- driving the studio ---------------------------------------------------------------------------
def set_controls(s: Studio, **values: Any) -> None:
    """Set studio controls by name, the session's selectors (system, model_name, baseline_name) or the
    Explore tab's controls (one recompute per control, as a user moving them would)."""
    unknown = [n for n in values if n not in s.session.param and n not in s.explore.param]
    if unknown:
        raise ValueError(f"no studio control named {', '.join(map(repr, unknown))}")
    with pushed():
        for name, value in values.items():
            setattr(s.session if name in s.session.param else s.explore, name, value)


def set_action(s: Studio, *fractions: float, schedule: str | None = None, period: float | None = None) -> None:
    """Set the action sliders (fractions of the system's bound in [-1, 1]); optionally the schedule."""
    names = ("action_0", "action_1")
    if len(fractions) > len(names):
        raise ValueError(f"the studio has {len(names)} action sliders, got {len(fractions)} values")
    values: dict[str, Any] = {}
    if schedule is not None:
        values["schedule"] = schedule
    if period is not None:
        values["period"] = period
    with pushed():
        s.explore.param.update(**values, **dict(zip(names, fractions, strict=False)))  # one recompute


def step(s: Studio, frames: int = 1) -> int:
    """Advance the player by `frames` (clipped to the rollout); returns the new frame."""
    with pushed():
        return s.explore.step(frames)


def replay(s: Studio, frames: int | None = None, fps: float = 20.0, every: int = 1) -> int:
    """Replay the Explore rollout from the current frame, live in the notebook (blocks the cell while
    it plays); to drive the model from the keyboard, `play`."""
    steps, session = s.explore.steps, s.session
    end = steps if frames is None else min(steps, session.frame + int(frames))
    while session.frame < end:
        step(s, min(every, end - session.frame))
        time.sleep(1.0 / fps)
    return session.frame


def _comms_on_loop() -> None:
    """Handle every browser message of Panel's outputs on the kernel's event loop. Why: JupyterLab
    (4.4 and newer, `commsOverSubshells`, default "perCommTarget") sends each comm target's
    messages to its own kernel subshell, a thread of its own, and each Panel output has its own
    target. Panel's notebook path is not thread-safe: a browser event applied on a subshell holds and
    unholds the document while the loop's tick diffs and sends it, and two messages' fragments
    interleaved on the page ("Expected text fragment but received binary fragment", "s is not
    iterable" in apply_json_patch). On the loop, a tick and a browser event never overlap. Installed
    once, from the kernel's main thread (a cell), for the comms the browser opens from then on."""
    import pyviz_comms
    from tornado.ioloop import IOLoop

    if not getattr(pyviz_comms.Comm._handle_msg, "on_loop", False):
        pyviz_comms.Comm._handle_msg = _run_on(IOLoop.current(), pyviz_comms.Comm._handle_msg)


def _run_on(loop: Any, fn: Callable[..., None]) -> Callable[..., None]:
    """`fn`, run at once when called on `loop`'s thread (the caller's), else handed to that loop."""
    loop_thread = threading.get_ident()

    def run(*args: Any) -> None:
        if threading.get_ident() == loop_thread:
            fn(*args)
        else:
            loop.add_callback(fn, *args)

    run.on_loop = True  # type: ignore[attr-defined]
    return run


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


if _in_kernel() and threading.current_thread() is threading.main_thread():
    _comms_on_loop()  # before this notebook displays anything: its outputs' comms open later


def kernel_schedule(tick: Callable[[], None], period_ms: int) -> Any:
    """The Play loop on the kernel's own event loop (it runs while no cell does), each tick's changes
    sent to the notebook's outputs: a bare kernel has no Bokeh document to run a periodic callback,
    and a change made by code reaches the browser only when pushed (see the module doc)."""
    from tornado.ioloop import PeriodicCallback

    ticker = PeriodicCallback(_pushing(tick), period_ms)
    ticker.start()
    return ticker


def play(s: Studio, paused: bool = False) -> PlayPanel:
    """The Play component of the studio, for a cell to display: the selected model driven live from
    the keyboard beside the truth, with its ledger. Click the canvas, then hold the arrows (space
    releases, R resets, P pauses); keys go to the canvas, not to JupyterLab's shortcuts, while it has
    focus. The loop runs between cells on the kernel's event loop; `s.play.close()` stops it."""
    from tornado.ioloop import IOLoop

    _comms_on_loop()  # a no-op when importing this module in the kernel already did it
    panel = s.play
    loop = IOLoop.current()  # the kernel's loop (a cell runs on its thread)
    panel.schedule = kernel_schedule
    panel.on_loop = lambda fn: loop.add_callback(_pushing(fn))  # sends what a browser event changed
    with pushed():
        if panel.player is None and not panel.start():
            return panel  # its status says why (no model, or one the system does not fit)
        panel.paused = paused
    return panel


def train(s: Studio, steps: int = 200, kind: str = "hwm", lr: float = 3e-3, data: str = SIMULATE,
          watch: bool = True, wait: bool = True, timeout: float = 600.0) -> str:  # fmt: skip
    """Train a model in the background as the Train tab does, and (watch=True) show it as the studio's model.

    `data`: the Train tab's source, a trajectory file in the workspace or "simulate the selected system".
    wait=True blocks until training ends (the loss curves are drawn as it goes); wait=False returns at
    once and the curves stream while the kernel is idle. Returns the Train tab's status line.
    """
    panel = s.training
    panel.refresh_sources()
    panel.data.value = data
    panel.kind.value = kind
    panel.steps.value = int(steps)
    panel.lr.value = float(lr)
    panel.schedule = kernel_schedule  # its poll also sends what it drew to the notebook's views
    with pushed():
        panel.start()
    if panel.job is None:  # refused (the status says why)
        return panel.status.object
    if wait:
        panel.wait(timeout, between=_flush_all)
    if watch:
        _watch_live(s)
    return panel.status.object


def _watch_live(s: Studio) -> None:
    """Show the training run (live) as the studio's model, with its newest weights."""
    with pushed():
        if s.session.model_name == LIVE:
            s.session.param.trigger("model_name")  # reload the newest weights
        else:
            s.session.model_name = LIVE


def plan(s: Studio, **settings: Any) -> Drawn | None:
    """One plan in the Plan tab from the current frame's true state; settings: planner, cost, horizon,
    candidates, iterations, effort, target_energy. Returns what was drawn (None: the status says why)."""
    with pushed():
        s.planning.param.update(**settings)
        return s.planning.plan()


def run_mpc(s: Studio, steps: int | None = None, wait: bool = True, timeout: float = 600.0,
            **settings: Any) -> float:  # fmt: skip
    """Closed-loop MPC against the true system, as the Plan tab's Run MPC; returns the return so far.

    wait=True blocks until the episode ends, drawing as it goes; wait=False returns at once and the
    views update while the kernel is idle.
    """
    p = s.planning
    p.schedule = kernel_schedule  # no server: poll from the kernel's event loop, and send what it drew
    with pushed():
        if steps is not None:
            settings["mpc_steps"] = int(steps)
        p.param.update(**settings)
        p.run_mpc()
    if wait:
        deadline = time.monotonic() + timeout
        while p.running and time.monotonic() < deadline:
            time.sleep(0.2)
            with pushed():
                p.poll()
        if p.running:
            p.stop_mpc()
        with pushed():
            p.wait(30)
    return p.episode_return


# --- ipywidgets -----------------------------------------------------------------------------------
def link_ipywidget(widget: Any, target: Any, name: str) -> Any:
    """Link an ipywidgets widget's `value` with parameter `name` of `target` (`studio.explore`, a PlanPanel),
    both ways; changes made by the widget are sent to the notebook's views. Returns the widget."""
    syncing = {"now": False}

    def to_param(change: dict[str, Any]) -> None:
        if syncing["now"]:
            return
        syncing["now"] = True
        try:
            with pushed():
                setattr(target, name, change["new"])
        finally:
            syncing["now"] = False

    def to_widget(event: Any) -> None:
        if syncing["now"]:
            return
        syncing["now"] = True
        try:
            widget.value = event.new
        finally:
            syncing["now"] = False

    widget.value = getattr(target, name)
    widget.observe(to_param, names="value")
    target.param.watch(to_widget, name)
    return widget


def ipywidget_slider(target: Any, name: str, step: float | None = None, **kwargs: Any) -> Any:
    """An ipywidgets slider for a numeric parameter of `target`, bounded like it and linked to it."""
    import ipywidgets

    p = target.param[name]
    lo, hi = p.bounds if p.bounds is not None else (None, None)
    if lo is None or hi is None:
        raise ValueError(f"{name!r} has no bounds: give the widget yourself and use link_ipywidget")
    integer = isinstance(p, param.Integer)
    cls = ipywidgets.IntSlider if integer else ipywidgets.FloatSlider
    options = {"min": lo, "max": hi, "description": p.label or name, "continuous_update": False}
    if step is not None or not integer:
        options["step"] = step if step is not None else (hi - lo) / 200
    options.update(kwargs)
    return link_ipywidget(cls(**options), target, name)


def ipywidget(obj: Any) -> Any:
    """`pn.ipywidget(obj)` for an offline notebook: Panel's stylesheets are sent inline (pn.ipywidget
    links them to Panel's CDN, also on every later update), and a view already shown in another output
    moves into the widget (a Bokeh view lives in one output at a time, as when Panel displays it
    again). The widget sends the view's changes itself, from code as well."""
    from bokeh.document import Document
    from panel.io.model import add_to_doc

    doc = Document()
    root = pn.panel(obj).get_root(doc=doc)
    add_to_doc(root, doc)  # takes the view's models out of any earlier output's document
    if not pn.config.inline:
        from jupyter_bokeh.widgets import BokehModel

        return BokehModel(root, combine_events=True)
    _inline_stylesheets(root)
    return _inline_widget_class()(root, combine_events=True)


@functools.cache
def _inline_widget_class() -> type:
    from bokeh.document.events import ModelChangedEvent
    from bokeh.models import ImportedStyleSheet
    from jupyter_bokeh.widgets import BokehModel
    from panel.io.notebook import replace_inline_css

    class InlineBokehModel(BokehModel):
        """jupyter_bokeh's widget, turning the CDN stylesheets of a redrawn pane into inline ones."""

        def _document_patched(self, event: Any) -> None:
            new = getattr(event, "new", None)
            if isinstance(event, ModelChangedEvent) and event.attr == "stylesheets" and isinstance(new, list):
                inline = [replace_inline_css(s) if isinstance(s, ImportedStyleSheet) else s for s in new]
                if any(a is not b for a, b in zip(inline, new, strict=True)):
                    event.model.stylesheets = inline  # dispatched to this widget again, inline this time
                    return
            super()._document_patched(event)

    return InlineBokehModel
