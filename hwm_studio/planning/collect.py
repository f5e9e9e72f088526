"""Learn a world model from an environment: random actions first, then rounds of MPC with it.

    random episodes -> train -> MPC episodes with the model (data appended) -> train -> ...

Random actions alone rarely reach the states a good controller visits (a pendulum near upright
and fast); MPC with the model being learned goes there, so each round's data covers what the
next plan will ask about. Episodes of any length are cut into fixed-length windows (the training
format has one T); angles are unwrapped along each episode first, so a window never jumps by
2 pi. Every environment step taken is counted, windowed or not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hwm_studio.data.format import TrajectoryData
from hwm_studio.models import WorldModel, build_model, config_from_data
from hwm_studio.planning.envs import Env
from hwm_studio.planning.mpc import Episode, run_mpc
from hwm_studio.planning.rollouts import model_rollout
from hwm_studio.planning.tasks import Task
from hwm_studio.training.checkpoint import load_metrics, save_metrics
from hwm_studio.training.fit import FitResult, TrainConfig
from hwm_studio.training.run import train_run


@dataclass
class CollectConfig:
    env_steps: int = 4_000  # environment steps in all (random + MPC)
    random_steps: int = 2_000  # random-action steps first (uniform within the bounds)
    rounds: int = 1  # MPC rounds after the random phase; they share the rest of the budget equally
    round_train_steps: int = 800  # optimiser steps on the data so far, before each MPC round
    window: int = 41  # points per training trajectory (episodes are cut into windows of window - 1 steps)
    explore_std: float = 0.1  # noise on MPC actions while collecting, fraction of half the bound range
    planner: str = "cem"  # planner used while collecting
    planner_options: dict[str, Any] = field(default_factory=lambda: {"candidates": 200, "elites": 20, "iterations": 4})
    seed: int = 0

    def __post_init__(self) -> None:
        if self.env_steps < 1 or not 0 <= self.random_steps <= self.env_steps:
            raise ValueError(f"need 0 <= random_steps <= env_steps >= 1, got {self.random_steps}, {self.env_steps}")
        if self.random_steps == 0 and self.rounds > 0:
            raise ValueError("MPC rounds need a model, and a model needs data: give random_steps > 0")
        if self.window < 2:
            raise ValueError(f"window must be >= 2 points, got {self.window}")
        if self.rounds < 0:
            raise ValueError(f"rounds must be >= 0, got {self.rounds}")


def episode_seed(seed: int, phase: int, k: int) -> int:
    """The reset seed of collection episode k in phase (0: random, r + 1: MPC round r).

    Far above the small seeds evaluations use (`plan --seed 0` runs episodes 0..9), so no
    evaluation episode starts where a training episode did.
    """
    return 1_000_000 + 100_000 * seed + 10_000 * phase + k


def random_episodes(env: Env, steps: int, seed: int) -> list[Episode]:
    """Episodes of i.i.d. uniform actions within the bounds, `steps` environment steps in all."""
    gen = torch.Generator().manual_seed(seed)
    episodes: list[Episode] = []
    left, k = steps, 0
    while left > 0:
        state = env.reset(episode_seed(seed, 0, k))
        qs, ps, acts, rewards = [state.q[0]], [state.p[0]], [], []
        for _ in range(min(left, env.max_steps or left)):
            a = env.low + (env.high - env.low) * torch.rand(env.action_dim, generator=gen, dtype=torch.float64)
            state, reward, done = env.step(a)
            qs.append(state.q[0])
            ps.append(state.p[0])
            acts.append(a)
            rewards.append(reward)
            if done:
                break
        episodes.append(
            Episode(torch.stack(qs), torch.stack(ps), torch.stack(acts), rewards, [], episode_seed(seed, 0, k))
        )
        left -= len(rewards)
        k += 1
    return episodes


def episodes_to_data(episodes: list[Episode], window: int, task: Task, env_steps: int) -> TrajectoryData:
    """Cut episodes into windows of `window` points (sharing end points), as one TrajectoryData.

    u[:, t] acts from point t to t + 1; the last point's action (unused by the format) repeats
    the one before. A remainder shorter than a window is dropped.
    """
    qs, ps, us = [], [], []
    for ep in episodes:
        q, p, u = ep.q.numpy(), ep.p.numpy(), ep.actions.numpy()  # (T+1, E, D), (T, A)
        if task.angular:
            q = np.unwrap(q, axis=0)
        for s in range(0, ep.steps - (window - 1) + 1, window - 1):
            qs.append(q[s : s + window])
            ps.append(p[s : s + window])
            uw = u[s : s + window - 1]
            us.append(np.concatenate([uw, uw[-1:]], axis=0))
    if not qs:
        raise ValueError(f"no episode lasted {window - 1} steps: nothing to cut a training window from")
    meta = task.system.meta()
    meta["collection"] = {"env": task.name, "env_steps": env_steps, "episodes": len(episodes), "window": window}
    return TrajectoryData(q=np.stack(qs), p=np.stack(ps), dt=float(task.system.default_dt), u=np.stack(us), meta=meta)


@dataclass
class LearnResult:
    model: WorldModel
    data: TrajectoryData  # every window trained on
    env_steps: int  # environment steps taken, windowed or not
    episodes: list[Episode]  # random first, then MPC rounds
    fit: FitResult  # the final training
    metrics: dict[str, Any]  # what the run directory's metrics.json holds


Progress = Callable[[dict[str, Any]], None]


def learn_from_env(
    task: Task,
    out: str | Path,
    kind: str = "hwm",
    collect: CollectConfig | None = None,
    train: TrainConfig | None = None,
    model_options: dict[str, Any] | None = None,
    val_fraction: float = 0.2,
    progress: Progress | None = None,
    train_callbacks: list | None = None,
) -> LearnResult:
    """Collect experience in `task`'s environment and train a `kind` model on it, into `out`.

    `model_options` override the task's own for this kind (`Task.model_options`) and the data's
    defaults. `train` is the final training on all the data (its steps and horizon); before each
    MPC round the model trains `collect.round_train_steps` steps (at most `train.steps`) of the
    same settings, continuing from the round before. The run directory's metrics.json records
    `env_steps` and how they were collected.
    """
    collect = collect or CollectConfig()
    train = train or TrainConfig()
    model_options = {**task.model_options.get(kind, {}), **(model_options or {})}
    report = progress or (lambda event: None)
    env = task.make_env()
    try:
        episodes = random_episodes(env, collect.random_steps, collect.seed)
        used = sum(e.steps for e in episodes)
        report({"event": "collected", "phase": "random", "env_steps": used})
        _check_model_fits(episodes_to_data(episodes, collect.window, task, used), kind, model_options, env)
        model: WorldModel | None = None
        mpc_budget = collect.env_steps - used
        rounds = collect.rounds if mpc_budget > 0 else 0
        for r in range(rounds):
            data = episodes_to_data(episodes, collect.window, task, used)
            round_cfg = replace(train, steps=min(collect.round_train_steps, train.steps), seed=train.seed + r)
            report({"event": "training", "round": r, "steps": round_cfg.steps, "env_steps": used})
            model, _, _ = train_run(data, out, kind, round_cfg, val_fraction, model_options, train_callbacks,
                                    source={"env": task.name, "round": r}, model=model)  # fmt: skip
            report({"event": "trained", "round": r, "env_steps": used})
            share = mpc_budget // rounds + (1 if r < mpc_budget % rounds else 0)
            planner = task.planner(collect.planner, **collect.planner_options)  # run_mpc seeds it per episode
            rollout = model_rollout(model, energy=getattr(task.cost, "needs_energy", False))
            k = 0
            while share > 0:
                ep = run_mpc(env, planner, rollout, task.cost, steps=min(share, env.max_steps or share),
                             seed=episode_seed(collect.seed, r + 1, k), explore_std=collect.explore_std)  # fmt: skip
                episodes.append(ep)
                share -= ep.steps
                used += ep.steps
                k += 1
                report({"event": "episode", "round": r, "return": ep.total_return, "env_steps": used})
    finally:
        env.close()
    data = episodes_to_data(episodes, collect.window, task, used)
    report({"event": "training", "round": "final", "steps": train.steps, "env_steps": used})
    source = {"env": task.name, "env_steps": used}
    model, result, _ = train_run(data, out, kind, train, val_fraction, model_options, train_callbacks,
                                 source=source, model=model)  # fmt: skip
    metrics = {**load_metrics(out), "env": task.name, "env_steps": used, "collect": asdict(collect)}
    save_metrics(out, metrics)
    report({"event": "trained", "round": "final", "env_steps": used, "status": result.status})
    return LearnResult(model, data, used, episodes, result, metrics)


def _check_model_fits(data: TrajectoryData, kind: str, options: dict[str, Any] | None, env: Env) -> None:
    """Before any training: a `kind` model of this data must take the environment's actions."""
    probe = build_model(config_from_data(data, kind, **(options or {})))  # a pixel kind fails here: no frames
    if probe.action_dim != env.action_dim:
        raise ValueError(f"the {kind} model takes {probe.action_dim} action dim(s); the environment takes "
                         f"{env.action_dim}, so MPC cannot plan with it")  # fmt: skip
