"""Simple pendulum: H = p^2 / (2 m l^2) + m g l (1 - cos q), q = 0 hanging down, torque input."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from hwm_studio.physics.energy import Hamiltonian
from hwm_studio.physics.terms import CosinePotential, QuadraticKinetic
from hwm_studio.state import PhaseState
from hwm_studio.systems.base import PIVOT, Param, System, uniform


class Pendulum(System):
    name = "pendulum"
    angular = True
    title = "Pendulum"
    param_specs = (
        Param("m", 1.0, "bob mass"),
        Param("l", 1.0, "rod length"),
        Param("g", 9.81, "gravitational acceleration"),
    )
    default_dt = 0.05
    action_bound = 2.0

    @property
    def n_entities(self) -> int:
        return 1

    @property
    def dim(self) -> int:
        return 1

    def build_hamiltonian(self) -> Hamiltonian:
        m, l, g = self.params["m"], self.params["l"], self.params["g"]
        return Hamiltonian([QuadraticKinetic(m * l * l), CosinePotential(m * g * l)])

    def input_matrix(self) -> list[list[float]]:
        return [[1.0]]

    def sample_initial(self, n: int, generator: torch.Generator | None = None) -> PhaseState:
        """Librating states: |q| <= 2 rad and |p| <= 0.35 of the separatrix momentum at q = 0,
        so H stays below 0.84 of the separatrix energy 2 m g l (no over-the-top rotations)."""
        m, l, g = self.params["m"], self.params["l"], self.params["g"]
        p_sep = 2.0 * m * l * math.sqrt(g * l)
        q = uniform(n, -2.0, 2.0, generator)
        p = uniform(n, -0.35 * p_sep, 0.35 * p_sep, generator)
        return PhaseState(q.reshape(n, 1, 1), p.reshape(n, 1, 1))

    def observation_geometry(self) -> tuple[str, list[int | None]]:
        return "angular", [-1]  # an angle about the pivot

    def positions(self, q: Tensor) -> Tensor:
        l = self.params["l"]
        a = q[..., 0]
        return torch.stack([l * torch.sin(a), -l * torch.cos(a), torch.zeros_like(a)], dim=-1)

    def links(self) -> list[tuple[int, int]]:
        return [(PIVOT, 0)]

    def view_extent(self) -> float:
        return 1.25 * self.params["l"]

    def entity_radii(self) -> list[float]:
        return [0.16 * self.params["l"]]
