"""Integrators, one per module, and the one registry that turns a name into an object."""

from __future__ import annotations

from hwm_studio.physics.integrators.base import Integrator, SplittingIntegrator
from hwm_studio.physics.integrators.discrete_gradient import DiscreteGradient
from hwm_studio.physics.integrators.implicit_midpoint import ImplicitMidpoint
from hwm_studio.physics.integrators.leapfrog import Leapfrog
from hwm_studio.physics.integrators.rk4 import RK4
from hwm_studio.physics.integrators.symplectic_euler import SymplecticEuler
from hwm_studio.physics.integrators.yoshida4 import Yoshida4

INTEGRATORS: dict[str, type[Integrator]] = {
    cls.name: cls for cls in (SymplecticEuler, Leapfrog, Yoshida4, ImplicitMidpoint, DiscreteGradient, RK4)
}


def get_integrator(name: str, **options: int) -> Integrator:
    """Build an integrator from its registry name (the CLI and UI are the only callers)."""
    try:
        cls = INTEGRATORS[name]
    except KeyError:
        raise ValueError(f"unknown integrator {name!r}; choose one of {', '.join(INTEGRATORS)}") from None
    return cls(**options)


__all__ = [
    "INTEGRATORS",
    "RK4",
    "DiscreteGradient",
    "ImplicitMidpoint",
    "Integrator",
    "Leapfrog",
    "SplittingIntegrator",
    "SymplecticEuler",
    "Yoshida4",
    "get_integrator",
]
