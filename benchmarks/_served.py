"""The served studio driven by a scripted browser: what the session benchmarks and tests share.

Server side, `serve` runs the studio page as `make studio` does (hwm_studio.ui.app.studio_page, one
Studio per session, one torch thread) in a process of its own, plus `/probe`: its RSS and RSS's
parts (malloc's heap, other anonymous memory, mapped files), how many Studios were built and are
alive (a WeakSet, after gc), Python objects, traced graphs, threads, heap trims, and how many
errors its loggers reported (a callback that raised is logged by Bokeh/Panel at ERROR): object
counts separate a leak from the allocator keeping freed pages.
`Server` starts that process on a free port and reads the probe.

Browser side, `LATENCY_JS` is injected before the page's scripts: it notes the time of the first
key pressed after the last patch, and when the next ColumnDataSource change arrives from the server
it records (patch time - key time) and, one animation frame later, (painted time - key time).
`Page` drives one session through the studio's own controls (sliders by keyboard, buttons, tabs)
and reads what the browser holds (the phase portrait's data, as drawn).
"""

from __future__ import annotations

import gc
import json
import logging
import shutil
import socket
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import Any
from urllib.request import urlopen

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"]  # fmt: skip
LOADED = "300 steps of dt"  # the status line once the first rollout is drawn
PHASE_SOURCE = "Phase portrait: model"  # the Explore portrait's model curve (views.PhaseView names it)


def rss_mb(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def rss_parts_mb(pid: int | str = "self") -> dict[str, float]:
    """RSS by kind of mapping (/proc smaps): malloc's main heap, other anonymous memory (Python's
    object arenas, threads' malloc arenas, large blocks), and mapped files (libraries). Read line by
    line: reading the file whole put ~14 MB back into a just-trimmed heap, the probe measuring itself."""
    parts = {"heap": 0.0, "anonymous": 0.0, "files": 0.0, "other": 0.0}
    kind = "other"
    with open(f"/proc/{pid}/smaps") as smaps:
        for line in smaps:
            fields = line.split(maxsplit=5)
            if not fields[0].endswith(":"):  # a mapping's first line: range perms offset dev inode [path]
                kind = _kind(fields[5].strip() if len(fields) > 5 else "")
            elif fields[0] == "Rss:":
                parts[kind] += int(fields[1]) / 1024
    return {k: round(v, 1) for k, v in parts.items()}


def _kind(path: str) -> str:
    return "heap" if path == "[heap]" else "files" if path.startswith("/") else "other" if path else "anonymous"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Errors(logging.Handler):
    """Counts ERROR records from any logger (a session's callback that raised is one)."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.count, self.last = 0, []

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        text = f"{record.name}: {record.getMessage()[:300]}"
        if record.exc_info:
            trace = logging.Formatter().formatException(record.exc_info)
            print(trace, file=sys.stderr, flush=True)  # the whole traceback in the server's log
            text += " | " + " / ".join(trace.splitlines()[-3:])[:600]
        self.last = [*self.last[-4:], text]


def serve(port: int, workspace: str, unused_session_ms: int | None = None) -> None:
    """The server process's body (blocks). `unused_session_ms`: discard a closed session after this
    long unused (Bokeh's default is 15 s), so many sessions fit in minutes; the cleanup is the same."""
    import panel as pn
    from tornado.web import RequestHandler

    from hwm_studio.physics.fused import shared_graph_count
    from hwm_studio.ui import heap
    from hwm_studio.ui.app import studio_page
    from hwm_studio.workspace import Workspace

    pn.extension("vtk", throttled=True)
    errors = _Errors()
    logging.getLogger().addHandler(errors)
    alive: weakref.WeakSet = weakref.WeakSet()
    built = {"studios": 0}
    ws = Workspace(workspace)

    def on_studio(studio: Any) -> None:
        alive.add(studio)
        built["studios"] += 1

    class Probe(RequestHandler):
        def get(self) -> None:
            gc.collect()  # frees closed sessions' objects (and runs the heap trim a closed session armed)
            # RSS is read after the probe's own allocations (its list of every object touches ~20 MB),
            # so each reading, right after a trim or long after one, holds the same probe footprint
            objects = len(gc.get_objects())
            self.write({"rss_mb": rss_mb(), "rss_parts_mb": rss_parts_mb(), "studios_alive": len(alive),
                        "studios_built": built["studios"], "threads": threading.active_count(),
                        "objects": objects, "traced_graphs": shared_graph_count(), "heap_trims": heap.trims,
                        "errors": errors.count, "last_errors": errors.last})  # fmt: skip

    lifetime = {}
    if unused_session_ms is not None:
        check = max(100, unused_session_ms // 2)
        lifetime = {"unused_session_lifetime": unused_session_ms, "check_unused_sessions": check}
    pn.serve({"studio": lambda: studio_page(ws, on_studio=on_studio)}, port=port, address="127.0.0.1", show=False,
             websocket_origin=[f"127.0.0.1:{port}"], extra_patterns=[("/probe", Probe)], **lifetime)  # fmt: skip


class Server:
    """`serve` in a subprocess on a free port, with a temporary workspace; a context manager."""

    def __init__(self, workspace: str | Path, unused_session_ms: int | None = None) -> None:
        self.port, self.workspace = free_port(), str(workspace)
        self.url = f"http://127.0.0.1:{self.port}/studio"
        args = [sys.executable, __file__, str(self.port), str(workspace)]
        if unused_session_ms is not None:
            args.append(str(unused_session_ms))
        self.process = subprocess.Popen(args)
        deadline = time.time() + 180
        while True:
            try:
                self.probe()
                return
            except OSError:
                if time.time() > deadline or self.process.poll() is not None:
                    self.stop()
                    raise RuntimeError("the studio server did not start") from None
                time.sleep(0.5)

    def probe(self) -> dict[str, Any]:
        with urlopen(f"http://127.0.0.1:{self.port}/probe", timeout=120) as r:
            return json.loads(r.read())

    def settled(self, timeout: float = 30.0) -> dict[str, Any]:
        """The probe once every closed session has been discarded (no Studio alive), or at the timeout."""
        deadline = time.time() + timeout
        while True:
            probe = self.probe()
            if probe["studios_alive"] == 0 or time.time() > deadline:
                return probe
            time.sleep(0.5)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


LATENCY_JS = """
(() => {
  const h = window.__hwm = {key: null, patch: [], paint: [], changes: 0};
  window.addEventListener('keydown', () => { if (h.key === null) h.key = performance.now(); }, true);
  const hook = () => {
    const docs = window.Bokeh && window.Bokeh.documents;
    if (!docs || docs.length === 0) { setTimeout(hook, 50); return; }
    for (const doc of docs) {
      doc.on_change((ev) => {
        const m = ev.model || ev.column_source;
        if (!m || m.type !== 'ColumnDataSource') return;
        h.changes += 1;
        if (h.key === null) return;
        const t0 = h.key;
        h.key = null;
        h.patch.push(performance.now() - t0);
        requestAnimationFrame(() => h.paint.push(performance.now() - t0));
      });
    }
    h.hooked = docs.length;
  };
  hook();
})();
"""


def launch(playwright: Any) -> Any:
    """Headless Debian chromium (never a downloaded browser)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)


class Page:
    """One browser session of the studio, driven through its own controls."""

    def __init__(self, browser: Any, url: str, timeout_ms: int = 180_000) -> None:
        self.errors: list[str] = []
        self.context = browser.new_context(viewport={"width": 1600, "height": 1150})
        self.page = page = self.context.new_page()
        page.add_init_script(LATENCY_JS)
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        t0 = time.perf_counter()
        page.goto(url, timeout=timeout_ms)
        page.get_by_text(LOADED).first.wait_for(timeout=timeout_ms)
        self.load_s = time.perf_counter() - t0

    # --- the sidebar's sliders, by keyboard, as a user without a mouse moves them ----------------------
    def slider(self, label: str) -> Any:
        """The noUiSlider handle of the slider whose label starts with `label`."""
        return self.page.locator(".bk-input-group", has_text=label).locator(".noUi-handle").first

    def press(self, label: str, key: str, times: int = 1, settle_ms: int = 0) -> None:
        handle = self.slider(label)
        handle.focus()
        for _ in range(times):
            handle.press(key)
            if settle_ms:
                self.page.wait_for_timeout(settle_ms)

    def wait_for_patch(self, timeout_s: float = 60.0) -> None:
        """Until the last key's patch arrived (its latency recorded)."""
        deadline = time.time() + timeout_s
        while self.page.evaluate("window.__hwm.key") is not None:
            if time.time() > deadline:
                raise TimeoutError("no data patch arrived after the key")
            self.page.wait_for_timeout(20)

    def latencies(self) -> dict[str, list[float]]:
        return self.page.evaluate("({patch: window.__hwm.patch, paint: window.__hwm.paint})")

    def phase_data(self) -> dict[str, list[float]]:
        """The Explore phase portrait's model curve as the browser holds it."""
        return self.page.evaluate(
            """(name) => {
                for (const doc of window.Bokeh.documents) {
                  const m = doc.get_model_by_name(name);
                  if (m) return {q: Array.from(m.data.q), p: Array.from(m.data.p)};
                }
                return null;
            }""",
            PHASE_SOURCE,
        )

    # --- tabs and buttons -------------------------------------------------------------------------
    def tab(self, name: str) -> None:
        self.page.get_by_text(name, exact=True).first.click()
        self.page.wait_for_timeout(300)

    def button(self, name: str) -> None:
        self.page.get_by_role("button", name=name, exact=True).click()

    def select(self, index: int, value: str) -> None:
        self.page.locator("select").nth(index).select_option(value)

    def close(self) -> None:
        self.context.close()


if __name__ == "__main__":  # the server process: PORT WORKSPACE [UNUSED_SESSION_MS]
    serve(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else None)
