"""Ground-truth systems and the registry that turns a name into one."""

from __future__ import annotations

from typing import Any

from hwm_studio.systems.base import PIVOT, Param, System
from hwm_studio.systems.chain import Chain
from hwm_studio.systems.double_pendulum import DoublePendulum
from hwm_studio.systems.gym_pendulum import GymPendulum
from hwm_studio.systems.nbody import NBody
from hwm_studio.systems.pendulum import Pendulum
from hwm_studio.systems.spring import Spring

SYSTEMS: dict[str, type[System]] = {
    cls.name: cls for cls in (Spring, Pendulum, DoublePendulum, Chain, NBody, GymPendulum)
}

# Named presets: a registry name that is a system with some parameters fixed.
PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "two_body": ("nbody", {"n": 2, "radius_low": 0.5, "radius_high": 1.0}),
    "three_body": ("nbody", {"n": 3}),
}


def system_names() -> list[str]:
    return [*SYSTEMS, *PRESETS]


def get_system(name: str, **params: Any) -> System:
    """Build a system by registry name (or preset), with parameters overriding the defaults."""
    if name in PRESETS:
        base, fixed = PRESETS[name]
        return SYSTEMS[base](**{**fixed, **params})
    try:
        cls = SYSTEMS[name]
    except KeyError:
        raise ValueError(f"unknown system {name!r}; choose one of {', '.join(system_names())}") from None
    return cls(**params)


__all__ = [
    "PIVOT",
    "PRESETS",
    "SYSTEMS",
    "Chain",
    "DoublePendulum",
    "GymPendulum",
    "NBody",
    "Param",
    "Pendulum",
    "Spring",
    "System",
    "get_system",
    "system_names",
]
