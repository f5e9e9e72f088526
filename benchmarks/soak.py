"""A long run: serve the studio for an hour while a scripted browser uses it, and watch memory and errors.

    python benchmarks/soak.py                 # 60 minutes
    python benchmarks/soak.py --minutes 5     # a quick look

Serves the studio as `make studio` does (benchmarks/_served.py: its own process, Bokeh's default
session lifetimes) and, until the time is up, cycles through sessions in headless Debian chromium:
each opens the page, switches to the next system, picks another model, moves the sliders, trains
for a few seconds in the Train tab, plans in the Plan tab, plays with a held key in the Play tab,
and closes; every third cycle a second session is open alongside. After each cycle the server's
RSS, live Studios and logged errors are read. A warm-up first visits every (system, model) pair
once, since each fills process-wide caches once (the shared traced graphs of its truth, model,
planner and player: torch never frees a traced graph); then, for `--minutes`, cycles visit the
pairs in a shuffled order. Reported: RSS after the warm-up, the RSS slope over the measured time
in MB per hour (least squares), its largest value, and every error: the pages' console errors,
the server's logged errors and the driver's own failures (a control that never answered).
Writes benchmarks/results/soak.json.
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

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _served

from hwm_studio.io import atomic_write_text
from hwm_studio.pretrained import studio_systems

OUT = Path(__file__).resolve().parent / "results" / "soak.json"


def _settle(page: _served.Page, timeout_s: float = 120.0) -> None:
    """Until the server's patches stop for a moment (a recompute drawn)."""
    last, quiet_since, deadline = -1, time.time(), time.time() + timeout_s
    while time.time() < deadline:
        n = page.page.evaluate("window.__hwm.changes")
        if n != last:
            last, quiet_since = n, time.time()
        elif time.time() - quiet_since > 1.5:
            return
        page.page.wait_for_timeout(200)


def models_of(page: _served.Page, system: str) -> list[str]:
    """The Model selector's options once `system` is selected."""
    page.select(0, system)
    _settle(page)
    return page.page.locator("select").nth(1).locator("option").all_inner_texts()


def use_once(page: _served.Page, system: str, model: str) -> None:
    """One user's visit: system, model, sliders, a short training run, a plan, a little play."""
    p = page.page
    if models_of(page, system)[0] != model:
        p.locator("select").nth(1).select_option(label=model)
        _settle(page)
    page.press("Action 1", "PageUp")
    page.press("Seed", "ArrowRight", 2, settle_ms=300)
    _settle(page)
    page.tab("Train")
    page.button("Start")
    p.wait_for_timeout(8000)
    page.button("Stop")
    page.tab("Plan")
    page.button("Plan")
    p.get_by_text("Planned with").or_(p.get_by_text("Cannot plan")).first.wait_for(timeout=120_000)
    page.tab("Play")
    p.get_by_role("button", name="Pause (P)").click()
    p.locator(".hwm-play").click()
    p.keyboard.down("ArrowRight")
    p.wait_for_timeout(3000)
    p.keyboard.up("ArrowRight")
    p.keyboard.press("p")
    page.tab("Explore")


def _slope(samples: list[dict]) -> float | None:
    """Least-squares RSS slope in MB per hour."""
    if len(samples) < 3:
        return None
    t, rss = np.asarray([(s["t_s"], s["rss_mb"]) for s in samples]).T
    return round(float(np.polyfit(t / 3600.0, rss, 1)[0]), 1)


def _visit(browser, server: _served.Server, combos: list[tuple[str, str]], cycle: int, log: dict) -> None:
    """One cycle: a session (every third cycle two, side by side) uses `combos[cycle]` and closes."""
    system, model = combos[cycle % len(combos)]
    pages = []
    try:
        pages.append(_served.Page(browser, server.url))
        if cycle % 3 == 2:  # a second user alongside
            pages.append(_served.Page(browser, server.url))
        for page in pages:
            use_once(page, system, model)
    except Exception as exc:  # a control that never answered: counted, and the soak goes on
        log["driver"].append(f"cycle {cycle} ({system}, {model}): {type(exc).__name__}: {str(exc)[:300]}")
    for page in pages:
        log["console"] += page.errors
        page.close()


def run(minutes: float, warmup: bool = True) -> dict:
    from playwright.sync_api import sync_playwright

    workspace = tempfile.mkdtemp(prefix="hwm-soak-")
    samples, log = [], {"console": [], "driver": []}
    t0 = time.time()
    try:
        with _served.Server(workspace) as server, sync_playwright() as pw:
            browser = _served.launch(pw)
            start = server.probe()
            first = _served.Page(browser, server.url)
            combos = [(system, model) for system in studio_systems() for model in models_of(first, system)]
            first.close()
            cycles, measured_from = 0, 0.0
            if warmup:  # every (system, model) once: the shared graphs and caches each one fills
                for cycles in range(len(combos)):
                    _visit(browser, server, combos, cycles, log)
                    print(f"warm-up {cycles + 1}/{len(combos)} {combos[cycles]}: RSS {server.probe()['rss_mb']:.0f} MB",
                          flush=True)  # fmt: skip
                cycles += 1
                measured_from = time.time() - t0
            warm = server.probe()
            order = np.random.default_rng(0).permutation(len(combos))
            while time.time() - t0 - measured_from < minutes * 60:
                _visit(browser, server, [combos[i] for i in order], cycles, log)
                cycles += 1
                probe = server.probe()
                samples.append({"t_s": round(time.time() - t0, 1), "cycle": cycles, "rss_mb": round(probe["rss_mb"], 1),
                                "studios_alive": probe["studios_alive"], "server_errors": probe["errors"]})  # fmt: skip
                print(f"{samples[-1]['t_s']:7.0f} s  cycle {cycles:4d}  RSS {probe['rss_mb']:7.1f} MB  studios alive "
                      f"{probe['studios_alive']}  errors: server {probe['errors']}, console {len(log['console'])}, "
                      f"driver {len(log['driver'])}", flush=True)  # fmt: skip
            browser.close()
            time.sleep(20)  # Bokeh discards closed sessions after 15 s unused
            final = server.settled(60)
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
    measured = (time.time() - t0 - measured_from) / 60
    return {
        "minutes_measured": round(measured, 1),
        "minutes_warmup": round(measured_from / 60, 1),
        "combinations": [list(c) for c in combos],
        "cycles": cycles,
        "rss_start_mb": round(start["rss_mb"], 1),
        "rss_after_warmup_mb": round(warm["rss_mb"], 1),
        "rss_max_mb": max(s["rss_mb"] for s in samples) if samples else None,
        "rss_end_mb": round(final["rss_mb"], 1),
        "rss_slope_mb_per_h": _slope(samples),
        "studios_alive_at_end": final["studios_alive"],
        "errors": {"server": final["errors"], "console": len(log["console"]), "driver": len(log["driver"])},
        "error_samples": {"server": final["last_errors"], "console": log["console"][:5], "driver": log["driver"][:5]},
        "samples": samples,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=60.0, help="measured time after the warm-up")
    parser.add_argument("--no-warmup", action="store_true", help="measure from the first session")
    args = parser.parse_args()
    result = run(args.minutes, warmup=not args.no_warmup)
    result.update(machine=f"{os.cpu_count()} cores", date=time.strftime("%Y-%m-%d %H:%M"))
    atomic_write_text(OUT, json.dumps(result, indent=2) + "\n")
    print(f"warm-up {result['minutes_warmup']} min ({len(result['combinations'])} system/model pairs): RSS "
          f"{result['rss_start_mb']} -> {result['rss_after_warmup_mb']} MB; then {result['minutes_measured']} min, "
          f"{result['cycles']} cycles in all: RSS max {result['rss_max_mb']}, end {result['rss_end_mb']} MB, slope "
          f"{result['rss_slope_mb_per_h']} MB/h; errors {result['errors']}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
