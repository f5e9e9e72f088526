"""The studio in notebooks, and the teaching notebooks in examples/.

- `import hwm_studio` stays free of panel, holoviews and pyvista;
- every studio view and control panel renders on its own, goes into an ipywidgets layout, follows
  ipywidgets values, and the notebook helpers drive it from code (and send what they change to the
  views a notebook shows);
- every notebook in examples/ is committed without outputs, states its learning goal first, and runs
  top to bottom in a fresh kernel with the quick budgets (slow);
- the quickstart notebook runs in a real JupyterLab in headless chromium, offline, and the inline studio
  draws (browser; screenshots in test-artifacts/).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("[0-9][0-9]_*.ipynb"))
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]  # fmt: skip


def test_importing_the_library_imports_no_ui_stack() -> None:
    code = (
        "import sys, hwm_studio\n"
        "assert callable(hwm_studio.studio)\n"
        "bad = [m for m in ('panel', 'holoviews', 'pyvista') if m in sys.modules]\n"
        "assert not bad, bad"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


# --- the notebooks as files --------------------------------------------------------------------------
def test_the_eight_lessons_are_there_without_outputs() -> None:
    nbformat = pytest.importorskip("nbformat")
    assert [p.name[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04", "05", "06", "07", "09", "10"]
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        first = nb.cells[0]
        assert first.cell_type == "markdown", path.name
        assert first.source.startswith(f"# {path.name[:2]}"), path.name
        assert "**Learning goal.**" in first.source, path.name
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert "# ---- Knobs" in code[0].source, path.name
        assert "HWM_EXAMPLES_QUICK" in code[0].source, path.name
        for cell in code:
            assert not cell.outputs, f"{path.name}: saved with outputs"
            assert cell.execution_count is None, f"{path.name}: saved with execution counts"
        assert nb.metadata["kernelspec"]["name"] == "python3"
    for twin in ("01_quickstart.py", "06_planning_swingup.py"):
        assert (EXAMPLES / twin).is_file()


# --- components and helpers, without a browser -----------------------------------------------------
@pytest.fixture
def studio(tmp_path):
    pytest.importorskip("panel")
    pytest.importorskip("jupyter_bokeh")
    from hwm_studio.ui import notebook as nb

    s = nb.studio(workspace=tmp_path / "ws", threads=None)
    yield s
    s.close()


@pytest.fixture
def notebook_view():
    """Render a component as a notebook output does (a held document with a comm, known to Panel);
    returns a function doing that, and forgets the outputs afterwards."""
    import panel as pn
    from bokeh.document import Document
    from bokeh.models import UIElement
    from panel.io.model import add_to_doc
    from panel.io.notebook import patch_inline_stylesheets
    from panel.io.resources import set_resource_mode
    from pyviz_comms import Comm

    refs = []

    def show(obj):
        doc = Document()
        comm = Comm()
        comm._comm = object()  # as if the browser had opened it
        with set_resource_mode("inline" if pn.config.inline else "cdn"):  # as Viewable._repr_mimebundle_
            root = pn.panel(obj).get_root(doc, comm)
        if pn.config.inline:
            for model in root.select({"type": UIElement}):
                patch_inline_stylesheets(model)
        add_to_doc(root, doc, True)  # as panel.io.notebook.render_mimebundle: the document is held
        refs.append(root.ref["id"])
        return doc, root

    yield show
    for ref in refs:
        pn.state._views.pop(ref, None)


def test_every_view_and_panel_renders_alone_and_inside_ipywidgets(studio) -> None:
    import ipywidgets
    import panel as pn
    from bokeh.document import Document

    from hwm_studio.ui import notebook as nb

    parts = nb.components(studio)
    assert {"phase", "energy", "metrics", "video", "controls", "training", "planning"} <= set(parts)
    for name, part in parts.items():
        widget = pn.ipywidget(part)  # a fresh view: Panel's own ipywidget works
        assert isinstance(widget, ipywidgets.DOMWidget), name
        assert pn.panel(part).get_root(Document()) is not None, name
    # the whole studio, and a view that is already shown somewhere else, moved into a widget
    assert pn.panel(studio).get_root(Document()) is not None
    assert isinstance(nb.ipywidget(studio.explore.phase), ipywidgets.DOMWidget)
    # the 3D view only when the vtk extension is loaded (an inline page cannot carry vtk.js); earlier
    # test modules in the same process may have loaded it
    vtk_loaded = "vtk" in pn.extension._loaded_extensions
    assert (studio.explore.entity3d is not None) == vtk_loaded


def test_ipywidgets_values_drive_the_studio_both_ways(studio) -> None:
    from hwm_studio.ui import notebook as nb

    q_before = np.array(studio.explore.phase.model.data["q"])
    slider = nb.ipywidget_slider(studio.explore, "action_0")
    assert (slider.min, slider.max) == (-1.0, 1.0)
    slider.value = 0.7
    assert studio.explore.action_0 == pytest.approx(0.7)
    assert not np.allclose(studio.explore.phase.model.data["q"], q_before)
    studio.explore.action_0 = -0.2
    assert slider.value == pytest.approx(-0.2)
    steps = nb.ipywidget_slider(studio.explore, "steps")
    steps.value = 120
    assert len(studio.explore.phase.truth.data["q"]) == 121


def test_helpers_script_a_lesson_and_send_changes_to_the_notebook(studio, notebook_view, monkeypatch) -> None:
    import panel as pn
    import panel.io.notebook as pnb
    from panel.io.model import diff

    from hwm_studio.ui import notebook as nb

    sent = []

    def push(doc, comm, binary=True, msg=None):  # what would go to the browser, per output
        message = diff(doc, binary=False)
        sent.append((doc, message.content_json if message is not None else ""))

    monkeypatch.setattr(pnb, "push", push)
    monkeypatch.setattr(pn.config, "inline", True)  # as pn.extension(inline=True)
    doc, _root = notebook_view(studio.explore.phase)
    phase_source = studio.explore.phase.model.id
    nb.set_action(studio, 0.5, schedule="sine", period=3.0)
    assert (studio.explore.action_0, studio.explore.schedule, studio.explore.period) == (0.5, "sine", 3.0)
    assert sent
    assert sent[-1][0] is doc
    assert phase_source in sent[-1][1]
    assert nb.step(studio, 25) == 25
    assert studio.explore._player.value == 25  # the player widget moves with it
    assert nb.replay(studio, frames=5, fps=1000) == 30
    assert nb.step(studio, 10_000) == studio.explore.steps

    # the Plan tab, shown as its own output; an inline page must get no CDN stylesheet
    pdoc, _ = notebook_view(studio.planning)
    drawn = nb.plan(studio, candidates=32, iterations=1, horizon=10)
    assert drawn is not None, studio.planning.status.object
    plan_messages = [m for d, m in sent if d is pdoc]
    assert plan_messages
    assert studio.planning.candidates_src.id in plan_messages[-1]
    assert not any("cdn.holoviz.org" in m for _, m in sent)
    total = nb.run_mpc(studio, steps=3, candidates=32, iterations=1)
    assert len(studio.planning.executed_u) == 3
    assert total == studio.planning.episode_return

    # training from code: the Train tab's run, then its model shown in the views
    status = nb.train(studio, steps=30, kind="mlp")
    assert "completed after 30 steps" in status
    assert len(studio.training.loss_source.data["loss"]) == 30
    assert studio.session.model_name == nb.LIVE
    assert studio.session.result is not None


# --- every notebook, top to bottom --------------------------------------------------------------------
def _real_pendulum_root() -> str:
    from hwm_studio.protocols import real_pendulum

    return os.environ.get("HWM_STUDIO_DATA") or str(real_pendulum.default_path().parents[1])


def _execute(path: Path, cwd: Path, env: dict[str, str], monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    for key, value in env.items():  # the kernel inherits this process's environment
        monkeypatch.setenv(key, value)
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(cwd)}})
    client.execute()  # raises CellExecutionError on the first failing cell
    streams = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "Traceback" not in streams  # nothing failed quietly inside a callback either
    return nb, streams


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path, tmp_path, monkeypatch) -> None:
    env = {"HWM_EXAMPLES_QUICK": "1", "OMP_NUM_THREADS": "1", "HWM_STUDIO_DATA": _real_pendulum_root()}
    _, streams = _execute(path, tmp_path, env, monkeypatch)
    if path.name.startswith("07") and not Path(env["HWM_STUDIO_DATA"], "schmidt_lipson").is_dir():
        assert "SKIPPED" in streams


@pytest.mark.slow
def test_the_real_data_notebook_skips_clearly_without_its_data(tmp_path, monkeypatch) -> None:
    path = next(p for p in NOTEBOOKS if p.name.startswith("07"))
    env = {"HWM_EXAMPLES_QUICK": "1", "OMP_NUM_THREADS": "1", "HWM_STUDIO_DATA": str(tmp_path / "nowhere")}
    _, streams = _execute(path, tmp_path, env, monkeypatch)
    assert "SKIPPED: the real pendulum data was not found" in streams
    assert "HWM_STUDIO_DATA" in streams


def test_a_browser_message_handled_on_a_subshell_thread_runs_on_the_kernels_loop() -> None:
    """JupyterLab 4.4+ hands each comm target's messages to a kernel subshell (a thread of its own);
    Panel's outputs then handle them on the loop's thread, where Play ticks, never beside a tick."""
    import asyncio
    import threading

    from tornado.ioloop import IOLoop

    from hwm_studio.ui import notebook as nb

    loop = IOLoop(make_current=False)
    seen: list[tuple[int, object]] = []
    handle = nb._run_on(loop, lambda msg: seen.append((threading.get_ident(), msg)))
    handle("on the loop's thread")  # the caller's thread is the loop's: run at once
    assert seen == [(threading.get_ident(), "on the loop's thread")]
    subshell = threading.Thread(target=handle, args=("from a subshell",))
    subshell.start()
    subshell.join()
    assert len(seen) == 1  # not run on the subshell's thread: queued for the loop
    loop.run_sync(lambda: asyncio.sleep(0.05))
    assert seen[1] == (threading.get_ident(), "from a subshell")
    loop.close()


def test_nb_play_runs_the_play_loop_on_the_kernels_event_loop(studio) -> None:
    """`nb.play` starts the Play component ticking between cells (no Bokeh document in a bare
    kernel): held keys step the model; pausing stops the ticks; closing frees them."""
    import asyncio

    from tornado.ioloop import IOLoop

    from hwm_studio.ui import notebook as nb

    async def idle(seconds: float) -> None:  # the kernel between cells
        await asyncio.sleep(seconds)

    loop = IOLoop.current()
    panel = loop.run_sync(lambda: _in_loop(nb.play, studio))
    assert panel.player is not None
    panel.surface.keys = ["ArrowRight"]  # as the browser sends a held key
    loop.run_sync(lambda: idle(0.6))
    assert panel.looping
    assert panel.player.steps > 0
    assert panel.player.action[0] > 0
    assert panel.player.ledger["control_work"] != 0.0
    assert panel.surface.sent > 0  # frames went out
    panel.paused = True  # as the toggle would: handed to the loop, which then stops ticking
    loop.run_sync(lambda: idle(0.05))
    assert not panel.looping
    steps = panel.player.steps
    loop.run_sync(lambda: idle(0.2))
    assert panel.player.steps == steps
    panel.close()
    assert panel.player is None


async def _in_loop(fn, *args):  # call fn with the loop running, as a cell runs in the kernel
    return fn(*args)


PLAY_NOTEBOOK = "play.ipynb"


def _write_play_notebook(path: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    cells = [
        "import panel as pn\npn.extension(inline=True)\nfrom hwm_studio.ui import notebook as nb\n"
        "studio = nb.studio(three_d=False)",
        "nb.play(studio)",
    ]
    kernel = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells], metadata=kernel)
    nbformat.write(notebook, path)  # a kernelspec, or Lab asks which kernel (and waits for an answer)


# --- the quickstart in JupyterLab, in headless chromium ---------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def jupyterlab(tmp_path):
    """JupyterLab on a free loopback port with a token, serving a copy of the quickstart (Lab must not
    autosave outputs into examples/), with its config, settings and runtime files in tmp_path."""
    pytest.importorskip("jupyterlab")
    quickstart = next(p for p in NOTEBOOKS if p.name.startswith("01"))
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(quickstart, root / quickstart.name)
    _write_play_notebook(root / PLAY_NOTEBOOK)
    config = tmp_path / "config"
    (config / "labconfig").mkdir(parents=True)
    (config / "labconfig" / "page_config.json").write_text(  # no "news" prompt over the page
        '{"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": true}}'
    )
    port, token = _free_port(), "hwm-notebook-test"
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(config), JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               HWM_EXAMPLES_QUICK="1", OMP_NUM_THREADS="1")  # fmt: skip
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--ServerApp.allow_root=True",
           "--LabApp.expose_app_in_browser=True", "--LabApp.extension_manager=readonly",
           f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}",
           f"--LabApp.user_settings_dir={tmp_path / 'settings'}"]  # fmt: skip
    log = (tmp_path / "lab.log").open("w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "lab.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.time() < deadline, "JupyterLab did not start in 60 s"
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}", token, quickstart.name
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the server and the kernels it started
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@pytest.mark.slow
@pytest.mark.browser
def test_quickstart_in_jupyterlab_draws_the_inline_studio(jupyterlab) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (make test installs it)")
    base, token, name = jupyterlab
    errors, outside = [], []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1100})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: outside.append(r.url) if r.url.startswith(("http:", "https:", "ws:"))
                and not r.url.startswith((base, base.replace("http", "ws"))) else None)  # fmt: skip
        page.goto(f"{base}/lab/tree/{name}?token={token}")
        page.wait_for_function(NOTEBOOK_OPEN, timeout=90_000)
        page.evaluate(RUN_ALL)  # resolves once the kernel is ready and every cell is queued
        deadline = time.time() + 240
        while True:  # every code cell has run (an execution count each) and the kernel is idle again
            counts, kernel = page.evaluate(PROGRESS)
            if kernel == "idle" and counts and all(c is not None for c in counts):
                break
            assert time.time() < deadline, f"the notebook did not finish in 240 s: {counts}, kernel {kernel}"
            page.wait_for_timeout(500)
        page.wait_for_timeout(3000)  # let the last outputs lay out and paint
        assert page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").filter(
            has_text="Error").count() == 0  # fmt: skip
        last = page.locator(".jp-Cell-outputArea").last  # the whole studio
        last.scroll_into_view_if_needed()
        page.wait_for_timeout(1500)
        canvases = last.locator("canvas")
        assert canvases.count() >= 4  # phase, energy, metrics and video (Bokeh)
        ARTIFACTS.mkdir(exist_ok=True)
        shot = last.screenshot(path=str(ARTIFACTS / "notebook_quickstart_studio.png"))
        page.screenshot(path=str(ARTIFACTS / "notebook_quickstart_lab.png"))
        browser.close()
    image = _png_rgb(shot)
    orange = (np.abs(image.astype(int) - (0xD5, 0x5E, 0x00)).sum(axis=-1) < 60).sum()
    assert orange > 500, "the model's curves (orange) are not drawn in the inline studio"
    assert outside == []  # offline: nothing is fetched from a CDN
    assert errors == []


@pytest.mark.slow
@pytest.mark.browser
def test_play_in_jupyterlab_takes_the_keys_while_the_output_has_focus(jupyterlab) -> None:
    """`nb.play(studio)` in a real JupyterLab: click the canvas, hold an arrow: frames are drawn,
    the caption shows the held action, and JupyterLab's own arrow-key shortcuts (select the next
    cell in command mode) do not fire."""
    playwright = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (make test installs it)")
    base, token, _ = jupyterlab
    errors: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1100})
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(f"{base}/lab/tree/{PLAY_NOTEBOOK}?token={token}")
        page.wait_for_function(NOTEBOOK_OPEN, timeout=90_000)
        page.evaluate(RUN_ALL)
        surface = page.locator(".hwm-play")
        surface.wait_for(timeout=180_000)
        deadline = time.time() + 60
        while int(surface.get_attribute("data-drawn") or 0) == 0:  # the loop ticks and frames arrive
            assert time.time() < deadline, "no frame was drawn in 60 s"
            page.wait_for_timeout(250)
        active = page.evaluate(ACTIVE_CELL)
        surface.click()
        drawn0 = int(surface.get_attribute("data-drawn") or 0)
        page.keyboard.down("ArrowRight")
        page.wait_for_timeout(1000)
        deadline = time.time() + 20  # frames keep coming while the key is held (slower under load)
        while int(surface.get_attribute("data-drawn") or 0) - drawn0 <= 10 and time.time() < deadline:
            page.wait_for_timeout(250)
        caption = surface.inner_text()
        page.keyboard.up("ArrowRight")
        page.keyboard.press("ArrowDown")  # a tap: in command mode JupyterLab would select the next cell
        drawn = int(surface.get_attribute("data-drawn") or 0)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "notebook_play.png"))
        assert page.evaluate(ACTIVE_CELL) == active  # the keys went to the canvas only
        browser.close()
    assert drawn - drawn0 > 10, (drawn0, drawn)  # frames kept coming while the key was held
    assert "action [2.]" in caption, caption  # the pendulum's bound (2) times the held key
    assert errors == []


# JupyterLab's own application object (exposed by --LabApp.expose_app_in_browser), read by the test
NOTEBOOK_OPEN = """() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
    return !!(w && w.sessionContext && w.content && w.content.model); }"""
RUN_ALL = """async () => { const w = window.jupyterapp.shell.currentWidget;
    await w.context.ready; await w.sessionContext.ready; w.content.activate();
    await window.jupyterapp.commands.execute('notebook:run-all-cells'); }"""
ACTIVE_CELL = "() => window.jupyterapp.shell.currentWidget.content.activeCellIndex"
PROGRESS = """() => { const w = window.jupyterapp.shell.currentWidget; const cells = w.content.model.cells;
    const counts = []; for (let i = 0; i < cells.length; i++) { const c = cells.get(i);
      if (c.type === 'code') counts.push(c.executionCount); }
    const kernel = w.sessionContext.session && w.sessionContext.session.kernel;
    return [counts, kernel ? kernel.status : null]; }"""


def _png_rgb(data: bytes) -> np.ndarray:
    import io

    import imageio.v3 as iio

    return iio.imread(io.BytesIO(data))[..., :3]
