"""Training speed: milliseconds per optimiser step of each model form, on the systems nobody here wrote.

    python benchmarks/training_speed.py                     # every foreign system, 1 thread
    python benchmarks/training_speed.py --systems wall_chain --steps 30

One step = sample a batch of windows, the window loss at the full horizon, backward, Adam: what
`fit` does per step once the curriculum has reached its horizon (the CLI's 8, batch 64). Forms:
the MLP; the HWM in full form (friction, input map, residual: how `--structure auto` starts);
friction without residual and the conservative form (what `auto` prunes to on these systems:
see unseen_systems.json). Median over `--steps` timed steps after a warm-up, the forms timed in
interleaved rounds so that the machine's drift falls on all of them. Writes
benchmarks/results/training_speed.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from hwm_studio.cli import TRAIN_HORIZON
from hwm_studio.data.foreign import FOREIGN_SYSTEMS
from hwm_studio.io import atomic_write_text
from hwm_studio.models import build_model, config_from_data
from hwm_studio.training.fit import TrainConfig, kind_defaults, make_optimizer, seed_everything
from hwm_studio.training.windows import sample_windows, to_series

OUT = Path(__file__).resolve().parent / "results" / "training_speed.json"
FORMS = {  # label: (kind, model options)
    "mlp": ("mlp", {}),
    "hwm, full": ("hwm", {}),
    "hwm, friction only": ("hwm", {"residual": False}),
    "hwm, conservative": ("hwm", {"residual": False, "dissipation": "none"}),
}


def training_step(data, kind: str, options: dict) -> Callable[[], None]:
    """One optimiser step of a freshly built model of this form, as a closure (warmed up)."""
    seed_everything(0)
    model = build_model(config_from_data(data, kind, **options))
    series = to_series(model, data, torch.device("cpu"))
    model.prepare_training(series.obs)
    lr, batch = kind_defaults(kind)
    opt = make_optimizer(model, TrainConfig(lr=lr, batch_size=batch))
    gen = torch.Generator().manual_seed(0)
    model.train()

    def step() -> None:
        obs, actions, _ = sample_windows(series, model.window_length(TRAIN_HORIZON) - 1, batch, gen)
        loss, penalty = model.window_loss(obs, actions, TRAIN_HORIZON)
        opt.zero_grad(set_to_none=True)
        (loss + penalty).backward()
        opt.step()

    for _ in range(3):
        step()
    return step


def ms_per_step(data, steps: int, per_round: int = 2) -> dict[str, float]:
    """Median ms per step of every form, timed in interleaved rounds of `per_round` steps each, so
    that the machine's drift (large on these shared CPUs) falls on every form alike."""
    steppers = {label: training_step(data, kind, options) for label, (kind, options) in FORMS.items()}
    times: dict[str, list[float]] = {label: [] for label in FORMS}
    for _ in range(max(1, steps // per_round)):
        for label, step in steppers.items():
            t0 = time.perf_counter()
            for _ in range(per_round):
                step()
            times[label].append((time.perf_counter() - t0) / per_round)
    return {label: 1e3 * statistics.median(ts) for label, ts in times.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--systems", nargs="+", default=list(FOREIGN_SYSTEMS), choices=list(FOREIGN_SYSTEMS))
    ap.add_argument("--steps", type=int, default=30, help="timed steps per form")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.systems:
        system = FOREIGN_SYSTEMS[name]()
        data = system.simulate(64, 200, seed=0)
        row = {"system": name, **{label: round(ms, 1) for label, ms in ms_per_step(data, args.steps).items()}}
        row.update({f"{label} / mlp": round(row[label] / row["mlp"], 1) for label in FORMS if label != "mlp"})
        print(json.dumps(row), flush=True)
        rows.append(row)
    result = {
        "machine": f"{platform.machine()}, {args.threads} torch threads, torch {torch.__version__}",
        "horizon": TRAIN_HORIZON, "timed_steps": args.steps, "ms_per_step": rows,
    }  # fmt: skip
    atomic_write_text(Path(args.out), json.dumps(result, indent=1) + "\n")
    print("| system | " + " | ".join(f"{label} ms" for label in FORMS) + " |")
    print("|---|" + "---|" * len(FORMS))
    for r in rows:
        cells = [f"{r[label]}" + ("" if label == "mlp" else f" ({r[label + ' / mlp']}×)") for label in FORMS]
        print(f"| {r['system']} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
