"""The cross-entropy method (PlaNet, Hafner et al. 2019) over open-loop action sequences.

Each iteration samples N sequences from a diagonal Gaussian over (T, A), rolls all of them out
in one batch, and refits the Gaussian's mean and standard deviation to the K cheapest (the
elites). The chosen plan is the final mean, clipped to the bounds. Defaults are PlaNet's
(horizon 12, 1000 candidates, top 100, 10 iterations; PlaNet plans over action-repeat-8 steps,
so tasks at the raw control rate need longer horizons: about 30 for Pendulum-v1). The mean starts
from the previous plan shifted by one step (warm start); the std restarts at `init_std`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from hwm_studio.planning.planners import Planner, PlanResult, _Evaluator, select_elites


class CEM(Planner):
    """Cross-entropy method.

    Args:
        candidates: sequences sampled per iteration (N).
        elites: sequences the Gaussian is refit on (K <= N).
        iterations: refits per plan.
        init_std: initial std per action dim (default: half the bound range, PlaNet's std 1 on [-1, 1]).
        min_std: floor on the refit std, so the search never collapses to one sequence too early.
    """

    name = "cem"

    def __init__(
        self,
        low: float | Sequence[float],
        high: float | Sequence[float],
        horizon: int = 12,
        candidates: int = 1000,
        elites: int = 100,
        iterations: int = 10,
        init_std: float | Sequence[float] | None = None,
        min_std: float = 0.0,
        seed: int = 0,
    ) -> None:
        super().__init__(low, high, horizon, seed)
        self._set_sampling(candidates, elites, iterations)
        std = 0.5 * (self.high - self.low) if init_std is None else torch.as_tensor(init_std, dtype=torch.float64)
        if not (std > 0).all():
            raise ValueError(f"init_std must be > 0, got {init_std}")
        self.init_std = std.reshape(-1).expand(self.action_dim).clone()
        self.min_std = float(min_std)

    def _optimise(self, evaluate: _Evaluator, mean: Tensor, low: Tensor, high: Tensor) -> PlanResult:
        std = self.init_std.to(mean).expand_as(mean).clone()  # (T, A)
        for _ in range(self.iterations):
            # sample N sequences around the current Gaussian, within the bounds
            actions = self._sample(mean, std, self.candidates, low, high)  # (N, T, A)
            # imagine every future at once and score it
            q, p, energy, costs = evaluate(actions)
            # refit on the K cheapest
            elite = select_elites(costs, self.elites)  # (K,)
            best = actions[elite]  # (K, T, A)
            mean = best.mean(dim=0)
            std = best.std(dim=0, unbiased=False).clamp_min(self.min_std)
        self._previous = mean
        plan = torch.maximum(torch.minimum(mean, high), low)
        return PlanResult(plan, actions, q, p, energy, costs, elite, self.iterations)
