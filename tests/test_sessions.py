"""Several browser sessions at once (issue 16): no cross-talk, one failing session leaves the others
working, and a plain HTTP GET builds no Studio.

The studio is served in-process (so a test can reach a session's server side) and driven from
headless Debian chromium through its own controls (benchmarks/_served.Page). Each session's
numbers are read from what its browser holds and compared with a lone Studio built headless with
the same inputs; benchmarks/many_sessions.py does the same for ten sessions for minutes.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from urllib.request import urlopen

import numpy as np
import pytest

pn = pytest.importorskip("panel")
playwright = pytest.importorskip("playwright.sync_api")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import _served  # noqa: E402

from hwm_studio.ui.app import TITLE, studio_page  # noqa: E402
from hwm_studio.ui.studio import Studio  # noqa: E402
from hwm_studio.workspace import Workspace  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    if not Path(_served.CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (make test installs it)")
    pn.extension("vtk", throttled=True)
    workspace = Workspace(tmp_path_factory.mktemp("workspace"))
    studios: list[Studio] = []
    port = _served.free_port()
    app = {"studio": lambda: studio_page(workspace, on_studio=studios.append)}
    server = pn.serve(app, port=port, address="127.0.0.1", threaded=True, show=False,
                      websocket_origin=[f"127.0.0.1:{port}"])  # fmt: skip
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            urlopen(f"http://127.0.0.1:{port}/studio", timeout=30).close()
            break
        except OSError:
            time.sleep(0.2)
    yield f"http://127.0.0.1:{port}/studio", studios, workspace
    server.stop()


def _wait(predicate, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def test_a_plain_get_builds_no_studio(served) -> None:
    """A GET without a websocket (a crawler, a health check) gets the page's shell and builds no
    models: the Studio is built only when the browser connects."""
    url, studios, _ = served
    before = len(studios)
    for _ in range(10):
        with urlopen(url, timeout=60) as r:
            assert r.status == 200
            assert TITLE in r.read().decode()  # the shell, whose main holds only a placeholder
    time.sleep(1.0)
    assert len(studios) == before


def _inputs(studio: Studio) -> dict[str, object]:
    e = studio.explore
    return {"seed": e.seed, "action_0": e.action_0}


def test_concurrent_sessions_each_see_their_own_numbers_and_survive_a_failing_one(served) -> None:
    url, studios, workspace = served
    with playwright.sync_playwright() as p:
        browser = _served.launch(p)
        before = len(studios)
        pages = [_served.Page(browser, url) for _ in range(3)]
        _wait(lambda: len(studios) >= before + 3)
        mine = studios[before:]
        by_page = []  # the server session of each page: the one whose seed follows that page's keys
        for k, page in enumerate(pages):  # interleaved: each page moves its own sliders by its own amounts
            page.press("Seed", "ArrowRight", k + 1, settle_ms=100)
        for k, page in enumerate(pages):
            page.press("Action 1", "End" if k % 2 == 0 else "Home")
            page.press("Action 1", "ArrowLeft" if k % 2 == 0 else "ArrowRight", 3 * k, settle_ms=50)
        for k, page in enumerate(pages):
            page.wait_for_patch()
            _wait(lambda k=k: any(s.explore.seed == k + 1 for s in mine))
            by_page.append(next(s for s in mine if s.explore.seed == k + 1))
        time.sleep(2.0)  # the last patches reach each browser
        for k, (page, studio) in enumerate(zip(pages, by_page, strict=True)):
            alone = Studio(workspace=workspace, show_3d=False, **_inputs(studio))
            shown = page.phase_data()
            expected = alone.explore.phase.model.data
            assert shown is not None, k
            np.testing.assert_array_equal(shown["q"], expected["q"], err_msg=f"session {k}")  # bit for bit
            np.testing.assert_array_equal(shown["p"], expected["p"], err_msg=f"session {k}")
            alone.close()

        # one session's callback raises: it says so, the others keep updating, and it recovers
        failing = by_page[0]

        class InjectedFault(Exception):
            pass

        def broken(*args, **kwargs):
            raise InjectedFault("injected fault")

        failing.session.scene.run = broken  # what the recompute calls: a bug of that session's alone
        pages[0].press("Seed", "ArrowRight")
        _wait(lambda: "injected fault" in failing.session.status)
        for k in (1, 2):
            q_before = pages[k].phase_data()["q"]
            pages[k].press("Seed", "ArrowRight")
            pages[k].wait_for_patch()
            _wait(lambda k=k, q=q_before: pages[k].phase_data()["q"] != q)
        del failing.session.scene.run
        q_before = pages[0].phase_data()["q"]
        pages[0].press("Seed", "ArrowRight")
        _wait(lambda: pages[0].phase_data()["q"] != q_before)
        for page in pages:
            assert page.errors == [], page.errors
            page.close()
        browser.close()
