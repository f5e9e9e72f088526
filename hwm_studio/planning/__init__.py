"""Planning with world models: costs, sampling planners (CEM, MPPI), MPC, environments.

Dependencies point one way: planning uses models, systems and training, never the UI.
"""

from __future__ import annotations

from hwm_studio.planning.cem import CEM
from hwm_studio.planning.collect import CollectConfig, LearnResult, learn_from_env
from hwm_studio.planning.costs import (
    ActionEffort,
    Cost,
    CostError,
    EnergyShaping,
    PendulumV1Reward,
    ScaledCost,
    SumCost,
    SwingUp,
    TargetState,
    cost_values,
    wrap_angle,
)
from hwm_studio.planning.envs import Env, GymnasiumEnv, Step, SystemEnv
from hwm_studio.planning.mpc import Episode, MPCStep, run_episodes, run_mpc
from hwm_studio.planning.mppi import MPPI
from hwm_studio.planning.planners import Planner, PlanResult, Rollout, sequence_cost
from hwm_studio.planning.rollouts import model_rollout, system_rollout, true_rollout, true_step
from hwm_studio.planning.tasks import PLANNERS, Task, get_task, task_names

__all__ = [
    "CEM",
    "MPPI",
    "PLANNERS",
    "ActionEffort",
    "CollectConfig",
    "Cost",
    "CostError",
    "EnergyShaping",
    "Env",
    "Episode",
    "GymnasiumEnv",
    "LearnResult",
    "MPCStep",
    "PendulumV1Reward",
    "PlanResult",
    "Planner",
    "Rollout",
    "ScaledCost",
    "Step",
    "SumCost",
    "SwingUp",
    "SystemEnv",
    "TargetState",
    "Task",
    "cost_values",
    "get_task",
    "learn_from_env",
    "model_rollout",
    "run_episodes",
    "run_mpc",
    "sequence_cost",
    "system_rollout",
    "task_names",
    "true_rollout",
    "true_step",
    "wrap_angle",
]
