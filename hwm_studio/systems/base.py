"""What a ground-truth system declares: structure, parameters, exact H, sampler, views.

A System is the simulator side of "honest physics": its Hamiltonian is exact, its field adds
friction and actions through the same port-Hamiltonian form the models use, and it renders
states to frames and 3D entity positions for the studio's video and 3D views.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from hwm_studio.physics.energy import Hamiltonian
from hwm_studio.physics.port_hamiltonian import LinearInputMap, MomentumDamping, PortHamiltonianField
from hwm_studio.state import PhaseState
from hwm_studio.systems.render import RenderStyle, rasterize

PIVOT = -1  # link end that is the fixed pivot at the origin, not an entity


@dataclass(frozen=True)
class Param:
    """A named physical parameter with its default, meaning and admissible range."""

    name: str
    default: float
    doc: str
    low: float = 0.0
    high: float = math.inf
    integer: bool = False
    low_inclusive: bool = False

    def check(self, value: Any) -> float | int:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"parameter {self.name!r} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"parameter {self.name!r} must be finite, got {value!r}")
        if self.integer and value != int(value):
            raise ValueError(f"parameter {self.name!r} must be an integer, got {value!r}")
        below = value < self.low if self.low_inclusive else value <= self.low
        if below or value > self.high:
            bracket = "[" if self.low_inclusive else "("
            raise ValueError(f"parameter {self.name!r}={value} is outside {bracket}{self.low}, {self.high}]")
        return int(value) if self.integer else float(value)


class System(ABC):
    """A ground-truth mechanical system with an analytic Hamiltonian.

    Subclasses declare `name`, `title`, `param_specs`, `default_dt`, `action_bound`, and
    implement the abstract methods. Parameters are validated on construction.
    """

    name: ClassVar[str]
    title: ClassVar[str]
    param_specs: ClassVar[tuple[Param, ...]]
    default_dt: ClassVar[float]
    action_bound: ClassVar[float]
    # Facts a learned model of the system may build in (models/config.py, planning/presets.py): a
    # new system states them here, once, instead of joining name lists elsewhere.
    angular: ClassVar[bool] = False  # q are angles: energies see (cos q, sin q), errors wrap
    identical_entities: ClassVar[bool] = False  # bodies are interchangeable: models share weights
    separable: ClassVar[bool] = True  # constant mass matrix, H = T(p) + V(q): explicit leapfrog applies

    def __init__(self, **params: float) -> None:
        specs = {s.name: s for s in self.param_specs}
        unknown = set(params) - set(specs)
        if unknown:
            raise ValueError(f"{self.name} has no parameter(s) {', '.join(sorted(unknown))}; it has {', '.join(specs)}")
        self.params: dict[str, float | int] = {n: s.check(params.get(n, s.default)) for n, s in specs.items()}
        self._hamiltonian = self.build_hamiltonian()

    # --- structure -------------------------------------------------------------------------
    @property
    @abstractmethod
    def n_entities(self) -> int: ...

    @property
    @abstractmethod
    def dim(self) -> int: ...

    @property
    def action_dim(self) -> int:
        return len(self.input_matrix()[0])

    def entity_names(self) -> list[str]:
        return [f"{self.name}[{i}]" for i in range(self.n_entities)]

    # --- physics ---------------------------------------------------------------------------
    @abstractmethod
    def build_hamiltonian(self) -> Hamiltonian:
        """The exact H, from analytic energy terms."""

    @abstractmethod
    def input_matrix(self) -> list[list[float]]:
        """G as an (E * D, A) nested list: generalized force of each unit action."""

    def default_reward(self) -> Callable[..., Tensor] | None:
        """The per-step planning cost of the task this system comes from (reward = -cost), or None:
        a system that is a benchmark's own (Pendulum-v1) brings its reward, so returns compare."""
        return None

    def interaction_pairs(self) -> list[tuple[int, int]]:
        """Entity pairs that interact (a learned model shares U over exactly these)."""
        n = self.n_entities
        return [(i, j) for i in range(n) for j in range(i + 1, n)]

    @property
    def hamiltonian(self) -> Hamiltonian:
        return self._hamiltonian

    def energy(self, state: PhaseState) -> Tensor:
        """True total H, shape (B,)."""
        return self._hamiltonian.energy(state)

    def field(self, damping: float = 0.0) -> PortHamiltonianField:
        """The system's port-Hamiltonian field: exact H, viscous damping gamma, its input map."""
        dissipation = MomentumDamping(damping) if damping > 0 else None
        g = LinearInputMap(self.input_matrix(), self.n_entities, self.dim)
        return PortHamiltonianField(self._hamiltonian, dissipation=dissipation, input_map=g)

    @abstractmethod
    def sample_initial(self, n: int, generator: torch.Generator | None = None) -> PhaseState:
        """n initial states (float64) from the system's default distribution."""

    # --- views -----------------------------------------------------------------------------
    @abstractmethod
    def positions(self, q: Tensor) -> Tensor:
        """World positions of the entities for q of shape (..., E, D): (..., E, 3)."""

    @abstractmethod
    def observation_geometry(self) -> tuple[str, list[int | None]]:
        """How frames show q, for pixel models (hwm_studio/models/pixel/geometry.py): the geometry
        ('linear', 'angular' or 'planar') and each entity's anchor (None, -1 for a fixed pivot or
        wall, or the entity it hangs from)."""

    def links(self) -> list[tuple[int, int]]:
        """Rods to draw, as entity index pairs; PIVOT (-1) is the fixed pivot at the origin."""
        return []

    @abstractmethod
    def view_extent(self) -> float:
        """Half-width of the square region the renderer shows, in world units."""

    @abstractmethod
    def entity_radii(self) -> list[float]:
        """Disc radius of each entity in world units."""

    def link_segments(self, pos: Tensor) -> Tensor:
        """(..., S, 2, 3) end points of the rods for positions (..., E, 3)."""
        links = self.links()
        if not links:
            return pos.new_zeros(*pos.shape[:-2], 0, 2, 3)
        pivot = pos.new_zeros(*pos.shape[:-2], 3)
        ends = []
        for a, b in links:
            pa = pivot if a == PIVOT else pos[..., a, :]
            pb = pivot if b == PIVOT else pos[..., b, :]
            ends.append(torch.stack([pa, pb], dim=-2))
        return torch.stack(ends, dim=-3)

    def render(self, q: Tensor, size: int = 64, style: RenderStyle | None = None) -> Tensor:
        """Render q of shape (..., E, D) to uint8 RGB frames (..., size, size, 3)."""
        lead = q.shape[:-2]
        flat_q = q.reshape(-1, self.n_entities, self.dim)
        pos = self.positions(flat_q.double())
        seg = self.link_segments(pos)[..., :2]
        frames = rasterize(
            pos[..., :2],
            torch.tensor(self.entity_radii()),
            seg,
            extent=self.view_extent(),
            size=size,
            style=style,
        )
        return frames.reshape(*lead, size, size, 3)

    def meta(self) -> dict[str, Any]:
        """The data format's `meta`: enough to rebuild this system exactly."""
        return {"system": self.name, "params": dict(self.params), "entities": self.entity_names()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"


def uniform(n: int, low: float, high: float, generator: torch.Generator | None) -> Tensor:
    """n float64 samples from U(low, high) (shared by the samplers)."""
    return low + (high - low) * torch.rand(n, dtype=torch.float64, generator=generator)
