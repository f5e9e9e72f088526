"""Many browser sessions at once: slider latency against one session, no cross-talk, plain GETs.

    python benchmarks/many_sessions.py                       # 10 sessions, 4 minutes of mixed use
    python benchmarks/many_sessions.py --sessions 4 --minutes 1

Serves the studio as `make studio` does (benchmarks/_served.py: its own process, one torch thread)
and drives headless Debian chromium pages through the studio's own controls:
1. 20 plain HTTP GETs (no websocket): their time, and how many Studios they built (should be 0).
2. One session alone moves the action and seed sliders (a key every 1.5 s): the browser records,
   per key, the time until the server's data patch arrives and until the next painted frame.
3. N sessions open at once and, for `--minutes`, each moves its sliders on a staggered clock
   (one key per session every 3 s) while, in turn, three sessions train in the Train tab, three
   plan and run MPC in the Plan tab, and two play (keys held in the Play tab); the same latencies
   are recorded by every browser.
4. Then each session's phase portrait, as its browser holds it, is compared bit for bit with a lone
   Studio built in this process from the inputs its browser shows (seed, actions): any cross-talk
   between sessions would show as a difference.
Console errors of every page and the server's logged errors are counted. Figures depend on the
machine (2 cores here: server and chromium share them). Writes benchmarks/results/many_sessions.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from urllib.request import urlopen

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _served

from hwm_studio.io import atomic_write_text

OUT = Path(__file__).resolve().parent / "results" / "many_sessions.json"
KEY_PERIOD_S = 3.0  # each session presses one slider key this often (staggered across sessions)
ROLE_PERIOD_S = 45.0  # the heavy roles (train, plan, play) move on to other sessions this often


def _stats(values: list[float]) -> dict[str, float | int]:
    if not values:
        return {"n": 0}
    a = np.asarray(values)
    ms = {"median_ms": np.median(a), "p95_ms": np.percentile(a, 95), "max_ms": a.max()}
    return {"n": int(a.size), **{k: round(float(v), 1) for k, v in ms.items()}}


def _latencies(pages: list[_served.Page]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"patch": [], "paint": []}
    for page in pages:
        lat = page.latencies()
        out["patch"] += lat["patch"]
        out["paint"] += lat["paint"]
    return out


def _reset_latencies(pages: list[_served.Page]) -> None:
    for page in pages:
        page.page.evaluate("window.__hwm.patch = []; window.__hwm.paint = []; window.__hwm.key = null")


SLIDER_KEYS = [("Action 1", "ArrowRight"), ("Seed", "ArrowRight"), ("Action 1", "ArrowLeft"), ("Action 1", "PageUp")]


def _press_next(page: _served.Page, i: int) -> None:
    label, key = SLIDER_KEYS[i % len(SLIDER_KEYS)]
    page.press(label, key)


def plain_gets(server: _served.Server, n: int = 20) -> dict:
    before = server.probe()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        with urlopen(server.url, timeout=120) as r:
            r.read()
        times.append((time.perf_counter() - t0) * 1000)
    after = server.probe()
    return {"requests": n, **_stats(times), "studios_built": after["studios_built"] - before["studios_built"],
            "rss_growth_mb": round(after["rss_mb"] - before["rss_mb"], 1)}  # fmt: skip


def alone(browser, server: _served.Server, keys: int = 20) -> dict:
    page = _served.Page(browser, server.url)
    page.page.wait_for_timeout(2000)
    for i in range(keys):
        _press_next(page, i)
        page.wait_for_patch()
        page.page.wait_for_timeout(1500)
    lat = page.latencies()
    result = {"load_s": round(page.load_s, 2), "patch": _stats(lat["patch"]), "paint": _stats(lat["paint"]),
              "console_errors": len(page.errors)}  # fmt: skip
    page.close()
    return result


class Roles:
    """Which sessions train, plan and play now; the roles move on every ROLE_PERIOD_S."""

    def __init__(self, pages: list[_served.Page]) -> None:
        self.pages, self.shift, self.active = pages, -1, {}
        self.counts = {"trainings": 0, "plans_and_mpc_runs": 0, "plays": 0}

    def _assign(self) -> dict[int, str]:
        n = len(self.pages)
        roles = ["train"] * 3 + ["plan"] * 3 + ["play"] * 2
        return {(self.shift * 3 + j) % n: role for j, role in enumerate(roles[: max(0, n - 2)])}

    def _release(self) -> None:
        """End the current roles: training stopped, keys let go, back on the Explore tab."""
        for i, role in self.active.items():
            page = self.pages[i]
            if role == "train":
                page.tab("Train")
                page.button("Stop")
            elif role == "play":
                page.page.keyboard.up("ArrowRight")
                page.page.keyboard.press("p")
            page.tab("Explore")
        self.active = {}

    def rotate(self) -> None:
        self._release()
        self.shift += 1
        self.active = self._assign()
        for i, role in self.active.items():
            page = self.pages[i]
            if role == "train":
                page.tab("Train")
                page.button("Start")
                self.counts["trainings"] += 1
            elif role == "plan":
                page.tab("Plan")
                page.button("Plan")
                self.counts["plans_and_mpc_runs"] += 1
            elif role == "play":
                page.tab("Play")
                page.page.get_by_role("button", name="Pause (P)").click()
                page.page.locator(".hwm-play").click()
                page.page.keyboard.down("ArrowRight")
                self.counts["plays"] += 1

    def tick(self) -> None:
        """Planning sessions run MPC after their plan, then plan again (the Plan tab's own buttons)."""
        for i, role in self.active.items():
            if role == "plan":
                page = self.pages[i].page
                if page.get_by_text("MPC finished").count() or page.get_by_text("Planned with").count():
                    page.get_by_role("button", name="Run MPC").click()
                    self.counts["plans_and_mpc_runs"] += 1

    def end(self) -> None:
        self._release()


def slider_inputs(page: _served.Page) -> dict[str, float]:
    """The Explore controls' values as the browser shows them (the lone Studio's inputs)."""
    from hwm_studio.ui.explore import ExplorePanel

    titles = page.page.evaluate("""() => {
        const out = {};
        for (const doc of window.Bokeh.documents)
          for (const m of doc.all_models) if (m.type === 'Slider') out[m.title] = m.value;
        return out; }""")  # fmt: skip
    out = {}
    for name in ("action_0", "seed"):
        value = titles[ExplorePanel.param[name].label]
        out[name] = int(value) if name == "seed" else float(value)
    return out


def crosstalk(pages: list[_served.Page], workspace: str) -> dict:
    """Each page's phase data against a lone Studio given the same inputs, bit for bit."""
    import torch

    from hwm_studio.ui.studio import Studio
    from hwm_studio.workspace import Workspace

    torch.set_num_threads(1)
    ws, checked, differ = Workspace(workspace), 0, []
    for k, page in enumerate(pages):
        inputs = slider_inputs(page)
        shown = page.phase_data()
        lone = Studio(workspace=ws, show_3d=False, **inputs)
        data = lone.explore.phase.model.data
        same = np.array_equal(shown["q"], data["q"]) and np.array_equal(shown["p"], data["p"])
        checked += 1
        if not same:
            differ.append({"session": k, "inputs": inputs,
                           "max_abs": float(np.abs(np.asarray(shown["q"]) - data["q"]).max())})  # fmt: skip
        lone.close()
    return {"sessions_checked": checked, "bit_identical": checked - len(differ), "differ": differ}


def together(browser, server: _served.Server, n: int, minutes: float) -> dict:
    pages = []
    t0 = time.perf_counter()
    for _ in range(n):
        pages.append(_served.Page(browser, server.url))
    load_all_s = time.perf_counter() - t0
    _reset_latencies(pages)
    idle_keys_end = time.perf_counter() + min(60.0, 0.25 * minutes * 60)
    i = 0
    while time.perf_counter() < idle_keys_end:  # sliders only, every session
        _press_next(pages[i % n], i // n)
        i += 1
        pages[0].page.wait_for_timeout(int(1000 * KEY_PERIOD_S / n))
    sliders_only = _latencies(pages)
    _reset_latencies(pages)
    roles = Roles(pages)
    end = time.perf_counter() + minutes * 60 - (idle_keys_end - t0 - load_all_s)
    next_rotation = 0.0
    while time.perf_counter() < end:
        now = time.perf_counter()
        if now >= next_rotation:
            roles.rotate()
            next_rotation = now + ROLE_PERIOD_S
        k = i % n
        if roles.active.get(k) != "play":  # a playing session's keyboard is the game's
            _press_next(pages[k], i // n)
        if k == 0:
            roles.tick()
        i += 1
        pages[0].page.wait_for_timeout(int(1000 * KEY_PERIOD_S / n))
    roles.end()
    mixed = _latencies(pages)
    for page in pages:  # the last patches land before the comparison
        page.wait_for_patch(120)
    pages[0].page.wait_for_timeout(3000)
    result = {
        "sessions": n,
        "load_all_s": round(load_all_s, 1),
        "sliders_only": {"patch": _stats(sliders_only["patch"]), "paint": _stats(sliders_only["paint"])},
        "mixed": {"patch": _stats(mixed["patch"]), "paint": _stats(mixed["paint"]), **roles.counts},
        "crosstalk": crosstalk(pages, server.workspace),
        "console_errors": sum(len(p.errors) for p in pages),
        "console_error_samples": [e[:200] for p in pages for e in p.errors][:5],
    }
    for page in pages:
        page.close()
    return result


def run(n: int, minutes: float) -> dict:
    from playwright.sync_api import sync_playwright

    workspace = tempfile.mkdtemp(prefix="hwm-many-")
    t0 = time.time()
    try:
        with _served.Server(workspace) as server, sync_playwright() as p:
            gets = plain_gets(server)
            print(f"plain GETs: {gets}", flush=True)
            browser = _served.launch(p)
            one = alone(browser, server)
            print(f"one session: {one}", flush=True)
            many = together(browser, server, n, minutes)
            print(f"{n} sessions: {json.dumps(many)}", flush=True)
            browser.close()
            probe = server.probe()
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
    return {"plain_gets": gets, "one_session": one, "together": many, "server_errors": probe["errors"],
            "server_error_samples": probe["last_errors"], "seconds": round(time.time() - t0, 1)}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--minutes", type=float, default=4.0)
    args = parser.parse_args()
    result = run(args.sessions, args.minutes)
    result.update(machine=f"{os.cpu_count()} cores", date=time.strftime("%Y-%m-%d %H:%M"))
    atomic_write_text(OUT, json.dumps(result, indent=2) + "\n")
    one, many = result["one_session"], result["together"]
    print(f"slider -> patch: one session median {one['patch'].get('median_ms')} ms (p95 {one['patch'].get('p95_ms')}); "
          f"{many['sessions']} sessions, sliders only {many['sliders_only']['patch'].get('median_ms')} ms "
          f"(p95 {many['sliders_only']['patch'].get('p95_ms')}), mixed {many['mixed']['patch'].get('median_ms')} ms "
          f"(p95 {many['mixed']['patch'].get('p95_ms')}); cross-talk: {many['crosstalk']['bit_identical']}/"
          f"{many['crosstalk']['sessions_checked']} bit-identical; errors: console {many['console_errors']}, "
          f"server {result['server_errors']}; plain GETs built {result['plain_gets']['studios_built']} "
          "studios")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
