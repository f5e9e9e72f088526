"""Memory returned when sessions close: serve the studio, open and close N browser sessions, watch RSS.

    python benchmarks/sessions_memory.py                  # 200 sessions
    python benchmarks/sessions_memory.py --sessions 20    # quicker

Serves the studio page as `make studio` does (benchmarks/_served.py: a subprocess, a temporary
workspace), with Bokeh told to discard a closed session after 1 s unused (checked every 0.5 s)
rather than its 15 s default (in practice the discard came 17-30 s after the tab closed); the cleanup
code run is the same. Headless Debian chromium (playwright) opens each session, waits until the
first rollout is drawn, and closes the tab. After every tenth closed session is discarded, the
server's probe reports its RSS and RSS's parts, the Studios alive, Python objects, traced graphs
and heap trims (benchmarks/_served.py says what each is).
The probe's full collection is what triggers a pending trim here; served, Panel's own collection a
few seconds after a session is destroyed does.
Writes benchmarks/results/sessions_memory.json.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _served

from hwm_studio.io import atomic_write_text

OUT = Path(__file__).resolve().parent / "results" / "sessions_memory.json"


def run(sessions: int) -> dict:
    from playwright.sync_api import sync_playwright

    workspace = tempfile.mkdtemp(prefix="hwm-mem-")
    samples = []
    try:
        with _served.Server(workspace, unused_session_ms=1000) as server, sync_playwright() as p:
            start = server.probe()
            t0 = time.time()
            browser = _served.launch(p)
            for i in range(1, sessions + 1):
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(server.url)
                page.get_by_text(_served.LOADED).wait_for(timeout=120_000)
                page.close()
                if i == 1 or i % 10 == 0 or i == sessions:
                    probe = server.settled()
                    probe.update(session=i, t_s=round(time.time() - t0, 1))
                    samples.append(probe)
                    print(f"after {i:4d} sessions: RSS {probe['rss_mb']:7.1f} MB, studios alive "
                          f"{probe['studios_alive']}, graphs {probe['traced_graphs']}", flush=True)  # fmt: skip
            browser.close()
            time.sleep(30)
            final = server.settled()
    finally:
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
        "server_errors": final["errors"],
        "samples": samples,
        "seconds": round(time.time() - t0, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=200)
    args = parser.parse_args()
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
