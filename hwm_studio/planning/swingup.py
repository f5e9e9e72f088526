"""The pendulum swing-up of lesson 06 as settings that name everything a run depends on.

    settings = SwingUpSettings(velocity_weight=0.1)
    cost = settings.cost(target_energy)           # target: the model's own H at rest upright
    planner = settings.planner(bound)
    shaped, unshaped = energy_ablation(settings)  # the same settings, energy term on and off
    differences(shaped, unshaped)                 # {"energy_weight": (0.003, 0.0)}: one setting

The cost of an imagined future of T steps (`pendulum`: q = 0 hanging, q = pi upright):

    J = sum_{t=1..T} w_E (H(z_t) - H_up)^2 + (1 - cos(q_t - pi)) + w_v p_t^2 + w_u u_{t-1}^2

H is the rollout's own energy (the model's learned H when planning in a model). An ablation is
only evidence about one term when the two runs differ in that term alone: `differences` says
exactly what two settings change.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

from torch import Tensor

from hwm_studio.planning.costs import ActionEffort, Cost, EnergyShaping, SwingUp
from hwm_studio.planning.planners import Planner, Rollout, sequence_cost
from hwm_studio.planning.tasks import PLANNERS
from hwm_studio.state import PhaseState
from hwm_studio.systems.base import System

Q_UP = math.pi  # upright, in the `pendulum` system's angle


@dataclass(frozen=True)
class SwingUpSettings:
    """Everything one swing-up run depends on, besides the model and the start state.

    energy_weight: w_E, weight of EnergyShaping (0 leaves the term out; it needs a rollout with energies).
    velocity_weight: w_v, SwingUp's weight on p^2 (how much "upright" also means "still").
    effort: w_u, ActionEffort's weight on u^2.
    planner, horizon, candidates, iterations, seed: the sampling planner ("cem" or "mppi") and its budget;
    elites are each method's default share (CEM 1/10, PlaNet; MPPI 1/8, TD-MPC2).
    """

    energy_weight: float = 0.003
    velocity_weight: float = 0.01
    effort: float = 1e-3
    planner: str = "cem"
    horizon: int = 30
    candidates: int = 128
    iterations: int = 3
    seed: int = 0

    def cost(self, target_energy: float | None = None) -> Cost:
        """J above; `target_energy` (H_up, in the rollout's own energy) is needed when energy_weight > 0."""
        parts: list[Cost] = []
        if self.energy_weight:
            if target_energy is None:
                raise ValueError("energy_weight > 0 needs the target energy (the rollout's H at rest upright)")
            parts.append(EnergyShaping(target_energy, weight=self.energy_weight))
        parts.append(SwingUp(q_up=Q_UP, velocity_weight=self.velocity_weight))
        if self.effort:
            parts.append(ActionEffort(self.effort))
        return sum(parts)  # type: ignore[return-value]

    def planner_for(self, bound: float) -> Planner:
        """A fresh planner over torques in [-bound, bound]."""
        if self.planner not in PLANNERS:
            raise ValueError(f"unknown planner {self.planner!r}; choose one of {', '.join(PLANNERS)}")
        share = 10 if self.planner == "cem" else 8
        return PLANNERS[self.planner](low=[-bound], high=[bound], horizon=self.horizon, candidates=self.candidates,
                                      elites=max(1, self.candidates // share), iterations=self.iterations,
                                      seed=self.seed)  # fmt: skip


def differences(a: SwingUpSettings, b: SwingUpSettings) -> dict[str, tuple[Any, Any]]:
    """The settings in which a and b differ: name -> (a's value, b's value)."""
    da, db = asdict(a), asdict(b)
    return {k: (da[k], db[k]) for k in da if da[k] != db[k]}


def energy_ablation(settings: SwingUpSettings, weight: float = 0.003) -> tuple[SwingUpSettings, SwingUpSettings]:
    """(with the energy term at `weight`, without it), everything else as in `settings`."""
    return replace(settings, energy_weight=weight), replace(settings, energy_weight=0.0)


def small_swing_slope(settings: SwingUpSettings, system: System) -> float:
    """How the average cost per step changes with a small swing of amplitude A about hanging still,
    per unit A^2, under the true pendulum's physics (m, l, g; omega^2 = g / l):

        angle term  2 - A^2 / 4,   velocity term  w_v (m l^2 omega A)^2 / 2,
        energy term w_E (H - H_up)^2 with H = m g l A^2 / 2 and H_up = 2 m g l

    so the slope is w_v (m l^2)^2 omega^2 / 2 - 1/4 - 2 w_E (m g l)^2. Positive: every small swing
    looks worse than hanging still, a local minimum a short horizon cannot see past."""
    m, l, g = (system.params[k] for k in ("m", "l", "g"))
    omega2 = g / l
    return (settings.velocity_weight * (m * l * l) ** 2 * omega2 / 2 - 0.25
            - 2 * settings.energy_weight * (m * g * l) ** 2)  # fmt: skip


def imagined_and_achieved(
    model: Rollout, truth: Rollout, state: PhaseState, actions: Tensor, cost: Cost
) -> tuple[float, float]:
    """The return (minus the cost) that a plan's actions (T, A) from `state` have in the model the
    planner imagined them in, and on the true dynamics: what the planner expected, what it gets.
    The cost must not read energies: a learned H and the true H differ by a constant (and more)."""
    if getattr(cost, "needs_energy", False):
        raise ValueError("compare imagined and achieved returns with a cost that reads states only: a learned "
                         "energy and the true one are not on the same scale")  # fmt: skip
    return -sequence_cost(model, state, actions, cost), -sequence_cost(truth, state, actions, cost)
