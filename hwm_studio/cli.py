"""The `hwm-studio` command. The only place (with the UI) that turns names into objects.

User errors (bad files, bad options) and the disk's (an OSError: a full disk, a directory that
cannot be written) print one line `hwm-studio: error: ...` and exit 1; set HWM_STUDIO_DEBUG=1 to
see the traceback instead. `train` exits 3 when training diverged (its run directory keeps the
last good weights) and says why in one line.

`train` trains data-parallel when torchrun starts it as several processes
(`torchrun --nproc-per-node N -m hwm_studio train ...`), or when given `--processes N`, which runs
that for you on this machine (training/distributed.py). Process 0 alone writes and reports.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hwm_studio.data.format import DataFormatError
from hwm_studio.training.checkpoint import CheckpointError, RunSaveError

if TYPE_CHECKING:
    from hwm_studio.training.fit import TrainConfig

TRAIN_STEPS = 2000  # optimiser steps of `train` on simulated or file data
ENV_TRAIN_STEPS = 1500  # with --env: final optimiser steps (Pendulum-v1: enough, measured)
TRAIN_HORIZON = 8  # final training horizon for simulated or file data
ENV_HORIZON = 16  # with --env: planning looks 30 steps ahead, so train on longer rollouts


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
    from hwm_studio.systems.render import STYLES

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
    p.add_argument("--style", default="default", choices=list(STYLES), help="with --frames: how frames are drawn")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="system parameter")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output .npz")
    p.set_defaults(func=_simulate)


def _simulate(a: argparse.Namespace) -> int:
    from hwm_studio.data.format import describe, save_trajectories
    from hwm_studio.data.simulate import simulate
    from hwm_studio.systems import get_system
    from hwm_studio.systems.render import get_style

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
        style=get_style(a.style) if a.frames else None,
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
    from hwm_studio.models.pixel import GEOMETRIES
    from hwm_studio.systems import system_names
    from hwm_studio.training.fit import PIXEL_DEFAULTS, STATE_DEFAULTS
    from hwm_studio.training.structure import STRUCTURES

    p = sub.add_parser(
        "train", help="train a world model on a system's simulated data, a trajectory file, or an environment"
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--system", choices=system_names(), help="simulate training data from this system")
    src.add_argument("--data", help="trajectory .npz to train on")
    src.add_argument("--env", help="collect the data in this environment (random actions, then MPC rounds)")
    p.add_argument("--model", default="hwm", choices=list(MODELS))
    p.add_argument("--steps", type=int, default=None,
                   help=f"optimiser steps (default {TRAIN_STEPS}; with --env {ENV_TRAIN_STEPS})")  # fmt: skip
    p.add_argument("--horizon", type=int, default=None, help="final rollout horizon of the curriculum "
                   f"(default {TRAIN_HORIZON}; with --env {ENV_HORIZON})")  # fmt: skip
    p.add_argument("--lr", type=float, default=None,
                   help=f"Adam step (default {STATE_DEFAULTS[0]}; pixel models {PIXEL_DEFAULTS[0]})")  # fmt: skip
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help=f"windows per step (default {STATE_DEFAULTS[1]}; pixel models {PIXEL_DEFAULTS[1]})",
    )
    p.add_argument("--residual-weight", type=float, default=1.0, help="lambda of the residual penalty")
    p.add_argument("--structure", default=None, choices=list(STRUCTURES),
                   help="hwm: auto (default: keep friction and residual only where held-out rollouts need "
                        "them), full, or conservative")  # fmt: skip
    p.add_argument("--observation", default="canonical", choices=list(CODERS), help="how the data is observed")
    p.add_argument("--val-fraction", type=float, default=0.2, help="share of trajectories held out")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--trajectories", type=int, default=64, help="with --system: trajectories to simulate")
    p.add_argument("--points", type=int, default=100, help="with --system: time points per trajectory")
    p.add_argument("--dissipation", type=float, default=0.0, help="with --system: true friction gamma")
    p.add_argument("--control", default="random", choices=CONTROLS, help="with --system: actions applied")
    p.add_argument("--frame-size", type=int, default=32, help="with --system and a pixel model: frame size")
    p.add_argument("--geometry", default=None, choices=list(GEOMETRIES),
                   help="pixel models: how frames show q (default: meta['geometry'], else the system's)")  # fmt: skip
    p.add_argument("--env-steps", type=int, default=None, help="with --env: environment steps in all")
    p.add_argument("--random-steps", type=int, default=None, help="with --env: random-action steps first")
    p.add_argument("--rounds", type=int, default=None, help="with --env: MPC rounds with the model being learned")
    p.add_argument("--out", required=True, help="run directory to write")
    # not --nproc: torchrun reads a prefix of its own --nproc-per-node in the command it runs as its own
    p.add_argument("--processes", type=int, default=None, metavar="N",
                   help="train data-parallel on N processes of this machine (torchrun; one GPU each on cuda); "
                        "--batch-size is the batch of all N together")  # fmt: skip
    p.set_defaults(func=_train)


def _train(a: argparse.Namespace) -> int:
    from hwm_studio.device import resolve_device
    from hwm_studio.models import PIXEL_MODELS
    from hwm_studio.training import distributed

    resolve_device(a.device)  # fail before any work if cuda is asked for and absent
    env_only = {"--env-steps": a.env_steps, "--random-steps": a.random_steps, "--rounds": a.rounds}
    if not a.env and any(v is not None for v in env_only.values()):
        raise UserError(f"{', '.join(k for k, v in env_only.items() if v is not None)} only apply with --env")
    a.steps = (ENV_TRAIN_STEPS if a.env else TRAIN_STEPS) if a.steps is None else a.steps
    a.horizon = (ENV_HORIZON if a.env else TRAIN_HORIZON) if a.horizon is None else a.horizon
    if a.steps < 1:
        raise UserError(f"--steps must be >= 1, got {a.steps}")
    if not 0 <= a.val_fraction < 1:
        raise UserError(f"--val-fraction must be in [0, 1), got {a.val_fraction}")
    out = Path(a.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a directory")
    pixels = a.model in PIXEL_MODELS
    if pixels and a.observation != "canonical":
        raise UserError(f"--observation does not apply to {a.model}: it reads the data's frames")
    if a.geometry and not pixels:
        raise UserError(f"--geometry applies to pixel models ({', '.join(PIXEL_MODELS)}), not {a.model}")
    if a.structure is not None and a.model != "hwm":
        raise UserError(f"--structure applies to the hwm model, not {a.model}")
    if a.structure is not None and a.env:
        raise UserError("--structure does not apply with --env: the planning loop trains the full structure")
    if _processes(a) > 1 and not distributed.launched():
        return _launch_processes(a)
    if a.env:
        return _train_env(a)
    with distributed.process_group(a.device):  # joins torchrun's processes, when it started this one
        return _train_on_data(a, pixels)


def _train_on_data(a: argparse.Namespace, pixels: bool) -> int:
    from hwm_studio.data.format import load_trajectories
    from hwm_studio.training.run import system_dataset, train_run

    out = Path(a.out)
    if a.data:
        data = load_trajectories(a.data)
        source = {"data": str(a.data)}
        if pixels and data.frames is None:
            raise UserError(f"{a.data} has no 'frames': {a.model} learns from frames (simulate --frames SIZE)")
    else:
        data = system_dataset(a.system, a.trajectories, a.points, a.dissipation, a.control, a.seed,
                              frame_size=a.frame_size if pixels else None)  # fmt: skip
        source = {"system": a.system, "trajectories": a.trajectories, "points": a.points,
                  "dissipation": a.dissipation, "control": a.control}  # fmt: skip
    cfg = _train_config(a)
    bar, progress = _progress_bar(a.steps, f"train {a.model}")
    try:
        options = ({"geometry": a.geometry} if a.geometry else {}) if pixels else {"observation": a.observation}
        _, result, metrics = train_run(
            data, out, a.model, cfg, a.val_fraction, options, [progress], source=source, structure=a.structure or "auto"
        )
    finally:
        bar.close()
    return _report_training(result, metrics, out)


def _processes(a: argparse.Namespace) -> int:
    """How many processes train (--processes, or torchrun's), refusing what cannot train on several."""
    import torch

    from hwm_studio.models import PIXEL_MODELS
    from hwm_studio.training import distributed
    from hwm_studio.training.fit import kind_defaults

    started = distributed.launched_size()
    if a.processes is not None and a.processes < 1:
        raise UserError(f"--processes must be >= 1, got {a.processes}")
    if a.processes is not None and started > 1 and a.processes != started:
        raise UserError(f"--processes {a.processes}, but torchrun started {started} (leave it out under torchrun)")
    n = max(started, a.processes or 1)
    if n == 1:
        return n
    if a.env:
        raise UserError("--env trains in one process: collecting in an environment is not data-parallel")
    if a.model in PIXEL_MODELS:
        raise UserError(f"{a.model} trains in one process: it calibrates its image geometry from one batch, "
                        "at a step each process would choose by itself")  # fmt: skip
    batch = a.batch_size if a.batch_size is not None else kind_defaults(a.model)[1]
    if batch % n:
        raise UserError(f"--batch-size {batch} does not split evenly over {n} processes")
    on_cuda = a.device.startswith("cuda") or (a.device == "auto" and torch.cuda.is_available())
    if on_cuda and started == 1 and n > torch.cuda.device_count():
        raise UserError(f"--processes {n} on cuda needs {n} GPUs; this machine has {torch.cuda.device_count()}")
    return n


def _launch_processes(a: argparse.Namespace) -> int:
    """--processes N: this very command, run by torchrun as N processes on this machine."""
    import signal
    import subprocess

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={a.processes}",
           "-m", "hwm_studio", *a.argv]  # fmt: skip
    proc = subprocess.Popen(cmd)
    try:
        return proc.wait()
    except KeyboardInterrupt:  # torchrun stops its processes on SIGINT: let it, then say so
        proc.send_signal(signal.SIGINT)
        proc.wait()
        raise


def _train_config(a: argparse.Namespace) -> TrainConfig:
    from hwm_studio.training.fit import TrainConfig, kind_defaults

    lr, batch = kind_defaults(a.model)
    lr = a.lr if a.lr is not None else lr
    batch = a.batch_size if a.batch_size is not None else batch
    return TrainConfig(steps=a.steps, lr=lr, batch_size=batch, horizon=a.horizon,
                       residual_weight=a.residual_weight, seed=a.seed, device=a.device)  # fmt: skip


def _progress_bar(steps: int, desc: str) -> tuple[Any, Callable[[dict], None]]:
    """A tqdm bar on stderr and the training callback that drives it (process 0's alone)."""
    from tqdm import tqdm

    from hwm_studio.training import distributed

    bar = tqdm(total=steps, desc=desc, unit="step", dynamic_ncols=True, file=sys.stderr,
               disable=not distributed.is_writer())  # fmt: skip
    post: dict[str, float] = {}

    def progress(event: dict) -> None:
        if event["event"] == "step":
            bar.update(1)
            post["loss"] = event["loss"]
            post["h"] = event["horizon"]
        elif event["event"] == "validation":
            post["val"] = event["val_rollout_mse"]
            if event.get("warning"):
                bar.write(f"step {event['step']}: warning: {event['warning']}")
        if event["event"] != "end" and (event["event"] == "validation" or event["step"] % 10 == 0):
            bar.set_postfix({k: f"{v:.3g}" for k, v in post.items()})

    return bar, progress


def _report_training(result: Any, metrics: dict, out: Path) -> int:
    """The run's summary on stdout; a diverged run (exit 3) says why in one line on stderr.
    Data-parallel, process 0 alone says it; every process exits alike."""
    from hwm_studio.training import distributed

    if not distributed.is_writer():
        return 3 if result.status == "diverged" else 0
    print(f"{result.status}: {result.steps_done} steps in {result.seconds:.1f} s -> {out}")
    if result.message and result.status != "diverged":
        print(result.message)
    if "val_eval" in metrics:
        shown = ("rollout_mse", "vpt", "energy_mse", "pixel_mse", "reconstruction_mse")
        print(json.dumps({k: v for k, v in metrics["val_eval"].items() if k in shown}))
    if result.status == "diverged":
        print(f"hwm-studio: diverged: {result.reason}; kept the last good weights (step {result.good_step}) in {out}",
              file=sys.stderr)  # fmt: skip
        return 3
    return 0


def _train_env(a: argparse.Namespace) -> int:
    """train --env: collect in the environment (random, then MPC rounds with the model) and train."""
    from hwm_studio.planning import get_task
    from hwm_studio.planning.collect import CollectConfig, learn_from_env

    task = get_task(a.env)
    defaults = CollectConfig()
    env_steps = defaults.env_steps if a.env_steps is None else a.env_steps
    rounds = defaults.rounds if a.rounds is None else a.rounds
    if env_steps < 1:
        raise UserError(f"--env-steps must be >= 1, got {env_steps}")
    random_steps = a.random_steps
    if random_steps is None:
        random_steps = min(defaults.random_steps, env_steps // 2) if rounds > 0 else env_steps
    collect = CollectConfig(env_steps=env_steps, random_steps=random_steps, rounds=rounds, seed=a.seed)
    bar, progress = _progress_bar(a.steps, f"train {a.model}")

    def report(event: dict) -> None:
        if event["event"] == "training":
            bar.reset(total=event["steps"])
            bar.set_description(f"train {a.model} ({event['round']})")
        elif event["event"] == "episode":
            bar.write(f"MPC round {event['round']}: return {event['return']:.1f} (env steps {event['env_steps']})")

    try:
        result = learn_from_env(task, a.out, a.model, collect, _train_config(a), {"observation": a.observation},
                                a.val_fraction, progress=report, train_callbacks=[progress])  # fmt: skip
    finally:
        bar.close()
    print(f"collected {result.env_steps} environment steps in {a.env} ({len(result.episodes)} episodes)")
    return _report_training(result.fit, result.metrics, Path(a.out))


# --- plan -------------------------------------------------------------------------------------
def _add_plan(sub: argparse._SubParsersAction) -> None:
    from hwm_studio.planning import PLANNERS

    p = sub.add_parser("plan", help="run MPC in an environment with a trained model (or the true dynamics)")
    p.add_argument("run_dir", nargs="?", help="run directory of the model to plan with (not with --true-dynamics)")
    p.add_argument("--env", required=True, help="environment to act in, e.g. Pendulum-v1")
    p.add_argument("--planner", default="cem", choices=list(PLANNERS))
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--seed", type=int, default=0, help="episode i uses seed + i")
    p.add_argument("--horizon", type=int, default=None, help="planning horizon (default: the environment's)")
    p.add_argument("--steps", type=int, default=None, help="steps per episode (default: the environment's)")
    p.add_argument("--candidates", type=int, default=None, help="sequences sampled per iteration")
    p.add_argument("--elites", type=int, default=None, help="sequences refit on")
    p.add_argument("--iterations", type=int, default=None, help="iterations per plan")
    p.add_argument("--true-dynamics", action="store_true", help="plan with the environment's exact equations")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (for the model)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_plan)


def _plan(a: argparse.Namespace) -> int:
    import statistics

    from hwm_studio.device import resolve_device
    from hwm_studio.planning import get_task, model_rollout, run_episodes
    from hwm_studio.training.checkpoint import load_metrics, load_model

    task = get_task(a.env)
    if a.episodes < 1:
        raise UserError(f"--episodes must be >= 1, got {a.episodes}")
    overrides = {k: v for k, v in (("candidates", a.candidates), ("elites", a.elites),
                                   ("iterations", a.iterations), ("horizon", a.horizon)) if v is not None}  # fmt: skip
    planner = task.planner(a.planner, seed=a.seed, **overrides)
    needs_energy = getattr(task.cost, "needs_energy", False)
    if a.true_dynamics:
        rollout, model_name, env_steps = task.make_true_rollout(), "true dynamics", None
    else:
        if a.run_dir is None:
            raise UserError("give a run directory to plan with its model (or --true-dynamics)")
        model = load_model(a.run_dir, resolve_device(a.device))
        _check_plannable(model, task)
        rollout, model_name = model_rollout(model, energy=needs_energy), model.kind
        env_steps = load_metrics(a.run_dir).get("env_steps")
    env = task.make_env()
    try:
        episodes = run_episodes(env, planner, rollout, task.cost, a.episodes, a.seed, steps=a.steps)
    finally:
        env.close()
    returns = [e.total_return for e in episodes]
    times = [s for e in episodes for s in e.plan_seconds]
    out = {
        "env": a.env,
        "planner": a.planner,
        "model": model_name,
        "horizon": planner.horizon,
        "episodes": len(returns),
        "steps": [e.steps for e in episodes],
        "returns": returns,
        "mean_return": statistics.mean(returns),
        "env_steps": env_steps,
        "ms_per_step": 1e3 * statistics.median(times),
    }
    if a.json:
        print(json.dumps(out))
    else:
        for e in episodes:
            print(f"episode seed {e.seed}: return {e.total_return:.1f} over {e.steps} steps")
        trained = "" if env_steps is None else f"; the model learned from {env_steps} environment steps"
        print(f"{a.planner} with {model_name}, horizon {planner.horizon}: mean return {out['mean_return']:.1f}, "
              f"{out['ms_per_step']:.1f} ms per step (median){trained}")  # fmt: skip
    return 0


def _check_plannable(model: Any, task: Any) -> None:
    """The run's model must predict this environment's states under its actions."""
    system, cfg = task.system, model.config
    if model.sees_pixels:
        raise UserError(f"the run's {model.kind} model predicts frames; planning needs a state model")
    if model.action_dim != system.action_dim:
        raise UserError(
            f"the run's {model.kind} model takes {model.action_dim} action dim(s); "
            f"{task.name} takes {system.action_dim}"
        )
    if (cfg.n_entities, cfg.dim) != (system.n_entities, system.dim):
        raise UserError(
            f"the run's model has {cfg.n_entities} entities of dim {cfg.dim}; {task.name}'s states "
            f"({system.name}) have {system.n_entities} of dim {system.dim}"
        )
    if cfg.system not in (None, system.name):
        raise UserError(f"the run's model learned {cfg.system!r}, not {system.name!r} ({task.name}'s system)")


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
    from hwm_studio.data.format import load_trajectories, save_trajectories
    from hwm_studio.device import resolve_device
    from hwm_studio.training.checkpoint import load_model
    from hwm_studio.training.evaluate import evaluate, prediction_data

    model = load_model(a.run_dir, resolve_device(a.device))
    data = load_trajectories(a.data)
    if a.predictions and not a.predictions.endswith(".npz"):
        raise UserError(f"--predictions must end in .npz, got {a.predictions!r}")
    metrics, q_hat, p_hat = evaluate(model, data, a.horizon)
    if a.predictions:
        save_trajectories(prediction_data(model, data, metrics, q_hat, p_hat), a.predictions)
    if a.json:
        print(json.dumps(metrics))
    else:
        for k, v in metrics.items():
            if k != "pixel_mse_curve":
                print(f"{k:18s} {v}")
    return 0


# --- render -----------------------------------------------------------------------------------
def _add_render(sub: argparse._SubParsersAction) -> None:
    from hwm_studio.systems import system_names

    p = sub.add_parser("render", help="export a rollout as video: truth | model | error, side by side")
    p.add_argument("run_dir")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--system", choices=system_names(), help="simulate one fresh trajectory of this system")
    src.add_argument("--data", help="trajectory .npz (frames are used when present, else rendered)")
    p.add_argument("--trajectory", type=int, default=0, help="with --data: which trajectory")
    p.add_argument("--steps", type=int, default=120, help="with --system: steps to roll out")
    p.add_argument("--seed", type=int, default=0, help="with --system: initial state")
    p.add_argument("--fps", type=float, default=10.0)
    p.add_argument("--scale", type=int, default=4, help="upscale each pixel to SCALE x SCALE")
    p.add_argument("--out", required=True, help="rollout.mp4 or rollout.gif")
    p.set_defaults(func=_render)


def _render(a: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from hwm_studio.data.format import load_trajectories
    from hwm_studio.data.simulate import simulate
    from hwm_studio.frames import frames_to_uint8
    from hwm_studio.systems import get_system
    from hwm_studio.training.checkpoint import load_model
    from hwm_studio.training.evaluate import predict_data, predict_frames_data
    from hwm_studio.viz.video import VIDEO_SUFFIXES, side_by_side, write_video

    if Path(a.out).suffix.lower() not in VIDEO_SUFFIXES:
        raise UserError(f"--out must end in {' or '.join(VIDEO_SUFFIXES)}, got {a.out!r}")
    if not 1 <= a.scale <= 16:
        raise UserError(f"--scale must be between 1 and 16, got {a.scale}")
    model = load_model(a.run_dir)
    pixels = model.sees_pixels
    size = model.config.frame_size if pixels else 64
    if a.data:
        data = load_trajectories(a.data)
        if not 0 <= a.trajectory < data.n_trajectories:
            raise UserError(f"--trajectory must be in [0, {data.n_trajectories}), got {a.trajectory}")
        data = data.select(np.array([a.trajectory]))
    else:
        if a.steps < 1:
            raise UserError(f"--steps must be >= 1, got {a.steps}")
        system = get_system(a.system)
        k = model.config.context_frames if pixels else 1
        data = simulate(system, 1, a.steps + k, dt=model.dt, frame_size=size if pixels else None, seed=a.seed)
    name = data.system_name
    if pixels:
        if data.frames is None:
            raise UserError(f"{a.data} has no 'frames' for the pixel model to read")
        k = model.config.context_frames
        h = data.n_times - k
        if h < 1:
            raise UserError(f"the trajectory has {data.n_times} points; the model reads {k} before predicting")
        truth = data.frames[0, k - 1 :]
        drawn = frames_to_uint8(predict_frames_data(model, data, h).frames[0])
    else:
        if name is None:
            raise UserError("rendering a state model needs data that names its system (meta)")
        system = get_system(name, **data.system_params)
        q_hat, _ = predict_data(model, data, data.n_times - 1)
        both = torch.as_tensor(np.stack([data.q[0], np.nan_to_num(q_hat[0])]))  # (2, T, E, D)
        truth, drawn = system.render(both, size=size).numpy()
    path, _ = write_video(a.out, side_by_side(truth, drawn, a.scale), a.fps)
    print(f"wrote {len(truth)} frames of truth | {'decoded' if pixels else 'predicted'} | error to {path}")
    return 0


# --- entry point ------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hwm-studio",
        description="Hamiltonian World Model studio: simulate, train, evaluate, render and plan.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_parser in (_add_simulate, _add_inspect, _add_train, _add_plan, _add_eval, _add_render):
        add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # `train --processes` runs it again under torchrun
    try:
        return int(args.func(args))
    except (UserError, DataFormatError, CheckpointError, RunSaveError, ValueError, OSError) as exc:
        if os.environ.get("HWM_STUDIO_DEBUG"):
            raise
        where = f" (process {os.environ['RANK']})" if os.environ.get("WORLD_SIZE", "1") != "1" else ""
        print(f"hwm-studio: error{where}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("hwm-studio: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
