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


def known_as(name: str | None, params: dict[str, Any] | None = None) -> str | None:
    """The registry name data of system `name` with `params` is known by: the preset whose base is
    `name` and whose fixed parameters all hold in `params` (nbody with n = 3 is the three_body), else
    `name` itself. How the studio matches a run or a data file to the system it shows."""
    params = params or {}
    for preset, (base, fixed) in PRESETS.items():
        if base == name and all(k in params and float(params[k]) == float(v) for k, v in fixed.items()):
            return preset
    return name


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
    "known_as",
    "system_names",
]
