"""The `hwm-studio` command. The only place (with the UI) that turns names into objects.

User errors (bad files, bad options) print one line `hwm-studio: error: ...` and exit 1;
set HWM_STUDIO_DEBUG=1 to see the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from hwm_studio.data.format import DataFormatError
from hwm_studio.training.checkpoint import CheckpointError


class UserError(Exception):
    """An error in what the user asked for; printed as one line, no traceback."""


def parse_params(items: Sequence[str]) -> dict[str, float]:
    """--param name=value pairs -> dict (values as numbers)."""
    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UserError(f"--param expects name=value, got {item!r}")
        try:
            out[name] = float(value)
        except ValueError:
            raise UserError(f"--param {name}: {value!r} is not a number") from None
    return out


# --- simulate ---------------------------------------------------------------------------------
def _add_simulate(sub: argparse._SubParsersAction) -> None:
    from hwm_studio.data.simulate import CONTROLS
    from hwm_studio.physics.integrators import INTEGRATORS
    from hwm_studio.systems import system_names

    p = sub.add_parser("simulate", help="simulate a ground-truth system into a trajectory .npz")
    p.add_argument("--system", required=True, choices=system_names())
    p.add_argument("--trajectories", type=int, default=16, help="number of trajectories N")
    p.add_argument("--steps", type=int, default=100, help="time points T per trajectory (T - 1 steps of dt)")
    p.add_argument("--dt", type=float, default=None, help="time step (default: the system's)")
    p.add_argument("--integrator", default="yoshida4", choices=list(INTEGRATORS))
    p.add_argument("--substeps", type=int, default=4, help="internal steps per recorded step")
    p.add_argument("--dissipation", type=float, default=0.0, help="viscous damping gamma >= 0")
    p.add_argument("--control", default="zero", choices=CONTROLS)
    p.add_argument("--frames", type=int, default=None, metavar="SIZE", help="also render SIZExSIZE RGB frames")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="system parameter")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output .npz")
    p.set_defaults(func=_simulate)


def _simulate(a: argparse.Namespace) -> int:
    from hwm_studio.data.format import describe, save_trajectories
    from hwm_studio.data.simulate import simulate
    from hwm_studio.systems import get_system

    if not a.out.endswith(".npz"):
        raise UserError(f"--out must end in .npz, got {a.out!r}")
    system = get_system(a.system, **parse_params(a.param))
    data = simulate(
        system,
        n_trajectories=a.trajectories,
        n_times=a.steps,
        dt=a.dt,
        integrator=a.integrator,
        substeps=a.substeps,
        damping=a.dissipation,
        control=a.control,
        frame_size=a.frames,
        seed=a.seed,
    )
    path = save_trajectories(data, a.out)
    print(f"wrote {path}")
    print(describe(data))
    return 0


# --- inspect ----------------------------------------------------------------------------------
def _add_inspect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="validate a trajectory .npz and summarise it")
    p.add_argument("file")
    p.set_defaults(func=_inspect)


def _inspect(a: argparse.Namespace) -> int:
    from hwm_studio.data.format import describe, load_trajectories, unknown_keys

    data = load_trajectories(a.file)
    print(f"{a.file}: valid trajectory file")
    print(describe(data, ignored=unknown_keys(a.file)))
    return 0


# --- train ------------------------------------------------------------------------------------
def _add_train(sub: argparse._SubParsersAction) -> None:
    from hwm_studio.data.simulate import CONTROLS
    from hwm_studio.models import MODELS
    from hwm_studio.models.coders import CODERS
    from hwm_studio.systems import system_names

    p = sub.add_parser("train", help="train a world model on a system's simulated data or a trajectory file")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--system", choices=system_names(), help="simulate training data from this system")
    src.add_argument("--data", help="trajectory .npz to train on")
    p.add_argument("--model", default="hwm", choices=list(MODELS))
    p.add_argument("--steps", type=int, default=2000, help="optimiser steps")
    p.add_argument("--horizon", type=int, default=8, help="final rollout horizon of the curriculum")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--residual-weight", type=float, default=1.0, help="lambda of the residual penalty")
    p.add_argument("--observation", default="canonical", choices=list(CODERS), help="how the data is observed")
    p.add_argument("--val-fraction", type=float, default=0.2, help="share of trajectories held out")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--trajectories", type=int, default=64, help="with --system: trajectories to simulate")
    p.add_argument("--points", type=int, default=100, help="with --system: time points per trajectory")
    p.add_argument("--dissipation", type=float, default=0.0, help="with --system: true friction gamma")
    p.add_argument("--control", default="random", choices=CONTROLS, help="with --system: actions applied")
    p.add_argument("--out", required=True, help="run directory to write")
    p.set_defaults(func=_train)


def _train(a: argparse.Namespace) -> int:
    from tqdm import tqdm

    from hwm_studio.data.format import load_trajectories
    from hwm_studio.device import resolve_device
    from hwm_studio.training.fit import TrainConfig
    from hwm_studio.training.run import system_dataset, train_run

    resolve_device(a.device)  # fail before any work if cuda is asked for and absent
    if a.steps < 1:
        raise UserError(f"--steps must be >= 1, got {a.steps}")
    if not 0 <= a.val_fraction < 1:
        raise UserError(f"--val-fraction must be in [0, 1), got {a.val_fraction}")
    out = Path(a.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a directory")
    if a.data:
        data = load_trajectories(a.data)
        source = {"data": str(a.data)}
    else:
        data = system_dataset(a.system, a.trajectories, a.points, a.dissipation, a.control, a.seed)
        source = {"system": a.system, "trajectories": a.trajectories, "points": a.points,
                  "dissipation": a.dissipation, "control": a.control}  # fmt: skip
    cfg = TrainConfig(steps=a.steps, lr=a.lr, batch_size=a.batch_size, horizon=a.horizon,
                      residual_weight=a.residual_weight, seed=a.seed, device=a.device)  # fmt: skip
    bar = tqdm(total=a.steps, desc=f"train {a.model}", unit="step", dynamic_ncols=True, file=sys.stderr)
    post: dict[str, float] = {}

    def progress(event: dict) -> None:
        if event["event"] == "step":
            bar.update(1)
            post["loss"] = event["loss"]
            post["h"] = event["horizon"]
        elif event["event"] == "validation":
            post["val"] = event["val_rollout_mse"]
        if event["event"] != "end" and (event["event"] == "validation" or event["step"] % 10 == 0):
            bar.set_postfix({k: f"{v:.3g}" for k, v in post.items()})

    try:
        _, result, metrics = train_run(data, out, a.model, cfg, a.val_fraction,
                                       {"observation": a.observation}, [progress], source=source)  # fmt: skip
    finally:
        bar.close()
    print(f"{result.status}: {result.steps_done} steps in {result.seconds:.1f} s -> {out}")
    if result.message:
        print(result.message)
    if "val_eval" in metrics:
        print(json.dumps({k: metrics["val_eval"][k] for k in ("rollout_mse", "vpt", "energy_mse")}))
    return 0 if result.status != "diverged" else 3


# --- eval -------------------------------------------------------------------------------------
def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="roll a trained model out on test trajectories and score it")
    p.add_argument("run_dir")
    p.add_argument("--data", required=True, help="test trajectory .npz")
    p.add_argument("--horizon", type=int, default=None, help="steps to roll out (default: whole trajectories)")
    p.add_argument("--predictions", default=None, help="save predicted q, p to this .npz")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_eval)


def _eval(a: argparse.Namespace) -> int:
    from hwm_studio.data.format import TrajectoryData, load_trajectories, save_trajectories
    from hwm_studio.device import resolve_device
    from hwm_studio.training.checkpoint import load_model
    from hwm_studio.training.evaluate import evaluate

    model = load_model(a.run_dir, resolve_device(a.device))
    data = load_trajectories(a.data)
    metrics, q_hat, p_hat = evaluate(model, data, a.horizon)
    if a.predictions:
        if not a.predictions.endswith(".npz"):
            raise UserError(f"--predictions must end in .npz, got {a.predictions!r}")
        h = metrics["horizon"]
        pred = TrajectoryData(q=q_hat, p=p_hat, dt=data.dt, u=None if data.u is None else data.u[:, : h + 1],
                              meta=data.meta)  # fmt: skip
        save_trajectories(pred, a.predictions)
    if a.json:
        print(json.dumps(metrics))
    else:
        for k, v in metrics.items():
            print(f"{k:12s} {v}")
    return 0


# --- entry point ------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hwm-studio",
        description="Hamiltonian World Model studio: simulate, train, evaluate, render and plan.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_parser in (_add_simulate, _add_inspect, _add_train, _add_eval):
        add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (UserError, DataFormatError, CheckpointError, ValueError, FileNotFoundError) as exc:
        if os.environ.get("HWM_STUDIO_DEBUG"):
            raise
        print(f"hwm-studio: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("hwm-studio: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
