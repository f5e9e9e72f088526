"""Closed-loop model-predictive control: plan, apply the first action, observe, re-plan.

The planner keeps its warm start between steps (the previous plan shifted by one), so each
re-plan refines rather than restarts. A per-step callback receives everything a live view needs
(the state, the action, the reward, the whole PlanResult with its candidates); returning False
from it stops the episode.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from hwm_studio.planning.costs import CostFn
from hwm_studio.planning.envs import Env
from hwm_studio.planning.planners import Planner, PlanResult, Rollout
from hwm_studio.state import PhaseState


@dataclass
class MPCStep:
    """One executed step, as the callback sees it."""

    t: int
    state: PhaseState  # (1, E, D) before the action
    action: Tensor  # (A,) applied (after exploration noise and clipping)
    reward: float
    next_state: PhaseState
    plan: PlanResult
    plan_seconds: float
    episode_return: float  # so far, this step included


@dataclass
class Episode:
    """An executed episode: states q, p (T+1, E, D), actions (T, A), rewards and planning times (T,)."""

    q: Tensor
    p: Tensor
    actions: Tensor
    rewards: list[float]
    plan_seconds: list[float]
    seed: int | None = None

    @property
    def steps(self) -> int:
        return len(self.rewards)

    @property
    def total_return(self) -> float:
        return float(sum(self.rewards))

    @property
    def ms_per_step(self) -> float:
        """Median planning time per step, ms."""
        return 1e3 * statistics.median(self.plan_seconds) if self.plan_seconds else float("nan")


MPCCallback = Callable[[MPCStep], bool | None]


def run_mpc(
    env: Env,
    planner: Planner,
    rollout: Rollout,
    cost: CostFn,
    steps: int | None = None,
    horizon: int | None = None,
    seed: int | None = None,
    callback: MPCCallback | None = None,
    explore_std: float = 0.0,
) -> Episode:
    """Run one episode of MPC in `env` and return what happened.

    Args:
        steps: steps to run (default: the environment's episode length); ends early when it does.
        seed: seeds the environment's reset, the planner's sampling and the exploration noise.
        explore_std: Gaussian noise added to each applied action, as a fraction of half the
            bound range (0 for evaluation; data collection uses a little, to see near-plan states).
    """
    steps = env.max_steps if steps is None else int(steps)
    if steps is None or steps < 1:
        raise ValueError(f"give steps >= 1 (the environment has no episode length), got {steps}")
    if planner.action_dim != env.action_dim:
        raise ValueError(
            f"the planner plans {planner.action_dim} action dim(s), the environment takes {env.action_dim}"
        )
    planner.reset(seed)
    noise_gen = torch.Generator()
    noise_gen.manual_seed(0 if seed is None else int(seed) + 7919)  # independent of the planner's stream
    half = 0.5 * (env.high - env.low)
    state = env.reset(seed)
    qs, ps, actions, rewards, times = [state.q[0]], [state.p[0]], [], [], []
    total = 0.0
    for t in range(steps):
        t0 = time.perf_counter()
        plan = planner.plan(rollout, state, cost, horizon)
        action = plan.actions[0].to("cpu", torch.float64)  # the one host sync of the step
        seconds = time.perf_counter() - t0
        if explore_std > 0:
            action = action + explore_std * half * torch.randn(action.shape, generator=noise_gen, dtype=torch.float64)
        action = env.clip(action)
        next_state, reward, done = env.step(action)
        total += reward
        qs.append(next_state.q[0])
        ps.append(next_state.p[0])
        actions.append(action)
        rewards.append(reward)
        times.append(seconds)
        keep = True
        if callback is not None:
            keep = callback(MPCStep(t, state, action, reward, next_state, plan, seconds, total)) is not False
        state = next_state
        if done or not keep:
            break
    return Episode(torch.stack(qs), torch.stack(ps), torch.stack(actions), rewards, times, seed)


def run_episodes(
    env: Env,
    planner: Planner,
    rollout: Rollout,
    cost: CostFn,
    episodes: int = 10,
    seed: int = 0,
    steps: int | None = None,
    horizon: int | None = None,
    callback: MPCCallback | None = None,
) -> list[Episode]:
    """`episodes` seeded episodes (seeds seed, seed + 1, ...), each from a fresh warm start."""
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    return [
        run_mpc(env, planner, rollout, cost, steps=steps, horizon=horizon, seed=seed + i, callback=callback)
        for i in range(episodes)
    ]
