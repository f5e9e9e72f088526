"""Memory returned when sessions close: serve the studio, open and close N browser sessions, watch RSS.

    python benchmarks/sessions_memory.py                  # 200 sessions
    python benchmarks/sessions_memory.py --sessions 20    # quicker

Serves the studio page (hwm_studio.ui.app.studio_page, as `make studio` does) in a subprocess with
a temporary workspace; Bokeh discards a closed session after 1 s unused (checked every 0.5 s) rather
than its 15 s default, so 200 sessions fit in minutes: the cleanup code run is the same. Headless
Debian chromium (playwright) opens each session, waits until the first rollout is drawn, and closes
the tab. The server process reports, after each closed session is discarded, its RSS (/proc) and its
parts (malloc's heap, other anonymous memory, mapped files), how many Studio objects are still alive
(a WeakSet, after gc), its Python object count, how many graphs it has traced and how often the
studio trimmed malloc's heap: object counts separate a leak from the allocator keeping freed pages.
The probe's full collection is what triggers a pending trim here; served, Panel's own collection a
few seconds after a session is destroyed does.
Writes benchmarks/results/sessions_memory.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path

from hwm_studio.io import atomic_write_text

OUT = Path(__file__).resolve().parent / "results" / "sessions_memory.json"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
LOADED = "300 steps of dt"  # the status line once the first rollout is drawn


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


def serve(port: int, workspace: str) -> None:
    """The subprocess: the studio, one Studio per session, plus /probe reporting RSS and live objects."""
    import panel as pn
    from tornado.web import RequestHandler

    from hwm_studio.physics.fused import shared_graph_count
    from hwm_studio.ui import heap
    from hwm_studio.ui.app import studio_page
    from hwm_studio.workspace import Workspace

    pn.extension("vtk", throttled=True)
    alive: weakref.WeakSet = weakref.WeakSet()
    ws = Workspace(workspace)

    def page():
        return studio_page(ws, on_studio=alive.add)

    class Probe(RequestHandler):
        def get(self) -> None:
            gc.collect()  # frees closed sessions' objects (and runs a trim a closed session armed)
            # RSS is read after the probe's own allocations (its list of every object touches ~20 MB),
            # so each reading, right after a trim or long after one, holds the same probe footprint
            objects = len(gc.get_objects())
            self.write({"rss_mb": rss_mb(), "rss_parts_mb": rss_parts_mb(), "studios_alive": len(alive),
                        "threads": threading.active_count(), "objects": objects,
                        "traced_graphs": shared_graph_count(), "heap_trims": heap.trims})  # fmt: skip

    pn.serve({"studio": page}, port=port, address="127.0.0.1", show=False, websocket_origin=[f"127.0.0.1:{port}"],
             unused_session_lifetime=1000, check_unused_sessions=500, extra_patterns=[("/probe", Probe)])  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _probe(port: int) -> dict:
    from urllib.request import urlopen

    with urlopen(f"http://127.0.0.1:{port}/probe", timeout=60) as r:
        return json.loads(r.read())


def _settled(port: int, timeout: float = 30.0) -> dict:
    """The probe once every closed session has been discarded (no Studio alive), or at the timeout."""
    deadline = time.time() + timeout
    while True:
        probe = _probe(port)
        if probe["studios_alive"] == 0 or time.time() > deadline:
            return probe
        time.sleep(0.5)


def run(sessions: int) -> dict:
    from playwright.sync_api import sync_playwright

    port = _free_port()
    workspace = tempfile.mkdtemp(prefix="hwm-mem-")
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port), workspace])
    samples = []
    try:
        deadline = time.time() + 120
        while True:
            try:
                _probe(port)
                break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    raise RuntimeError("the server did not start") from None
                time.sleep(0.5)
        start = _probe(port)
        t0 = time.time()
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            for i in range(1, sessions + 1):
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(f"http://127.0.0.1:{port}/studio")
                page.get_by_text(LOADED).wait_for(timeout=120_000)
                page.close()
                if i == 1 or i % 10 == 0 or i == sessions:
                    probe = _settled(port)
                    probe.update(session=i, t_s=round(time.time() - t0, 1))
                    samples.append(probe)
                    print(f"after {i:4d} sessions: RSS {probe['rss_mb']:7.1f} MB, studios alive "
                          f"{probe['studios_alive']}, graphs {probe['traced_graphs']}", flush=True)  # fmt: skip
            browser.close()
        time.sleep(30)
        final = _settled(port)
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(workspace, ignore_errors=True)
    first = samples[0]["rss_mb"]
    return {
        "sessions": sessions,
        "rss_before_any_mb": start["rss_mb"],
        "rss_after_first_mb": first,
        "rss_after_last_mb": samples[-1]["rss_mb"],
        "rss_30s_after_last_mb": final["rss_mb"],
        "growth_mb": round(final["rss_mb"] - first, 1),
        "rss_parts_after_first_mb": samples[0]["rss_parts_mb"],
        "rss_parts_30s_after_last_mb": final["rss_parts_mb"],
        "heap_trims": final["heap_trims"],
        "studios_alive_at_end": final["studios_alive"],
        "threads_before": start["threads"],
        "threads_at_end": final["threads"],
        "samples": samples,
        "seconds": round(time.time() - t0, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--serve", nargs=2, metavar=("PORT", "WORKSPACE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(int(args.serve[0]), args.serve[1])
        return 0
    result = run(args.sessions)
    result.update(machine=f"{os.cpu_count()} cores", date=time.strftime("%Y-%m-%d %H:%M"))
    atomic_write_text(OUT, json.dumps(result, indent=2) + "\n")
    print(f"{result['sessions']} sessions: RSS after the first {result['rss_after_first_mb']:.0f} MB, "
          f"30 s after the last {result['rss_30s_after_last_mb']:.0f} MB (growth {result['growth_mb']:+.0f} MB); "
          f"studios alive {result['studios_alive_at_end']}; threads {result['threads_before']} -> "
          f"{result['threads_at_end']}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
