"""The model configuration: everything needed to rebuild a model exactly (stored in checkpoints).

One dataclass for every model kind keeps checkpoints and the CLI uniform; the fields under
"HWM structure" are read by the Hamiltonian world model only.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

from hwm_studio.data.format import TrajectoryData
from hwm_studio.metrics import scale

if TYPE_CHECKING:
    from hwm_studio.systems.base import System

# L1 weight on each pair's force (per step, in the data's momentum scale). Measured on the wall
# chain (800 steps): 1e-3 left the uncoupled end pair at 0.48 of the real springs' force, 1e-2 at
# 0.06 with the same one-step error, 3e-2 at 0.07 with a 3.5x worse one-step error
COUPLING_SPARSITY = 1e-2


# What a config read from a file may ask for: checked before a model is built, so a header saying
# hidden = 10**9 is refused instead of allocating (the largest shipped model uses hidden 128).
SIZE_LIMITS = {
    "n_entities": (1, 256), "dim": (1, 16), "action_dim": (0, 64), "hidden": (1, 4096), "depth": (1, 16),
    "frame_size": (0, 1024), "context_frames": (0, 64), "saliency_pool": (1, 64), "sprite_cells": (0, 256),
}  # fmt: skip


def _check_sizes(d: dict[str, Any]) -> None:
    for name, (lo, hi) in SIZE_LIMITS.items():
        if name not in d:
            continue
        v = d[name]
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise ValueError(f"model config field {name} must be an integer in [{lo}, {hi}], got {v!r}")
    dt = d.get("dt")
    if isinstance(dt, bool) or not isinstance(dt, (int, float)) or not math.isfinite(dt) or dt <= 0:
        raise ValueError(f"model config field dt must be a finite number > 0, got {dt!r}")
    for name in ("q_scale", "p_scale"):
        v = d.get(name, [1.0])
        if not isinstance(v, list) or len(v) > 16:
            raise ValueError(f"model config field {name} must be a short list of numbers, got {v!r}")


@dataclass
class ModelConfig:
    kind: str  # 'hwm' | 'mlp' | 'node' | 'hnn' | 'hwm-pixels' | 'mlp-pixels'
    n_entities: int
    dim: int
    action_dim: int
    dt: float
    observation: str = "canonical"  # coder: 'canonical' | 'angle' | 'mlp'
    integrator: str = "leapfrog"
    hidden: int = 64
    depth: int = 2
    activation: str = "tanh"
    q_scale: list[float] = field(default_factory=lambda: [1.0])  # (D,) typical size of q
    p_scale: list[float] = field(default_factory=lambda: [1.0])  # (D,) typical size of p
    obs_scale: list[list[float]] = field(default_factory=list)  # (E, O) loss normalisation
    system: str | None = None  # the training data's system, when it names one
    system_params: dict[str, float] = field(default_factory=dict)
    # --- HWM structure ---
    angular: bool = False  # q are angles: energies see (cos q, sin q)
    identical_entities: bool = True  # share weights with no per-entity embedding
    pairs: list[list[int]] | None = None  # interacting entity pairs (None: all pairs)
    per_pair: bool = False  # each pair its own interaction (embedding and gate), so pairs may differ or vanish
    pair_features: str = "symmetrised"  # 'even' (one evaluation per pair) | 'symmetrised' (models saved before it)
    coupling_sparsity: float = 0.0  # weight of the L1 pressure on per-pair forces (unused pairs go to zero)
    kinetic: str = "separable"  # 'separable' (constant mass) | 'configuration' (M(q))
    dissipation: str = "constant"  # 'none' | 'constant' | 'state'
    input_map: str = "constant"  # 'none' | 'constant' | 'state'
    residual: bool = True
    residual_on: str = "state"  # 'momenta' (a force: dq/dt stays dH/dp) | 'state' (models saved before it)
    structure: dict[str, Any] | None = None  # how friction and residual were kept or removed (training/structure.py)
    # --- pixel models ---
    frame_size: int = 0  # square RGB frames the model reads and draws (0: a state model)
    context_frames: int = 3  # frames read before predicting (momentum needs motion)
    geometry: str = ""  # how q maps to the image: 'linear' | 'angular' | 'planar' (models/pixel/geometry.py)
    anchors: list[int | None] | None = None  # per entity: None, -1 (a fixed pivot or wall) or the entity it hangs from
    saliency_pool: int = 1  # the encoder's saliency is averaged over this many pixels square (1: per pixel)
    sprite_cells: int = 0  # cells across a body template (0: the size models saved before this field used)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"model config has unknown field(s): {', '.join(sorted(unknown))}")
        missing = [f.name for f in fields(cls) if f.name not in d and f.default is f.default_factory]
        if missing:
            raise ValueError(f"model config lacks field(s): {', '.join(missing)}")
        _check_sizes(d)
        return cls(**d)

    def all_pairs(self) -> list[list[int]]:
        if self.pairs is not None:
            return self.pairs
        n = self.n_entities
        return [[i, j] for i in range(n) for j in range(i + 1, n)]


def _system_of(data: TrajectoryData) -> System | None:
    """The system the data names, if this project knows it (its facts then shape the model)."""
    from hwm_studio.systems import get_system, system_names

    name = data.system_name
    return get_system(name, **data.system_params) if name and name in system_names() else None


def _kinetic_structure(system: System | None) -> dict[str, str]:
    """The kinetic energy's form, and the integrator it needs, for a system: a configuration-
    dependent mass matrix (the double pendulum's coupling lives only there) makes H non-separable,
    which explicit leapfrog cannot integrate. One rule for state and pixel models alike."""
    if system is not None and not system.separable:
        return {"kinetic": "configuration", "integrator": "implicit_midpoint"}
    return {"kinetic": "separable"}


def config_from_data(data: TrajectoryData, kind: str, **overrides: Any) -> ModelConfig:
    """Defaults and normalisation read off the training data (and its system, if it names one)."""
    import torch

    from hwm_studio.models.coders import build_coder

    if kind.endswith("-pixels"):
        return _pixel_config(data, kind, overrides)
    system = _system_of(data)
    q, p = data.q, data.p
    cfg: dict[str, Any] = {
        "kind": kind,
        "n_entities": data.n_entities,
        "dim": data.dim,
        "action_dim": data.action_dim,
        "dt": float(data.dt),
        "q_scale": scale(q, (0, 1, 2)).tolist(),
        "p_scale": scale(p, (0, 1, 2)).tolist(),
        "system": data.system_name,
        "system_params": data.system_params,
        "angular": system is not None and system.angular,
        "identical_entities": data.n_entities == 1 or (system is not None and system.identical_entities),
        "pair_features": "even",  # checkpoints from before the field load 'symmetrised', as trained
        "residual_on": "momenta",  # and their residual on 'state'
        **_kinetic_structure(system),
    }
    if not cfg["identical_entities"] and data.n_entities > 1:  # pairs may differ: let each learn its own
        cfg.update(per_pair=True, coupling_sparsity=COUPLING_SPARSITY)
    if system is not None:
        cfg["pairs"] = [list(pr) for pr in system.interaction_pairs()]
    if kind in ("node", "hnn"):
        cfg["integrator"] = "rk4"
    cfg.update(overrides)
    coder = build_coder(cfg.get("observation", "canonical"), data.n_entities, data.dim)
    obs = coder.observe(torch.as_tensor(q), torch.as_tensor(p)).numpy()  # (N, T, E, O)
    cfg["obs_scale"] = scale(obs, (0, 1)).tolist()
    return ModelConfig.from_dict(cfg)


def observation_geometry(data: TrajectoryData, geometry: Any = None) -> tuple[str, list[int | None] | None]:
    """How the data's frames show q: given (a name, or {"kind", "anchors"}), else the data's
    `meta["geometry"]`, else what its system declares."""
    spec = geometry if geometry is not None else (data.meta or {}).get("geometry")
    if spec is None:
        system, name = _system_of(data), data.system_name
        if system is None:
            raise ValueError(
                f"the frames' geometry is unknown ({'system ' + repr(name) if name else 'no system named'}): "
                "say how q is drawn with --geometry linear|angular|planar (or meta['geometry'])"
            )
        return system.observation_geometry()
    if isinstance(spec, str):
        return spec, None
    if isinstance(spec, dict) and isinstance(spec.get("kind"), str):
        anchors = spec.get("anchors")
        if anchors is not None and not (
            isinstance(anchors, list)
            and all(a is None or (isinstance(a, int) and not isinstance(a, bool)) for a in anchors)
        ):
            raise ValueError(f"geometry anchors must be a list of entity indices, -1 or null, got {anchors!r}")
        return spec["kind"], anchors
    raise ValueError(f"geometry must be a name or {{'kind': name, 'anchors': [...]}}, got {spec!r}")


def _pixel_config(data: TrajectoryData, kind: str, overrides: dict[str, Any]) -> ModelConfig:
    """A pixel model's latent is read off the frames: q through the observation geometry (an
    angle for angular systems, so energies see (cos q, sin q)), p through the dynamics' masses.

    Entities and their pairs still come from the data (one latent entity per body), the latent has
    the data's dimension per entity; unit scales (the geometry calibrates the latent's scale).
    """
    from hwm_studio.models.pixel.decoder import template_cells
    from hwm_studio.models.pixel.encoder import saliency_pool_for
    from hwm_studio.models.pixel.geometry import GEOMETRIES

    if data.frames is None:
        raise ValueError(f"a {kind} model learns from frames; the data has no 'frames'")
    system = _system_of(data)
    e, d = data.n_entities, data.dim
    geometry, anchors = observation_geometry(data, overrides.pop("geometry", None))
    if geometry not in GEOMETRIES:
        raise ValueError(f"unknown observation geometry {geometry!r}; choose one of {', '.join(GEOMETRIES)}")
    cfg: dict[str, Any] = {
        "kind": kind,
        "n_entities": e,
        "dim": d,
        "action_dim": data.action_dim,
        "dt": float(data.dt),
        "q_scale": [1.0] * d,
        "p_scale": [1.0] * d,
        "obs_scale": [[1.0] * (2 * d)] * e,
        "system": data.system_name,
        "system_params": data.system_params,
        "identical_entities": e == 1 or (system is not None and system.identical_entities),
        "angular": GEOMETRIES[geometry].angular,
        "frame_size": int(data.frames.shape[2]),
        "geometry": geometry,
        "anchors": anchors,
        "saliency_pool": saliency_pool_for(anchors),  # checkpoints from before the field load with 1, as trained
        "sprite_cells": template_cells(int(data.frames.shape[2])),  # older ones load with 0: their own size
        **_kinetic_structure(system),
    }
    if system is not None:
        cfg["pairs"] = [list(pr) for pr in system.interaction_pairs()]
    cfg.update(overrides)
    return ModelConfig.from_dict(cfg)
