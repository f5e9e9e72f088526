"""The served studio in headless Debian chromium (playwright): what a user sees and does.

Screenshots land in test-artifacts/ (look at them). The app is served in-process on a free port
with a temporary workspace; every check reads either the page's pixels or the server-side
session the page is talking to.
"""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest

pn = pytest.importorskip("panel")
playwright = pytest.importorskip("playwright.sync_api")

from hwm_studio.ui.app import studio_page  # noqa: E402
from hwm_studio.workspace import Workspace  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]  # fmt: skip
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (make test installs it)")
    pn.extension("vtk", throttled=True)
    workspace = Workspace(tmp_path_factory.mktemp("workspace"))
    studios = []

    def make():
        return studio_page(workspace, on_studio=studios.append)

    port = _free_port()
    server = pn.serve({"studio": make}, port=port, address="127.0.0.1", threaded=True, show=False,
                      websocket_origin=[f"127.0.0.1:{port}"])  # fmt: skip
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)
    yield f"http://127.0.0.1:{port}/studio", studios
    server.stop()


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def _open(browser, url: str, errors: list[str]):
    page = browser.new_page(viewport={"width": 1600, "height": 1150})
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.get_by_text("300 steps of dt").wait_for(timeout=60_000)
    page.wait_for_timeout(1500)  # let the canvases paint
    return page


def _session(served, browser, errors: list[str]):
    """A new page and the server-side studio session it talks to."""
    url, studios = served
    n_before = len(studios)
    page = _open(browser, url, errors)
    _wait(lambda: len(studios) > n_before)
    return page, studios[-1]


def _wait(predicate, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


def _shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


def test_page_loads_with_every_view_and_no_console_errors(served, browser) -> None:
    """Then the chain: its coupling view appears (only models with pairs have one) without breaking
    the session's update (toggling a Bokeh pane's own `visible` did, server-side, leaving the old
    system drawn), and the Data efficiency tab opens."""
    errors: list[str] = []
    page, studio = _session(served, browser, errors)
    canvases = page.locator("canvas")
    _wait(lambda: canvases.count() >= 5)  # phase, energy, metrics, video (bokeh) and the VTK view
    for tab in ("Explore", "Compare", "Train"):
        assert page.get_by_text(tab, exact=True).count() >= 1
    page.get_by_text("VPT").first.wait_for()
    _shot(page, "studio_explore.png")
    page.get_by_text("Compare", exact=True).first.click()
    page.wait_for_timeout(1500)
    _shot(page, "studio_compare.png")
    page.get_by_text("Explore", exact=True).first.click()
    assert not studio.explore.couplings.pane.visible
    page.locator("select").nth(0).select_option("chain")  # System
    session = studio.session
    _wait(lambda: session.result is not None and session.result.system_title == "Spring chain", timeout=60)
    page.get_by_text("learned couplings (RMS pair force on the true states)").first.wait_for()
    assert studio.explore.couplings.pane.visible
    assert studio.explore.couplings.edges.data["label"] == [f"{v:.2f}" for v in session.result.couplings.values()]
    page.wait_for_timeout(1500)
    _shot(page, "studio_chain_couplings.png")
    page.get_by_text("Data efficiency", exact=True).first.click()
    page.get_by_text("No data-efficiency rows").or_(page.get_by_text("MLP trajectories to reach")).first.wait_for()
    page.wait_for_timeout(1000)
    _shot(page, "studio_data_efficiency.png")
    assert errors == []
    page.close()


def test_moving_the_action_slider_redraws_phase_and_energy(served, browser) -> None:
    errors: list[str] = []
    page, studio = _session(served, browser, errors)
    q_before = np.array(studio.explore.phase.model.data["q"])
    work_before = np.array(studio.explore.energy.source.data["control_work"])
    phase_canvas = page.locator(".bk-Canvas").first
    pixels_before = phase_canvas.screenshot()
    handle = page.locator(".noUi-handle").first  # the first slider: Action 1
    handle.focus()
    handle.press("End")
    _wait(lambda: studio.explore.action_0 > 0.5)
    _wait(lambda: not np.allclose(studio.explore.phase.model.data["q"], q_before))
    assert np.abs(studio.explore.energy.source.data["control_work"]).max() > np.abs(work_before).max()
    page.wait_for_timeout(1000)
    assert phase_canvas.screenshot() != pixels_before  # the browser redrew it
    _shot(page, "studio_action.png")
    assert errors == []
    page.close()


def test_in_app_training_streams_a_loss_curve(served, browser) -> None:
    errors: list[str] = []
    page, studio = _session(served, browser, errors)
    page.get_by_text("Train", exact=True).first.click()
    page.wait_for_timeout(500)
    page.get_by_role("button", name="Start").click()
    _wait(lambda: len(studio.training.loss_source.data["loss"]) > 20, timeout=90)
    page.wait_for_timeout(1500)
    _shot(page, "studio_training.png")
    page.get_by_role("button", name="Stop").click()
    _wait(lambda: studio.training.job is not None and not studio.training.job.alive, timeout=30)
    assert errors == []
    page.close()


def test_two_sessions_do_not_interfere(served, browser) -> None:
    url, studios = served
    n_before = len(studios)
    errors: list[str] = []
    a = _open(browser, url, errors)
    b = _open(browser, url, errors)
    _wait(lambda: len(studios) >= n_before + 2)
    sa, sb = studios[-2], studios[-1]
    assert sa is not sb
    assert sa.session.model is not sb.session.model  # each session owns its model (knobs are per session)
    ea, eb = sa.explore, sb.explore
    q_b = np.array(eb.phase.model.data["q"])
    handle = a.locator(".noUi-handle").first
    handle.focus()
    handle.press("End")
    _wait(lambda: max(ea.action_0, eb.action_0) > 0.5)
    still = eb if ea.action_0 > 0.5 else ea
    assert still.action_0 == 0.0
    np.testing.assert_array_equal(np.array(still.phase.model.data["q"]), q_b)
    assert errors == []
    a.close()
    b.close()


def test_a_pixel_model_shows_decoded_video_and_its_latent(served, browser) -> None:
    errors: list[str] = []
    page, studio = _session(served, browser, errors)
    selects = page.locator("select")
    selects.nth(0).select_option("two_body")  # System
    _wait(lambda: studio.session.system == "two_body")
    label = next(o for o in studio.session.param.model_name.objects if o.startswith("hwm-pixels"))
    selects.nth(1).select_option(label=label, timeout=90_000)  # Model (the options arrive with the system's)
    _wait(lambda: studio.session.result is not None and studio.session.result.reads_frames, timeout=60)
    # the phase portrait's title is drawn on the canvas (no DOM text): checked on the session's figure
    _wait(lambda: "aligned on its readings" in studio.explore.phase.figure.title.text)
    page.get_by_text("pixel MSE").first.wait_for()
    page.wait_for_timeout(1500)
    assert studio.explore.video.source.data["image"][1].shape == (32, 32)  # the model's own 32x32 frames
    _shot(page, "studio_pixels.png")
    assert errors == []
    page.close()


def test_the_plan_tab_draws_imagined_futures_and_runs_mpc_live(served, browser) -> None:
    errors: list[str] = []
    page, studio = _session(served, browser, errors)
    page.get_by_text("Plan", exact=True).first.click()
    page.wait_for_timeout(500)
    studio.planning.param.update(candidates=128, iterations=3, mpc_steps=12)
    page.get_by_role("button", name="Plan", exact=True).click()
    _wait(lambda: len(studio.planning.candidates_src.data["xs"]) > 0, timeout=60)
    page.get_by_text("Planned with").first.wait_for()
    page.wait_for_timeout(1500)
    _shot(page, "studio_plan.png")
    page.get_by_role("button", name="Run MPC").click()
    page.get_by_text("MPC finished").first.wait_for(timeout=90_000)
    assert len(studio.planning.executed_q) == 13
    page.wait_for_timeout(1500)
    _shot(page, "studio_mpc.png")
    assert errors == []
    page.close()


def test_the_play_tab_drives_the_model_from_held_keys(served, browser, tmp_path) -> None:
    """Hold -> on the pendulum the model's H moves by the control work less what friction took
    (the ledger balances to integrator level), frames reach the canvas and are acknowledged, blur
    clears the keys, and the saved episode is a Train tab source that reads back."""
    from hwm_studio.data.format import load_trajectories

    errors: list[str] = []
    page, studio = _session(served, browser, errors)
    page.get_by_text("Play", exact=True).first.click()
    _wait(lambda: studio.play.player is not None)
    play = studio.play
    page.get_by_role("button", name="Pause (P)").click()
    _wait(lambda: not play.paused)
    surface = page.locator(".hwm-play")
    surface.click()
    _wait(lambda: play.surface.focused)
    player = play.player
    h0 = player.energy0["total"]  # the ledger counts from the episode's start
    drawn0, t0 = play.surface.drawn, time.time()
    page.keyboard.down("ArrowRight")
    _wait(lambda: play.surface.keys == ["ArrowRight"])
    _wait(lambda: player.action[0] > 0)
    page.wait_for_timeout(2500)
    _shot(page, "studio_play.png")
    page.keyboard.up("ArrowRight")
    _wait(lambda: play.surface.keys == [])
    fps = (play.surface.drawn - drawn0) / (time.time() - t0)
    assert fps > 5, fps  # drawn and acknowledged while playing (benchmarks/play_fps.py measures the rate)
    page.keyboard.press("p")  # pause: the ledger and H are read from one state
    _wait(lambda: play.paused)
    led, h = player.ledger, player.energy()["total"]
    assert abs(led["control_work"]) > 1e-3
    scale = max(abs(h0), abs(h), abs(led["control_work"]), 1.0)
    balance = h - h0 + led["dissipated"] - led["control_work"] - led["residual_work"]
    assert balance == pytest.approx(led["balance_error"], abs=1e-4 * scale)  # the ledger shown is the model's
    # the discrete-gradient step's ledger is exact per step: the solver's tolerance, float64 rounding
    assert abs(led["balance_error"]) < 1e-9 * scale
    page.keyboard.down("ArrowLeft")
    _wait(lambda: play.surface.keys == ["ArrowLeft"])
    page.get_by_role("button", name="Resync").focus()  # the surface loses the keyboard: keys let go
    _wait(lambda: play.surface.keys == [] and not play.surface.focused)
    page.get_by_role("button", name="Save episode").click()
    _wait(lambda: any(f.startswith("played_") for f in studio.train_sources()))
    saved = next(f for f in studio.train_sources() if f.startswith("played_"))
    data = load_trajectories(studio.workspace.path(saved))
    assert data.q.shape[1] == player.steps + 1
    assert data.u is not None
    assert (data.u > 0).any()
    page.get_by_role("button", name="Export mp4").click()
    _wait(lambda: "as played_" in play.status and ".mp4" in play.status)
    video = next(studio.workspace.root.glob("played_*.mp4"))
    import imageio.v3 as iio

    assert len(iio.imread(video, index=None)) == player.steps + 1  # model | truth, every step played
    assert errors == []
    page.close()


@pytest.mark.parametrize("system", ["three_body", "double_pendulum"])
def test_play_drives_both_action_dims_of_a_two_action_system(served, browser, system) -> None:
    """The double pendulum and the three-body take two actions: ←/→ drive the first, ↑/↓ the
    second, frames are drawn, and the ledger of what was played balances at solver level."""
    errors: list[str] = []
    page, studio = _session(served, browser, errors)
    page.locator("select").nth(0).select_option(system)  # System
    _wait(lambda: studio.session.system == system and studio.session.scene.model is not None, timeout=90)
    page.get_by_text("Play", exact=True).first.click()
    page.get_by_role("button", name="Pause (P)").click()
    _wait(lambda: studio.play.player is not None and not studio.play.paused, timeout=60)
    play, player = studio.play, studio.play.player
    assert player.system.action_dim == 2  # (the three-body is the n-body system with three bodies)
    page.locator(".hwm-play").click()
    _wait(lambda: play.surface.focused)
    page.keyboard.down("ArrowUp")
    _wait(lambda: player.action[1] > 0 and player.action[0] == 0)
    page.keyboard.down("ArrowLeft")
    _wait(lambda: player.action[0] < 0 and player.action[1] > 0)
    drawn0 = play.surface.drawn
    page.wait_for_timeout(1500)
    _shot(page, f"studio_play_{system}.png")
    page.keyboard.up("ArrowLeft")
    page.keyboard.up("ArrowUp")
    _wait(lambda: play.surface.keys == [])
    assert play.surface.drawn - drawn0 > 5  # frames kept coming
    page.keyboard.press("p")
    _wait(lambda: play.paused)
    led = player.ledger
    assert abs(led["control_work"]) > 0  # both held actions did work on the model
    scale = max(abs(led["control_work"]), abs(led["dissipated"]), abs(player.energy()["total"]), 1.0)
    assert abs(led["balance_error"]) < 1e-9 * scale
    assert errors == []
    page.close()
