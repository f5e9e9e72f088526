"""Run the named learning protocols and write the README table.

    python benchmarks/protocols.py                       # every protocol, every model kind
    python benchmarks/protocols.py --only hnn_spring --steps 500

Writes benchmarks/results/protocols.json (every row, with train seconds) and
benchmarks/results/protocols.md (the table pasted into the README). CPU, 2 threads, seeded.
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


def markdown(rows: list[dict]) -> str:
    lines = []
    for name in dict.fromkeys(r["protocol"] for r in rows):
        key, label = METRIC[name]
        key2, label2 = SECOND.get(name, (None, ""))
        lines += [f"**{name}**", "", f"| model | {label} | {label2 or ' '} | train s |", "|---|---|---|---|"]
        for r in (r for r in rows if r["protocol"] == name):
            lines.append(f"| {r['model']} | {_fmt(r[key])} | {_fmt(r.get(key2)) if key2 else ''} "
                         f"| {r['train_seconds']:.0f} |")  # fmt: skip
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", choices=sorted(PROTOCOLS), help="protocols to run (default: all)")
    ap.add_argument("--kinds", default=",".join(KINDS), help="model kinds, comma separated")
    ap.add_argument("--steps", type=int, default=None, help="training steps (default: each protocol's own)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--render", action="store_true", help="only re-render protocols.md from protocols.json")
    args = ap.parse_args(argv)
    if args.render:
        rows = json.loads((args.out / "protocols.json").read_text())["rows"]
        atomic_write_text(args.out / "protocols.md", markdown(rows))
        print(markdown(rows))
        return 0
    torch.set_num_threads(2)
    rows: list[dict] = []
    started = time.perf_counter()
    for name in args.only or list(PROTOCOLS):
        kw = {"kinds": args.kinds.split(","), "seed": args.seed}
        if args.steps is not None:
            kw["steps"] = args.steps
        t0 = time.perf_counter()
        got = PROTOCOLS[name](**kw)
        print(f"{name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        for r in got:
            print(json.dumps(r), file=sys.stderr)
        rows += got
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "machine": platform.machine(), "total_seconds": round(time.perf_counter() - started, 1)}  # fmt: skip
    atomic_write_text(args.out / "protocols.json", json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    atomic_write_text(args.out / "protocols.md", markdown(rows))
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
