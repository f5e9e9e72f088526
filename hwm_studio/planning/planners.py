"""The planner contract: imagine many action sequences in one batched rollout, keep the best.

    plan(rollout, state, cost, horizon) -> PlanResult

`rollout(q0, p0, actions) -> (q, p, energy | None)` maps start states (N, E, D) and action
sequences (N, T, A) to predicted futures (N, T+1, E, D) (see `planning.rollouts`); the planner
never sees what computes them, so the same planner runs on a learned model or on true dynamics.
Planners keep a warm start between calls (the previous plan, shifted by one step, as MPC does);
`reset()` forgets it for a new episode. All sampling uses the planner's own torch.Generator on
the rollout's device, so a seeded planner gives the same plans on the same inputs, and nothing
inside the iteration loop reads values back to the host.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Protocol

import torch
from torch import Tensor

from hwm_studio.planning.costs import CostError, CostFn, check_callable, cost_values
from hwm_studio.state import PhaseState


class Rollout(Protocol):
    """Predicted futures of N start states under N action sequences."""

    def __call__(self, q0: Tensor, p0: Tensor, actions: Tensor) -> tuple[Tensor, Tensor, Tensor | None]: ...


@dataclass
class PlanResult:
    """What a planner chose, and what it considered in its last iteration (for drawing).

    actions:    (T, A) the chosen sequence; MPC applies actions[0]
    candidates: (N, T, A) the sequences of the last iteration
    q, p:       (N, T+1, E, D) their predicted futures
    energy:     (N, T+1) their energies, or None
    costs:      (N,) their costs (+inf where the rollout diverged)
    elites:     (K,) indices into candidates, best first
    iterations: iterations run
    """

    actions: Tensor
    candidates: Tensor
    q: Tensor
    p: Tensor
    energy: Tensor | None
    costs: Tensor
    elites: Tensor
    iterations: int

    def to(self, device: str | torch.device) -> PlanResult:
        """A copy with every tensor on `device` (the UI draws from cpu tensors)."""
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        return PlanResult(**{k: v.to(device) if isinstance(v, Tensor) else v for k, v in moved.items()})


def _bound(value: float | Sequence[float] | Tensor, name: str) -> Tensor:
    t = torch.as_tensor(value, dtype=torch.float64).reshape(-1)
    if t.numel() == 0 or not torch.isfinite(t).all():
        raise ValueError(f"action bound {name} must be finite numbers, got {value!r}")
    return t


class Planner(ABC):
    """Base of the sampling planners: action bounds, seeded sampling, warm start, cost checks.

    Args:
        low, high: action bounds, numbers or (A,) sequences; candidates are clipped to them.
        horizon: default planning horizon T (steps).
        seed: seed of the planner's generator (sampling is reproducible from it).
    """

    name: str = "planner"

    def __init__(
        self, low: float | Sequence[float], high: float | Sequence[float], horizon: int, seed: int = 0
    ) -> None:
        lo, hi = _bound(low, "low"), _bound(high, "high")
        lo, hi = torch.broadcast_tensors(lo, hi)
        if not (hi > lo).all():
            raise ValueError(f"action bounds need low < high, got low={lo.tolist()} high={hi.tolist()}")
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        self.low, self.high, self.horizon, self.seed = lo, hi, int(horizon), int(seed)
        self._generator: torch.Generator | None = None
        self._generator_device: torch.device | None = None
        self._previous: Tensor | None = None  # (T, A) last plan's mean, for the warm start

    def _set_sampling(self, candidates: int, elites: int, iterations: int) -> None:
        """Check and keep the sampling sizes every sampling planner has."""
        if not 1 <= elites <= candidates:
            raise ValueError(f"need 1 <= elites <= candidates, got elites={elites}, candidates={candidates}")
        if iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}")
        self.candidates, self.elites, self.iterations = int(candidates), int(elites), int(iterations)

    @property
    def action_dim(self) -> int:
        return self.low.numel()

    def reset(self, seed: int | None = None) -> None:
        """Forget the warm start (a new episode); re-seed the generator when `seed` is given."""
        self._previous = None
        if seed is not None:
            self.seed = int(seed)
            self._generator = None

    def plan(self, rollout: Rollout, state: PhaseState, cost: CostFn, horizon: int | None = None) -> PlanResult:
        """Choose an action sequence from `state` (batch 1, (1, E, D)) for `horizon` steps."""
        check_callable(cost)
        if state.batch_size != 1:
            raise ValueError(f"plan from one state (batch 1), got batch {state.batch_size}")
        horizon = self.horizon if horizon is None else int(horizon)
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        device = torch.device(getattr(rollout, "device", None) or state.device)
        dtype = getattr(rollout, "dtype", None) or state.dtype
        if self._generator is None or self._generator_device != device:  # seeded where it samples
            self._generator = torch.Generator(device=device).manual_seed(self.seed)
            self._generator_device = device
        low, high = self.low.to(device, dtype), self.high.to(device, dtype)
        warm = self._warm_start(horizon, low, high)
        evaluate = _Evaluator(rollout, state.to(device, dtype), cost)
        result = self._optimise(evaluate, warm, low, high)
        evaluate.raise_if_bad()  # the one host sync: after every iteration ran
        return result

    def _warm_start(self, horizon: int, low: Tensor, high: Tensor) -> Tensor:
        """The previous plan shifted one step left, its last step at the bounds' midpoint: (T, A)."""
        mid = 0.5 * (low + high)
        mean = mid.expand(horizon, -1).clone()
        prev = self._previous
        if prev is not None and prev.shape == mean.shape and prev.device == mean.device:
            mean[:-1] = prev[1:].to(mean.dtype)
        return mean

    def _sample(self, mean: Tensor, std: Tensor, n: int, low: Tensor, high: Tensor) -> Tensor:
        """n Gaussian sequences around mean (T, A) with std (T, A), clipped to the bounds: (n, T, A)."""
        noise = torch.randn((n, *mean.shape), generator=self._generator, device=mean.device, dtype=mean.dtype)
        return torch.maximum(torch.minimum(mean + std * noise, high), low)

    @abstractmethod
    def _optimise(self, evaluate: _Evaluator, mean: Tensor, low: Tensor, high: Tensor) -> PlanResult:
        """The planner's iterations from the warm-start mean (T, A)."""


class _Evaluator:
    """Rolls candidates out from one state and scores them, keeping the checks on the device.

    A candidate whose predicted future is not finite (a learned model can blow up far from its
    data) costs +inf and simply loses; a cost that is not finite on a finite future is the cost's
    fault and raises CostError, as does a rollout that diverges for every candidate.
    """

    def __init__(self, rollout: Rollout, state: PhaseState, cost: CostFn) -> None:
        self.rollout, self.state, self.cost = rollout, state, cost
        self.cost_fault: Tensor | None = None  # device flags, read once at the end
        self.all_diverged: Tensor | None = None

    def __call__(self, actions: Tensor) -> tuple[Tensor, Tensor, Tensor | None, Tensor]:
        """actions (N, T, A) -> q, p (N, T+1, E, D), energy (N, T+1) | None, costs (N,)."""
        n = actions.shape[0]
        q0 = self.state.q.expand(n, -1, -1)  # (N, E, D)
        p0 = self.state.p.expand(n, -1, -1)
        q, p, energy = self.rollout(q0, p0, actions)
        expect = (n, actions.shape[1] + 1, *q0.shape[1:])
        if q.shape != expect or p.shape != expect:
            raise ValueError(f"the rollout returned q {tuple(q.shape)}, p {tuple(p.shape)}; expected {expect}")
        c = cost_values(self.cost, q, p, actions, energy, check_finite=False)
        future_ok = torch.isfinite(q).flatten(1).all(1) & torch.isfinite(p).flatten(1).all(1)  # (N,)
        cost_ok = torch.isfinite(c)
        fault = (future_ok & ~cost_ok).any()
        none_ok = ~future_ok.any()
        self.cost_fault = fault if self.cost_fault is None else self.cost_fault | fault
        self.all_diverged = none_ok if self.all_diverged is None else self.all_diverged | none_ok
        return q, p, energy, torch.where(future_ok & cost_ok, c, torch.full_like(c, torch.inf))

    def raise_if_bad(self) -> None:
        if self.cost_fault is not None and bool(self.cost_fault):
            raise CostError(
                f"the cost {getattr(self.cost, '__name__', None) or self.cost!r} gave NaN or infinite values "
                "on finite predicted trajectories: costs must be finite for every candidate"
            )
        if self.all_diverged is not None and bool(self.all_diverged):
            raise ValueError("the rollout gave non-finite states for every candidate (the model diverged)")


def sequence_cost(rollout: Rollout, state: PhaseState, actions: Tensor, cost: CostFn) -> float:
    """The cost of one action sequence (T, A) from one state (batch 1) under `rollout`.

    Under the model the plan was made in, it is what the planner imagines the plan costs; under the
    true dynamics, what the plan earns. For CEM the chosen plan (the refit mean) is not one of the
    candidates, so its cost is not `PlanResult.costs[elites[0]]` (the best candidate's): this
    rolls it out.
    """
    if state.batch_size != 1:
        raise ValueError(f"a sequence's cost is taken from one state (batch 1), got batch {state.batch_size}")
    if actions.dim() != 2:
        raise ValueError(f"actions must be one sequence (T, A), got shape {tuple(actions.shape)}")
    device = torch.device(getattr(rollout, "device", None) or state.device)
    dtype = getattr(rollout, "dtype", None) or state.dtype
    acts = actions.to(device, dtype)[None]  # (1, T, A)
    q, p, energy = rollout(state.q.to(device, dtype), state.p.to(device, dtype), acts)
    return float(cost_values(cost, q, p, acts, energy)[0])


def select_elites(costs: Tensor, k: int) -> Tensor:
    """Indices of the k lowest costs, best first: (k,)."""
    return torch.topk(costs, k, largest=False, sorted=True).indices
