"""Named costs for a project system, built from the system's own physics (what the studio offers).

    cost, note = preset_cost("swing-up", system, effort=1e-3)

- "swing-up": upright and still, for a single angular body; "upright" is where the system's true
  potential is highest (q = pi for `pendulum`, 0 for `gym_pendulum`), found on a grid, not assumed.
- "reach rest": every coordinate to q = 0 with p = 0.
- "energy shaping": drive the rollout's own H (the model's learned H when planning in a model) to
  a target energy; by default the true energy of resting upright (the swing-up's energy), or of
  resting at q = 0 for other systems.
Each adds the action effort `effort * sum u^2`.
"""

from __future__ import annotations

import math

import torch

from hwm_studio.planning.costs import ActionEffort, CostFn, EnergyShaping, SwingUp, TargetState
from hwm_studio.state import PhaseState
from hwm_studio.systems.base import System

PRESETS = ("swing-up", "reach rest", "energy shaping")


def can_swing_up(system: System) -> bool:
    """A single body on an angle: the swing-up cost applies."""
    return system.n_entities == 1 and system.dim == 1 and system.angular


def upright_angle(system: System) -> float:
    """The angle of the system's highest potential at rest (its unstable equilibrium)."""
    q = torch.linspace(-math.pi, math.pi, 721, dtype=torch.float64).reshape(-1, 1, 1)
    h = system.energy(PhaseState(q, torch.zeros_like(q)))  # (N,)
    return float(q.flatten()[int(torch.argmax(h))])


def upright_energy(system: System) -> float:
    """The true energy of resting upright."""
    q = torch.full((1, 1, 1), upright_angle(system), dtype=torch.float64)
    return float(system.energy(PhaseState(q, torch.zeros_like(q)))[0])


def default_target_energy(system: System) -> float:
    """Energy shaping's default target: resting upright (a swing-up), else resting at q = 0."""
    if can_swing_up(system):
        return upright_energy(system)
    zero = torch.zeros(1, system.n_entities, system.dim, dtype=torch.float64)
    return float(system.energy(PhaseState(zero, zero))[0])


def preset_names(system: System) -> list[str]:
    """The presets that apply to `system`."""
    return list(PRESETS) if can_swing_up(system) else ["reach rest", "energy shaping"]


def preset_cost(
    name: str, system: System, effort: float = 1e-3, target_energy: float | None = None
) -> tuple[CostFn, str]:
    """The named cost for `system` plus the action effort, and a one-line description of it."""
    if name not in preset_names(system):
        raise ValueError(f"cost {name!r} does not apply to {system.name}; choose one of {preset_names(system)}")
    if effort < 0:
        raise ValueError(f"effort weight must be >= 0, got {effort}")
    if name == "swing-up":
        up = upright_angle(system)
        cost: CostFn = SwingUp(q_up=up, velocity_weight=0.1)
        note = f"upright (q = {up:.3g}) and still: sum of (1 - cos(q - {up:.3g})) + 0.1 p²"
    elif name == "reach rest":
        zero = [0.0] * system.dim
        cost = TargetState(q=zero, p=zero, angular=system.angular)
        note = "every coordinate to q = 0, p = 0: sum of squared distances"
    else:
        target = default_target_energy(system) if target_energy is None else target_energy
        cost = EnergyShaping(target=float(target))
        note = f"the rollout's own H to {float(target):.4g}: sum of (H - target)²"
    if effort > 0:
        cost = cost + ActionEffort(effort)
        note += f" + {effort:g} u²"
    return cost, note
