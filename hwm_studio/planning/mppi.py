"""MPPI as TD-MPC2 runs it (Hansen et al. 2024): CEM's loop with a softmax-weighted refit.

Per iteration: sample N sequences around (mean, std), roll them out in one batch, keep the K
cheapest, weight them by exp(temperature * (value - best value)) with value = -cost, and refit
mean and std as weighted moments (std kept within [min_std, max_std]). The executed plan is one
elite drawn by those weights (TD-MPC2's evaluation mode; no extra exploration noise). The mean
starts from the previous plan's mean shifted by one step, the std at max_std. TD-MPC2's defaults:
512 samples, 64 elites, temperature 0.5, 6 iterations, std in [0.05, 2] for actions in [-1, 1]
(scaled here by half the bound range). TD-MPC2's temperature multiplies returns in its reward
units, so it is as sensitive to the cost's scale as it is there.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from hwm_studio.planning.planners import Planner, PlanResult, _Evaluator, select_elites


class MPPI(Planner):
    """Model-predictive path integral control, TD-MPC2 variant.

    Args:
        candidates: sequences sampled per iteration (N; TD-MPC2's `num_samples`).
        elites: sequences weighted into the refit (K <= N).
        iterations: refits per plan.
        temperature: inverse temperature of the softmax over elite values.
        min_std, max_std: std bounds in units of half the bound range (TD-MPC2: 0.05 and 2).
    """

    name = "mppi"

    def __init__(
        self,
        low: float | Sequence[float],
        high: float | Sequence[float],
        horizon: int = 12,
        candidates: int = 512,
        elites: int = 64,
        iterations: int = 6,
        temperature: float = 0.5,
        min_std: float = 0.05,
        max_std: float = 2.0,
        seed: int = 0,
    ) -> None:
        super().__init__(low, high, horizon, seed)
        self._set_sampling(candidates, elites, iterations)
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not 0 < min_std <= max_std:
            raise ValueError(f"need 0 < min_std <= max_std, got {min_std}, {max_std}")
        self.temperature = float(temperature)
        half = 0.5 * (self.high - self.low)  # (A,)
        self.min_std, self.max_std = min_std * half, max_std * half

    def _optimise(self, evaluate: _Evaluator, mean: Tensor, low: Tensor, high: Tensor) -> PlanResult:
        min_std, max_std = self.min_std.to(mean), self.max_std.to(mean)
        std = max_std.expand_as(mean).clone()  # (T, A)
        for _ in range(self.iterations):
            # sample around the current distribution, within the bounds
            actions = self._sample(mean, std, self.candidates, low, high)  # (N, T, A)
            # imagine every future at once and score it
            q, p, energy, costs = evaluate(actions)
            # the K best, weighted by a softmax of their values (value = -cost)
            elite = select_elites(costs, self.elites)  # (K,)
            value = -costs[elite]  # (K,) best first
            score = torch.exp(self.temperature * (value - value[0]))
            score = torch.nan_to_num(score, nan=0.0)  # elites that diverged (-inf - -inf) weigh nothing
            score = score / (score.sum() + 1e-9)
            best = actions[elite]  # (K, T, A)
            # refit mean and std as weighted moments
            w = score[:, None, None]
            mean = (w * best).sum(dim=0)
            std = (w * (best - mean) ** 2).sum(dim=0).sqrt()
            std = torch.maximum(torch.minimum(std, max_std), min_std)
        self._previous = mean
        # execute one elite, drawn by its weight (reproducible: the planner's generator)
        pick = torch.multinomial(score + 1e-12, 1, generator=self._generator)  # (1,)
        plan = best.index_select(0, pick)[0]  # (T, A), no host sync
        return PlanResult(plan, actions, q, p, energy, costs, elite, self.iterations)
