"""Environments that MPC acts in, seen through one interface: canonical states in, rewards out.

    reset(seed) -> state                  PhaseState (1, E, D), float64, on the cpu
    step(action (A,)) -> (state, reward, done)

Two adapters: `SystemEnv` steps a ground-truth system of this project with its true dynamics;
`GymnasiumEnv` wraps a Gymnasium environment, turning its observations into a system's (q, p)
with a map the caller supplies (`planning.pendulum_v1` has Pendulum-v1's). States are what the
planner starts from; rewards are the environment's own, so returns compare with published ones.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from hwm_studio.planning.costs import CostFn, cost_values
from hwm_studio.planning.rollouts import system_energy, true_step
from hwm_studio.state import PhaseState
from hwm_studio.systems.base import System

ObservationMap = Callable[[np.ndarray], PhaseState]  # one observation -> PhaseState (1, E, D)


class Step(NamedTuple):
    state: PhaseState  # (1, E, D) after the action
    reward: float
    done: bool  # the episode ended (terminated or truncated)


class Env(ABC):
    """An environment with box-bounded continuous actions and canonical (q, p) states.

    Attributes: low, high (A,) float64 action bounds; dt, the time per step; max_steps, the
    episode length (None: unbounded); system, the ground-truth system whose coordinates and
    parameters the states use (None when no system of this project describes it).
    """

    low: Tensor
    high: Tensor
    dt: float
    max_steps: int | None
    system: System | None

    @property
    def action_dim(self) -> int:
        return self.low.numel()

    @abstractmethod
    def reset(self, seed: int | None = None) -> PhaseState:
        """Start an episode; `seed` makes its initial state reproducible."""

    @abstractmethod
    def step(self, action: Tensor) -> Step:
        """Apply action (A,) for one step."""

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Release what the environment holds (windows, simulators)."""

    def clip(self, action: Tensor) -> Tensor:
        """An action (A,) as float64 within the bounds."""
        a = torch.as_tensor(action, dtype=torch.float64).reshape(-1)
        if a.numel() != self.action_dim:
            raise ValueError(f"the environment takes {self.action_dim} action dim(s), got {a.numel()}")
        return torch.maximum(torch.minimum(a, self.high), self.low)


class SystemEnv(Env):
    """A ground-truth system stepped with its true dynamics (`rollouts.true_step`).

    The reward of a step is minus `reward` (a planning cost) on that one transition (state t,
    state t+1, action t); by default the system's own (`System.default_reward`), if it has one (Pendulum-v1's for
    gym_pendulum, so returns match the Gymnasium environment's), else a cost must be given.
    Episodes start from the system's sampler (for gym_pendulum: the environment's reset), or
    always from `initial` (1, E, D) when given.
    """

    def __init__(
        self,
        system: System,
        reward: CostFn | None = None,
        dt: float | None = None,
        damping: float = 0.0,
        max_steps: int | None = 200,
        initial: PhaseState | None = None,
    ) -> None:
        shape = (1, system.n_entities, system.dim)
        if initial is not None and initial.q.shape != shape:
            raise ValueError(f"the initial state must be {shape}, got {tuple(initial.q.shape)}")
        self.initial = None if initial is None else initial.to(torch.float64)
        if reward is None:
            reward = system.default_reward()
            if reward is None:
                raise ValueError(f"{system.name} defines no reward: pass reward= (a cost; reward = -cost per step)")
        self.system, self.reward_cost = system, reward
        self.dt = system.default_dt if dt is None else float(dt)
        self._step = true_step(system, self.dt, damping)
        self._energy = system_energy(system) if getattr(reward, "needs_energy", False) else None
        bound = float(system.action_bound)
        self.low = torch.full((system.action_dim,), -bound, dtype=torch.float64)
        self.high = -self.low
        self.max_steps = max_steps
        self._state: PhaseState | None = None
        self._t = 0

    def reset(self, seed: int | None = None) -> PhaseState:
        state = self.initial
        if state is None:
            gen = torch.Generator()
            if seed is None:
                gen.seed()
            else:
                gen.manual_seed(int(seed))
            state = self.system.sample_initial(1, gen)
        self._state, self._t = state, 0
        return self._state

    def step(self, action: Tensor) -> Step:
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        u = self.clip(action)[None]  # (1, A)
        s = self._state
        q, p = self._step(s.q, s.p, u)
        qq, pp = torch.stack([s.q, q], dim=1), torch.stack([s.p, p], dim=1)  # (1, 2, E, D)
        energy = None if self._energy is None else self._energy(qq, pp)
        reward = -float(cost_values(self.reward_cost, qq, pp, u[:, None], energy)[0])
        self._state, self._t = PhaseState(q, p), self._t + 1
        done = self.max_steps is not None and self._t >= self.max_steps
        return Step(self._state, reward, done)


class GymnasiumEnv(Env):
    """A Gymnasium environment with a Box action space, its observations mapped to (q, p).

    Args:
        env: an environment id (made with gymnasium.make) or an environment.
        to_state: observation -> PhaseState (1, E, D) in `system`'s coordinates.
        system: the system of this project the states belong to, if any (for data meta, costs).
    """

    def __init__(self, env: str | Any, to_state: ObservationMap, system: System | None = None) -> None:
        import gymnasium  # local: only environments need it

        if isinstance(env, str):
            try:
                env = gymnasium.make(env)
            except gymnasium.error.Error as exc:
                raise ValueError(f"gymnasium cannot make {env!r}: {exc}") from None
        space = env.action_space
        if not isinstance(space, gymnasium.spaces.Box) or len(space.shape) != 1:
            raise ValueError(f"planning needs a 1-d Box action space, {env} has {space}")
        self.env, self.to_state, self.system = env, to_state, system
        self.low = torch.as_tensor(space.low, dtype=torch.float64)
        self.high = torch.as_tensor(space.high, dtype=torch.float64)
        self.dt = float(getattr(env.unwrapped, "dt", system.default_dt if system else 1.0))
        self.max_steps = env.spec.max_episode_steps if env.spec is not None else None
        self._dtype = space.dtype

    def reset(self, seed: int | None = None) -> PhaseState:
        obs, _ = self.env.reset(seed=seed)
        return self.to_state(obs)

    def step(self, action: Tensor) -> Step:
        a = self.clip(action).numpy().astype(self._dtype)
        obs, reward, terminated, truncated, _ = self.env.step(a)
        return Step(self.to_state(obs), float(reward), bool(terminated or truncated))

    def close(self) -> None:
        self.env.close()
