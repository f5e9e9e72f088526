"""Costs over predicted trajectories: small objects that add and scale like numbers.

Every cost is called as `cost(q, p, actions, energy)` on a batch of N predicted futures:
    q, p      (N, T+1, E, D)   index 0 is the current state (the same for every candidate)
    actions   (N, T, A)        actions[:, t] acts from state t to t+1
    energy    (N, T+1) | None  the model's (or the true) H along each future, when known
and returns the total cost of each future, (N,). Lower is better. Any callable with that signature
is a cost; `Cost` objects add (`a + b`) and scale (`0.1 * a`) so costs compose without lambdas.
`cost_values` is the one place a cost is called by the planners, so a cost returning the wrong
shape gets a message naming the cost and the shape, not an index error deep in a planner.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

CostFn = Callable[[Tensor, Tensor, Tensor, "Tensor | None"], Tensor]


class CostError(ValueError):
    """A cost that cannot be used: not callable, wrong output shape, or non-finite values."""


def wrap_angle(x: Tensor) -> Tensor:
    """Angles to [-pi, pi): gymnasium's `angle_normalize`, differentiable and exact at 0."""
    return torch.remainder(x + math.pi, 2 * math.pi) - math.pi


def _as_tensor(value: float | Sequence[float] | Tensor, like: Tensor) -> Tensor:
    """A target or weight broadcast over (..., E, D) in the trajectory's dtype and device."""
    return torch.as_tensor(value, dtype=like.dtype, device=like.device)


class Cost(ABC):
    """A composable cost. Subclasses implement `__call__`; `needs_energy` says they read `energy`."""

    needs_energy: bool = False

    @abstractmethod
    def __call__(self, q: Tensor, p: Tensor, actions: Tensor, energy: Tensor | None) -> Tensor:
        """Total cost of each of N futures, (N,)."""

    def __add__(self, other: CostFn) -> Cost:
        return SumCost([self, other])

    def __radd__(self, other: CostFn | int) -> Cost:
        if isinstance(other, int) and other == 0:  # sum([a, b]) starts from 0
            return self
        return SumCost([other, self])  # type: ignore[list-item]

    def __mul__(self, weight: float) -> Cost:
        return ScaledCost(self, weight)

    __rmul__ = __mul__


class SumCost(Cost):
    """The sum of several costs (user callables included)."""

    def __init__(self, parts: Sequence[CostFn]) -> None:
        flat: list[CostFn] = []
        for part in parts:
            check_callable(part)
            flat.extend(part.parts if isinstance(part, SumCost) else [part])
        self.parts = flat
        self.needs_energy = any(getattr(c, "needs_energy", False) for c in flat)

    def __call__(self, q: Tensor, p: Tensor, actions: Tensor, energy: Tensor | None) -> Tensor:
        return sum(cost_values(c, q, p, actions, energy, check_finite=False) for c in self.parts)  # type: ignore[return-value]

    def __repr__(self) -> str:
        return " + ".join(map(repr, self.parts))


class ScaledCost(Cost):
    """weight * cost."""

    def __init__(self, cost: CostFn, weight: float) -> None:
        check_callable(cost)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
            raise CostError(f"a cost can be scaled by a finite number only, got {weight!r}")
        self.cost, self.weight = cost, float(weight)
        self.needs_energy = getattr(cost, "needs_energy", False)

    def __call__(self, q: Tensor, p: Tensor, actions: Tensor, energy: Tensor | None) -> Tensor:
        return self.weight * cost_values(self.cost, q, p, actions, energy, check_finite=False)

    def __repr__(self) -> str:
        return f"{self.weight:g} * {self.cost!r}"


class TargetState(Cost):
    """Reach a target: sum over t = 1..T of q_weight |q - q*|^2 + p_weight |p - p*|^2.

    `q`/`p` targets broadcast over (E, D) (a number, or a nested list (E, D)); None leaves that
    part out. With `angular`, q differences are wrapped to [-pi, pi), so a pendulum one turn away
    is at its target. `terminal_weight` adds that multiple of the last state's error, which keeps
    a short horizon from settling for "close to the target soon".
    """

    def __init__(
        self,
        q: float | Sequence | None = 0.0,
        p: float | Sequence | None = 0.0,
        q_weight: float = 1.0,
        p_weight: float = 0.1,
        angular: bool = False,
        terminal_weight: float = 0.0,
    ) -> None:
        self.q, self.p = q, p
        self.q_weight, self.p_weight = q_weight, p_weight
        self.angular, self.terminal_weight = angular, terminal_weight

    def __call__(self, q: Tensor, p: Tensor, actions: Tensor, energy: Tensor | None) -> Tensor:
        err = q.new_zeros(q.shape[:2])  # (N, T+1)
        if self.q is not None:
            d = q - _as_tensor(self.q, q)
            if self.angular:
                d = wrap_angle(d)
            err = err + self.q_weight * (d * d).sum(dim=(2, 3))
        if self.p is not None:
            d = p - _as_tensor(self.p, p)
            err = err + self.p_weight * (d * d).sum(dim=(2, 3))
        return err[:, 1:].sum(dim=1) + self.terminal_weight * err[:, -1]

    def __repr__(self) -> str:
        return f"TargetState(q={self.q}, p={self.p}, q_weight={self.q_weight}, p_weight={self.p_weight})"


class SwingUp(Cost):
    """Upright and still: sum over t = 1..T of (1 - cos(q - q_up)) + weight * (p / inertia)^2.

    1 - cos is zero upright, 2 hanging down and smooth everywhere (no wrap to get wrong). Pass
    `inertia` to weigh angular velocity (p / I); leave it at 1 to weigh momentum. q_up is 0 in
    Pendulum-v1's convention and pi for this project's `pendulum` (q = 0 hanging down).
    """

    def __init__(self, q_up: float = 0.0, velocity_weight: float = 0.1, inertia: float = 1.0) -> None:
        if inertia <= 0:
            raise CostError(f"inertia must be > 0, got {inertia}")
        self.q_up, self.velocity_weight, self.inertia = q_up, velocity_weight, inertia

    def __call__(self, q: Tensor, p: Tensor, actions: Tensor, energy: Tensor | None) -> Tensor:
        v = p[:, 1:] / self.inertia  # (N, T, E, D)
        per = (1 - torch.cos(q[:, 1:] - self.q_up)) + self.velocity_weight * v * v
        return per.sum(dim=(1, 2, 3))

    def __repr__(self) -> str:
        return f"SwingUp(q_up={self.q_up}, velocity_weight={self.velocity_weight}, inertia={self.inertia})"


class EnergyShaping(Cost):
    """Drive H to a target energy: weight * sum over t = 1..T of (H_t - target)^2.

    Reads the rollout's energies, so it plans with the model's own learned H (or the true H
    under true dynamics): the classic energy-pumping swing-up, without knowing the physics.
    """

    needs_energy = True

    def __init__(self, target: float, weight: float = 1.0) -> None:
        self.target, self.weight = float(target), float(weight)

    def __call__(self, q: Tensor, p: Tensor, actions: Tensor, energy: Tensor | None) -> Tensor:
        if energy is None:
            raise CostError(
                "EnergyShaping needs the rollout's energies, but this rollout gives none "
                "(a model without an energy, or a rollout built without energy)"
            )
        d = energy[:, 1:] - self.target
        return self.weight * (d * d).sum(dim=1)

    def __repr__(self) -> str:
        return f"EnergyShaping(target={self.target}, weight={self.weight})"


class ActionEffort(Cost):
    """weight * sum over t and action dims of u^2."""

    def __init__(self, weight: float = 1e-3) -> None:
        self.weight = float(weight)

    def __call__(self, q: Tensor, p: Tensor, actions: Tensor, energy: Tensor | None) -> Tensor:
        return self.weight * (actions * actions).sum(dim=(1, 2))

    def __repr__(self) -> str:
        return f"ActionEffort({self.weight})"


class PendulumV1Reward(Cost):
    """Minus gymnasium Pendulum-v1's return over the plan, exactly:

        sum_{t=0}^{T-1} angle_normalize(q_t)^2 + 0.1 qdot_t^2 + 0.001 u_t^2,   qdot = p / inertia

    The environment charges each step for the state it starts from and the action taken, so the
    last predicted state is not charged (t = 0, the current state, is the same for every candidate
    and does not change the ranking). inertia = m l^2 / 3 = 1/3 for the default rod.
    """

    def __init__(self, inertia: float = 1.0 / 3.0) -> None:
        if inertia <= 0:
            raise CostError(f"inertia must be > 0, got {inertia}")
        self.inertia = float(inertia)

    def __call__(self, q: Tensor, p: Tensor, actions: Tensor, energy: Tensor | None) -> Tensor:
        th = wrap_angle(q[:, :-1, 0, 0])  # (N, T)
        thdot = p[:, :-1, 0, 0] / self.inertia
        u = actions[..., 0]  # (N, T)
        return (th * th + 0.1 * thdot * thdot + 0.001 * u * u).sum(dim=1)

    def __repr__(self) -> str:
        return f"PendulumV1Reward(inertia={self.inertia:g})"


# --- validation --------------------------------------------------------------------------------
def check_callable(cost: object) -> None:
    """Fail early and clearly on something that is not a cost at all."""
    if not callable(cost):
        raise CostError(
            f"a cost must be callable as cost(q, p, actions, energy) -> (N,) costs, got {type(cost).__name__}"
        )


def _name(cost: object) -> str:
    return getattr(cost, "__name__", None) or repr(cost)


def cost_values(
    cost: CostFn, q: Tensor, p: Tensor, actions: Tensor, energy: Tensor | None, check_finite: bool = True
) -> Tensor:
    """Call `cost` and check its output is one real number per candidate, (N,).

    `check_finite` reads the values back to the host (a device sync); the planners skip it inside
    their iterations and check once at the end (`check_finite_costs`).
    """
    check_callable(cost)
    if getattr(cost, "needs_energy", False) and energy is None:
        raise CostError(f"the cost {_name(cost)} needs energies, but the rollout gives none")
    n = q.shape[0]
    out = cost(q, p, actions, energy)
    if not isinstance(out, Tensor):
        raise CostError(f"the cost {_name(cost)} returned {type(out).__name__}, expected a tensor of shape ({n},)")
    if out.shape != (n,):
        raise CostError(
            f"the cost {_name(cost)} returned shape {tuple(out.shape)}, expected ({n},): one total per candidate "
            "(sum over time and state dimensions inside the cost)"
        )
    if not out.is_floating_point():
        raise CostError(f"the cost {_name(cost)} returned dtype {out.dtype}, expected a floating-point tensor")
    if check_finite:
        check_finite_costs(cost, out)
    return out


def check_finite_costs(cost: object, values: Tensor) -> None:
    """Raise CostError if any value is NaN or infinite (one host sync)."""
    bad = ~torch.isfinite(values)
    n_bad = int(bad.sum())
    if n_bad:
        nan = int(torch.isnan(values).sum())
        raise CostError(
            f"the cost {_name(cost)} gave {n_bad} non-finite value(s) of {values.numel()} "
            f"({nan} NaN, {n_bad - nan} infinite): costs must be finite for every candidate"
        )
