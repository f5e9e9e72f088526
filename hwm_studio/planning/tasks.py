"""A control task: an environment with its system, cost, true dynamics and planner settings.

The one registry (`TASKS`) through which the CLI and the studio turn an environment name into
objects; the library functions take the objects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hwm_studio.planning.cem import CEM
from hwm_studio.planning.costs import CostFn
from hwm_studio.planning.envs import Env
from hwm_studio.planning.mppi import MPPI
from hwm_studio.planning.planners import Planner, Rollout
from hwm_studio.systems.base import System

PLANNERS: dict[str, type[Planner]] = {"cem": CEM, "mppi": MPPI}


@dataclass(frozen=True)
class Task:
    """Everything needed to plan in, and learn, one environment.

    Attributes:
        name: the environment's name (e.g. a Gymnasium id).
        system: the system of this project whose (q, p) the environment's states are.
        make_env: a fresh environment.
        cost: the planning cost (minus the environment's reward, where it has one).
        make_true_rollout: the environment's exact dynamics as a planner's rollout (the ceiling).
        horizon: planning horizon that this task needs.
        planner_options: per planner name, options that override the planner's own defaults.
        model_options: per model kind, config overrides for models learned from this environment
            (e.g. the integrator that matches the environment's own discrete update).
        angular: the states' q are angles (episodes are unwrapped before training on them).
    """

    name: str
    system: System
    make_env: Callable[[], Env]
    cost: CostFn
    make_true_rollout: Callable[[], Rollout]
    horizon: int
    planner_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    model_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    angular: bool = False

    def planner(self, kind: str = "cem", seed: int = 0, **overrides: Any) -> Planner:
        """A planner for this task: its bounds, its horizon and settings, then `overrides`."""
        try:
            cls = PLANNERS[kind]
        except KeyError:
            raise ValueError(f"unknown planner {kind!r}; choose one of {', '.join(PLANNERS)}") from None
        bound = float(self.system.action_bound)
        options = {"horizon": self.horizon, **self.planner_options.get(kind, {}), **overrides}
        return cls(low=[-bound] * self.system.action_dim, high=[bound] * self.system.action_dim, seed=seed, **options)


def _registry() -> dict[str, Callable[[], Task]]:
    from hwm_studio.planning.pendulum_v1 import ENV_ID, pendulum_v1_task

    return {ENV_ID: pendulum_v1_task}


def task_names() -> list[str]:
    return list(_registry())


def get_task(name: str) -> Task:
    """The task of an environment name; a clear error for names without one."""
    makers = _registry()
    if name not in makers:
        raise ValueError(f"unknown environment {name!r}; planning supports: {', '.join(makers)}")
    return makers[name]()
