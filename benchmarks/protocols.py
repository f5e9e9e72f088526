"""Run the named learning protocols and write the README table.

    python benchmarks/protocols.py                       # every protocol, every model kind, seeds 0 1 2
    python benchmarks/protocols.py --only hnn_spring --steps 500 --seeds 0

Writes benchmarks/results/protocols.json (every row, with train seconds) and
benchmarks/results/protocols.md (per protocol every row, then the summary pasted into the README),
each figure the mean (min–max) over the seeds. CPU, 2 threads, seeded.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from hwm_studio.io import atomic_write_text
from hwm_studio.protocols.runs import KINDS, PROTOCOLS, PUBLISHED

RESULTS = Path(__file__).resolve().parent / "results"

# (metric key, column label) per protocol: what the published figure measures.
METRIC = {
    "hnn_spring": ("energy_mse_original", "energy MSE"),
    "hnn_pendulum": ("energy_mse_original", "energy MSE"),
    "real_pendulum": ("energy_mse_original", "energy MSE"),
    "symoden_pendulum": ("prediction_error", "prediction error"),
    "long_horizon_pendulum": ("energy_mse_at_h", "energy MSE, 1000 steps"),
}
SECOND = {  # a second column where the protocol has one
    "hnn_spring": ("energy_mse_true_h", "true-H scoring"),
    "hnn_pendulum": ("energy_mse_true_h", "true-H scoring"),
    "symoden_pendulum": ("prediction_error_held_out", "held-out half"),
    "long_horizon_pendulum": ("vpt", "VPT (steps)"),
}


def _fmt(x: object) -> str:
    if isinstance(x, float):
        return f"{x:.3g}" if abs(x) >= 1e-2 and abs(x) < 1e4 else f"{x:.2e}"
    return "–" if x is None else str(x)


def _cell(values: list[float]) -> str:
    """One seed's value as itself; several as their mean and (min–max)."""
    values = [v for v in values if v is not None]
    if len(values) <= 1:
        return _fmt(values[0]) if values else ""
    return f"{_fmt(sum(values) / len(values))} ({_fmt(min(values))}–{_fmt(max(values))})"


def _groups(rows: list[dict], protocol: str) -> dict[str, list[dict]]:
    """The protocol's rows by model label, in the order first run (one row per seed)."""
    out: dict[str, list[dict]] = {}
    for r in rows:
        if r["protocol"] == protocol:
            out.setdefault(r["model"], []).append(r)
    return out


def _seeds(rows: list[dict]) -> str:
    seeds = sorted({r.get("seed", 0) for r in rows})
    return f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {', '.join(map(str, seeds))}: mean (min–max)"


def markdown(rows: list[dict]) -> str:
    lines = []
    for name in dict.fromkeys(r["protocol"] for r in rows):
        key, label = METRIC[name]
        key2, label2 = SECOND.get(name, (None, ""))
        groups = _groups(rows, name)
        lines += [f"**{name}** ({_seeds([r for rs in groups.values() for r in rs])})", "",
                  f"| model | {label} | {label2 or ' '} | train s |", "|---|---|---|---|"]  # fmt: skip
        for model, runs in groups.items():
            kept = sorted({r["kept"] for r in runs if "kept" in r})
            shown = model + (f" (kept: {' / '.join(kept)})" if kept else "")
            second = _cell([r.get(key2) for r in runs]) if key2 else ""
            seconds = _cell([float(round(r["train_seconds"])) for r in runs])
            lines.append(f"| {shown} | {_cell([r[key] for r in runs])} | {second} | {seconds} |")
        published = PUBLISHED.get(name, {})
        for who, value in published.items():
            if who.endswith(", honest"):
                continue  # shown in the true-H column of its row
            if isinstance(value, float):
                honest = published.get(f"{who}, honest")
                lines.append(f"| {who} | {_fmt(value)} | {_fmt(honest) if honest is not None else ''} | |")
            else:
                lines.append(f"| {who} | | | {value} |")
        lines.append("")
    return "\n".join(lines)


# The summary's HWM: the CLI's default (structure chosen from the data) where the protocol runs it,
# else the HWM as the protocol trains it.
HEADLINE_HWM = ("hwm, structure auto", "hwm")


def summary(rows: list[dict]) -> str:
    """The README's table: per protocol the HWM against every model kind, each over the seeds run."""
    head = "| protocol (lower is better) | HWM | MLP | neural ODE | HNN (ours) | published; peer code run here |"
    lines = [f"Over {_seeds(rows)}.", "", head, "|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["protocol"] for r in rows):
        key, label = METRIC[name]
        key2, label2 = SECOND.get(name, (None, ""))
        groups = _groups(rows, name)

        def cell(model: str, groups: dict = groups, key: str = key, key2: str | None = key2) -> str:
            runs = groups.get(model, [])
            if not runs:
                return "–"
            second = f" / {_cell([r.get(key2) for r in runs])}" if key2 else ""
            return _cell([r[key] for r in runs]) + second

        hwm = next((m for m in HEADLINE_HWM if m in groups), "hwm")
        published = ", ".join(f"{who} {_fmt(v)}" for who, v in PUBLISHED.get(name, {}).items()
                              if not who.endswith(", honest") and isinstance(v, float))  # fmt: skip
        what = f"{name}, {label}" + (f" / {label2}" if key2 else "")
        lines.append(f"| {what} | **{cell(hwm)}** ({hwm}) | {cell('mlp')} | {cell('node')} | {cell('hnn')} "
                     f"| {published} |")  # fmt: skip
    grouped = {name: _groups(rows, name) for name in dict.fromkeys(r["protocol"] for r in rows)}
    per_kind = []
    for kind in ("hwm", "mlp", "node", "hnn"):
        cells = [_cell([float(round(r["train_seconds"])) for r in g[kind]]) if kind in g else "–"
                 for g in grouped.values()]  # fmt: skip
        per_kind.append(f"{kind} {' / '.join(cells)}")
    lines += ["", f"Training seconds ({' / '.join(grouped)}): " + "; ".join(per_kind) + "."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", choices=sorted(PROTOCOLS), help="protocols to run (default: all)")
    ap.add_argument("--kinds", default=",".join(KINDS), help="model kinds, comma separated")
    ap.add_argument("--steps", type=int, default=None, help="training steps (default: each protocol's own)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (each row's spread)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--render", action="store_true", help="only re-render protocols.md from protocols.json")
    args = ap.parse_args(argv)
    if args.render:
        rows = json.loads((args.out / "protocols.json").read_text())["rows"]
        atomic_write_text(args.out / "protocols.md", markdown(rows) + "\n" + summary(rows) + "\n")
        print(markdown(rows) + "\n" + summary(rows))
        return 0
    torch.set_num_threads(2)
    rows: list[dict] = []
    started = time.perf_counter()
    for seed in args.seeds:
        for name in args.only or list(PROTOCOLS):
            kw = {"kinds": args.kinds.split(","), "seed": seed}
            if args.steps is not None:
                kw["steps"] = args.steps
            t0 = time.perf_counter()
            got = [{**r, "seed": seed} for r in PROTOCOLS[name](**kw)]
            print(f"{name}, seed {seed}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
            for r in got:
                print(json.dumps(r), file=sys.stderr)
            rows += got
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "machine": platform.machine(), "total_seconds": round(time.perf_counter() - started, 1)}  # fmt: skip
    atomic_write_text(args.out / "protocols.json", json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    atomic_write_text(args.out / "protocols.md", markdown(rows) + "\n" + summary(rows) + "\n")
    print(markdown(rows) + "\n" + summary(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
