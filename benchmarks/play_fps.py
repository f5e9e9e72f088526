"""Playing in a real browser: frames drawn per second, key-to-frame latency, server CPU per session.

    python benchmarks/play_fps.py                 # both models, 1 and 2 sessions, 30 s each
    python benchmarks/play_fps.py --seconds 10    # shorter

Serves the Play view (hwm_studio/ui/playing.py) in a subprocess, one torch thread, and drives it
from headless Debian chromium (playwright): each page focuses the surface, unpauses (P) and holds
the arrow keys, switching direction every 1.5 s. The page itself counts the frames it drew (the
server sends one only for a new state, so a redrawn state never counts) and, for each key change,
the time until the first frame drawn that stepped under it (the surface writes both on its
element); frames per second is the median over one-second windows. The server's CPU
is its process's user + system time over the window (from /proc), divided by the sessions; the
browser's is all chromium processes' together, and the machine's busy time (/proc/stat) says
whether the cores were saturated.
Also plays a 60 s episode of random key changes on the default HWM without a browser and states
its ledger's balance error against the energy scale (the range of H over the episode).
Writes benchmarks/results/play_fps.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from hwm_studio.io import atomic_write_text

OUT = Path(__file__).resolve().parent / "results" / "play_fps.json"
MODELS = {"pendulum HWM (default)": ("pendulum", "hwm"), "spring pixel HWM": ("spring", "hwm-pixels: hgn_mass_spring")}
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def load(system: str, name: str):  # -> (model, system)
    from hwm_studio.pretrained import pixel_assets, run_dir
    from hwm_studio.systems import get_system
    from hwm_studio.training.checkpoint import load_model

    pixel = pixel_assets().get(system, {})
    model = load_model(pixel[name] if name in pixel else run_dir(system, name))
    return model, get_system(model.config.system, **(model.config.system_params or {}))


def serve(system: str, name: str, port: int) -> None:
    """The subprocess: the Play view alone, one session per page, each with its own model."""
    import panel as pn
    import torch

    from hwm_studio.ui.playing import PlayPanel

    torch.set_num_threads(1)
    pn.extension()

    def page():
        loaded = load(system, name)
        panel = PlayPanel(lambda: loaded)
        panel.start()
        pn.state.on_session_destroyed(lambda _ctx: panel.close())
        return panel

    pn.serve({"play": page}, port=port, address="127.0.0.1", show=False, websocket_origin=[f"127.0.0.1:{port}"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _browser_cpu_seconds() -> float:
    """User + system time of every chromium process now (the benchmark's browser is the only one)."""
    total = 0.0
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if b"chrom" not in (d / "cmdline").read_bytes():
                continue
            total += _cpu_seconds(int(d.name))
        except (OSError, ValueError, IndexError):  # gone meanwhile
            continue
    return total


def _machine_busy_seconds() -> float:
    """CPU time the whole machine spent busy (all cores, /proc/stat: everything but idle and iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def drive(label: str, sessions: int, seconds: float) -> dict:
    from playwright.sync_api import sync_playwright

    system, name = MODELS[label]
    port = _free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", system, name, str(port)])
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            pages = []
            for _ in range(sessions):
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                deadline = time.time() + 120
                while True:
                    try:
                        page.goto(f"http://127.0.0.1:{port}/play")
                        break
                    except Exception:  # the server is still starting
                        if time.time() > deadline:
                            raise
                        time.sleep(0.5)
                surface = page.locator(".hwm-play")
                surface.wait_for(timeout=120_000)
                surface.click()
                page.keyboard.press("p")  # unpause
                pages.append((page, surface))
            time.sleep(2.0)  # warm-up: traced graphs, first frames

            def drawn() -> list[int]:
                return [int(s.get_attribute("data-drawn") or 0) for _, s in pages]

            counts, cpu0, t0 = [drawn()], _cpu_seconds(server.pid), time.time()
            browser0, machine0 = _browser_cpu_seconds(), _machine_busy_seconds()
            keys = ["ArrowRight", "ArrowLeft"]
            held = [None] * sessions
            switch = 0.0
            while time.time() - t0 < seconds:
                if time.time() - t0 >= switch:  # change direction on every page
                    for i, (page, _) in enumerate(pages):
                        if held[i]:
                            page.keyboard.up(held[i])
                        held[i] = keys[int(switch / 1.5) % 2]
                        page.keyboard.down(held[i])
                    switch += 1.5
                time.sleep(max(0.0, 1.0 - ((time.time() - t0) % 1.0)))
                counts.append(drawn())
            cpu = _cpu_seconds(server.pid) - cpu0
            browser_cpu, machine = _browser_cpu_seconds() - browser0, _machine_busy_seconds() - machine0
            elapsed = time.time() - t0
            latencies = []
            for _, s in pages:
                raw = s.get_attribute("data-latencies") or ""
                latencies.append([float(x) for x in raw.split(",") if x])
            shot = OUT.parent / f"play_{system}_{sessions}.png"
            pages[0][0].screenshot(path=str(shot))
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    c = np.asarray(counts)  # (windows + 1, sessions)
    per_second = np.diff(c, axis=0)
    return {
        "model": label, "sessions": sessions, "seconds": round(elapsed, 1),
        "fps_median": [float(np.median(per_second[:, i])) for i in range(sessions)],
        "fps_min": [int(per_second[:, i].min()) for i in range(sessions)],
        "key_to_frame_ms_median": [round(float(np.median(x)), 1) if x else None for x in latencies],
        "key_changes_timed": [len(x) for x in latencies],
        "server_cpu_per_session": round(cpu / elapsed / sessions, 3),
        "browser_cpu_cores": round(browser_cpu / elapsed, 2),  # chromium, all its processes and pages
        "machine_busy_cores": round(machine / elapsed, 2),  # of os.cpu_count()
        "screenshot": shot.name,
    }  # fmt: skip


LEDGER_RULES = ("play", "play, eager", "plain sweeps", "model")


def ledger_episode(seconds: float = 60.0, seed: int = 0, integrator: str = "play") -> dict:
    """A played episode of random key changes (every 0.25-1.5 s) on the default pendulum HWM,
    stepped by Play's own rule ('play': the traced step), the same step eagerly ('play, eager'),
    eagerly without Anderson mixing ('plain sweeps') or by the model's own rule ('model'), with the
    wall time of a step and the solver's sweeps per step; each at the step Play takes (`live_dt`)."""
    from hwm_studio.physics.integrators import DiscreteGradient
    from hwm_studio.play import Player, live_dt

    model, system = load("pendulum", "hwm")
    rules = {"model": model.integrator, "play": None, "play, eager": None,
             "plain sweeps": DiscreteGradient(1, tolerance=1e-13, memory=0)}  # fmt: skip
    if integrator not in LEDGER_RULES:
        raise ValueError(f"integrator is one of {list(LEDGER_RULES)}, got {integrator!r}")
    player = Player(model, system, dt=live_dt(model), seed=seed, integrator=rules[integrator],
                    traced=integrator == "play")  # fmt: skip
    rule = player.integrator
    assert rule is not None  # the pendulum HWM has an energy
    counted = isinstance(rule, DiscreteGradient)  # its solver counts its sweeps
    sweeps0 = rule.sweeps if counted else 0
    rng = np.random.default_rng(seed)
    energies, steps = [player.energy()["total"]], round(seconds / player.dt)
    done, busy = 0, 0.0
    while done < steps:
        player.hold(rng.choice([-1.0, 0.0, 1.0], size=system.action_dim))
        n = min(steps - done, int(rng.integers(5, 31)))
        for _ in range(n):
            t0 = time.perf_counter()
            player.advance(1)
            busy += time.perf_counter() - t0
            energies.append(player.energy()["total"])
        done += n
    scale = float(np.ptp(energies))
    balance = float(player.ledger["balance_error"])
    sweeps = (rule.sweeps - sweeps0) / steps if counted else None
    return {"integrator": rule.name, "rule": integrator, "dt": player.dt, "sweeps_per_step": sweeps,
            "eager_steps": player.eager_steps, "seconds": seconds, "steps": steps, "energy_scale": scale,
            "balance_error": balance, "relative": abs(balance) / scale,
            "control_work": float(player.ledger["control_work"]),
            "step_ms": round(1e3 * busy / steps, 2)}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--sessions", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--ledger-only", action="store_true", help="only the 60 s ledger episodes (no browser)")
    ap.add_argument("--serve", nargs=3, metavar=("SYSTEM", "MODEL", "PORT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve[0], args.serve[1], int(args.serve[2]))
        return 0
    import torch

    torch.set_num_threads(1)
    ledgers = [ledger_episode(integrator=name) for name in LEDGER_RULES]
    for ledger in ledgers:
        print(json.dumps(ledger), flush=True)
        print(f"60 s of random keys, {ledger['rule']} ({ledger['integrator']}, dt {ledger['dt']:g}): "
              f"|balance error| = {abs(ledger['balance_error']):.2e}, "
              f"{ledger['relative']:.1e} of the energy scale ({ledger['energy_scale']:.3g}), "
              f"{ledger['step_ms']} ms a step, {ledger['sweeps_per_step']} sweeps a step, "
              f"{ledger['eager_steps']} re-solved eagerly", flush=True)  # fmt: skip
    if args.ledger_only:
        if OUT.exists():  # keep the browser rows of the last full run, with today's ledger
            kept = json.loads(OUT.read_text())
            kept["ledger_60s"] = ledgers
            atomic_write_text(OUT, json.dumps(kept, indent=1))
        return 0
    rows = []
    for label in args.models:
        for n in args.sessions:
            row = drive(label, n, args.seconds)
            print(json.dumps(row), flush=True)
            rows.append(row)
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, 1 torch thread",
              "ledger_60s": ledgers, "rows": rows}  # fmt: skip
    atomic_write_text(OUT, json.dumps(result, indent=1))
    print(
        "| model | sessions | frames/s (median, each) | key -> frame ms (median) | server CPU / session "
        "| browser CPU | machine busy |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        fps = ", ".join(f"{x:.0f}" for x in r["fps_median"])
        lat = ", ".join("-" if x is None else f"{x:.0f}" for x in r["key_to_frame_ms_median"])
        print(
            f"| {r['model']} | {r['sessions']} | {fps} | {lat} | {r['server_cpu_per_session']:.0%} of a core "
            f"| {r['browser_cpu_cores']:.2f} cores | {r['machine_busy_cores']:.2f} of {os.cpu_count()} cores |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
