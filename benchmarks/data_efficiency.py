"""The data-efficiency curve: how a model's long-horizon quality grows with the trajectories it learns from.

    python benchmarks/data_efficiency.py                                   # the full grid (hours on CPU)
    python benchmarks/data_efficiency.py --systems pendulum --steps 1000   # one system, shorter training
    python benchmarks/data_efficiency.py --render                          # table and plot from the JSON

The protocol (held-out set, nested training sets per seed, training as the CLI trains, the same
steps whatever the size, VPT and true-energy MSE over 1000 steps) is hwm_studio/training/efficiency.py,
which notebook 09 and the studio use too.
Writes benchmarks/results/data_efficiency.json (rows of runs not redone are kept) and a PNG, and
prints, per system, how many trajectories the MLP needs to reach the HWM's VPT at 8.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch
from _report import locked, merged_rows, spread

from hwm_studio.cli import TRAIN_HORIZON, TRAIN_STEPS
from hwm_studio.io import atomic_write_text
from hwm_studio.training.efficiency import (
    KINDS,
    LONG,
    POINTS,
    RESULTS_FILE,
    SIZES,
    SYSTEMS,
    TEST,
    curve,
    held_out,
    match_sentence,
    rows_of,
    score,
    training_pool,
)  # fmt: skip


def markdown(rows: list[dict]) -> str:
    """Per system: VPT and energy MSE against training trajectories, mean (range) over seeds."""
    lines = []
    for system in dict.fromkeys(r["system"] for r in rows):
        sizes = sorted({r["trajectories"] for r in rows if r["system"] == system})
        models = list(dict.fromkeys(r["model"] for r in rows if r["system"] == system))
        scored = next(r["scored_steps"] for r in rows if r["system"] == system)
        title = f"**{system}**: VPT over {scored} held-out steps (energy MSE below it), by training trajectories"
        header = "| model | " + " | ".join(str(n) for n in sizes) + " |"
        lines += [title, "", header, "|---|" + "---|" * len(sizes)]
        for model in models:
            vpt = [spread([r["vpt"] for r in rows_of(rows, system, model, n)], ".0f") for n in sizes]
            energy = [spread([r["energy_mse"] for r in rows_of(rows, system, model, n) if r["energy_mse"] is not None],
                             ".1e") for n in sizes]  # fmt: skip
            lines.append(f"| {model} | " + " | ".join(f"{v}<br>{e}" for v, e in zip(vpt, energy, strict=True)) + " |")
        lines += ["", f"MLP trajectories to reach the HWM's VPT at 8: {match_sentence(rows, system)}", ""]
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    """VPT and energy MSE against trajectories (log x), a line per model, the seeds' range shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = list(dict.fromkeys(r["system"] for r in rows))
    fig, axes = plt.subplots(2, len(systems), figsize=(4 * len(systems), 6.5), squeeze=False)
    for col, system in enumerate(systems):
        for model in dict.fromkeys(r["model"] for r in rows if r["system"] == system):
            for row, (metric, log) in enumerate((("vpt", False), ("energy_mse", True))):
                c = curve(rows, system, model, metric)
                xs = c["n"]
                ax = axes[row][col]
                (line,) = ax.plot(xs, c["mean"], marker="o", label=model)
                ax.fill_between(xs, c["lo"], c["hi"], color=line.get_color(), alpha=0.15)
                ax.set_xscale("log", base=2)
                ax.set_xticks(xs, [str(x) for x in xs])
                if log:
                    ax.set_yscale("log")
        axes[0][col].set_title(system)
        scored = next(r["scored_steps"] for r in rows if r["system"] == system)
        axes[0][col].set_ylabel(f"VPT (steps of {scored})")
        axes[1][col].set_ylabel(f"true-energy MSE over {scored} steps")
        axes[1][col].set_xlabel("training trajectories")
    axes[0][0].legend()
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)  # atomic: a reader never sees half a PNG


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--systems", nargs="+", default=list(SYSTEMS))
    ap.add_argument("--kinds", nargs="+", default=list(KINDS))
    ap.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="training trajectories")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=TRAIN_STEPS, help="optimiser steps per model (the CLI's default)")
    ap.add_argument("--points", type=int, default=POINTS, help="time points per training trajectory")
    ap.add_argument("--scored-steps", type=int, default=LONG, help="held-out steps each model is scored over")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(RESULTS_FILE))
    ap.add_argument("--render", action="store_true", help="only print the table and redraw the plot from --out")
    args = ap.parse_args()
    if min(args.sizes) < 2:
        ap.error("--sizes: a model needs >= 2 trajectories (one is held out for validation)")
    out = Path(args.out)
    if args.render:
        rows = json.loads(out.read_text())["rows"]
    else:
        torch.set_num_threads(args.threads)
        rows = []
        for system in args.systems:
            test = held_out(system, args.scored_steps)
            for seed in args.seeds:
                pool = training_pool(system, max(args.sizes), seed, args.points)
                for n in sorted(set(args.sizes)):
                    for kind in args.kinds:
                        row = score(system, kind, pool, n, test, args.steps, seed, horizon=TRAIN_HORIZON)
                        print(json.dumps(row), flush=True)
                        rows.append(row)
        key = lambda r: (r["system"], r["model"], r["trajectories"], r["seed"])  # noqa: E731
        same = ("steps", "scored_steps")  # one training budget and one held-out length per file
        with locked(out):
            rows = [r for r in merged_rows(out, rows, key) if all(r.get(k) == getattr(args, k) for k in same)]
            result = {
                "machine": f"{platform.machine()}, {args.threads} torch threads, torch {torch.__version__}",
                "steps": args.steps, "points": args.points, "test_trajectories": TEST,
                "scored_steps": args.scored_steps,
                "rows": rows,
            }  # fmt: skip
            atomic_write_text(out, json.dumps(result, indent=1))
    plot(rows, out.with_suffix(".png"))
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
