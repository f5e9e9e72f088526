"""Mass on a spring: H = p^2 / (2m) + k q^2 / 2, force input on the mass."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from hwm_studio.physics.energy import Hamiltonian
from hwm_studio.physics.terms import HarmonicPotential, QuadraticKinetic
from hwm_studio.state import PhaseState
from hwm_studio.systems.base import Param, System, uniform


class Spring(System):
    name = "spring"
    title = "Mass-spring oscillator"
    param_specs = (
        Param("m", 1.0, "mass"),
        Param("k", 1.0, "spring stiffness"),
        Param("radius_low", 0.1, "smallest initial radius in normalised phase space"),
        Param("radius_high", 1.0, "largest initial radius in normalised phase space"),
    )
    default_dt = 0.1
    action_bound = 1.0

    @property
    def n_entities(self) -> int:
        return 1

    @property
    def dim(self) -> int:
        return 1

    def build_hamiltonian(self) -> Hamiltonian:
        return Hamiltonian([QuadraticKinetic(self.params["m"]), HarmonicPotential(self.params["k"])])

    def input_matrix(self) -> list[list[float]]:
        return [[1.0]]

    def sample_initial(self, n: int, generator: torch.Generator | None = None) -> PhaseState:
        """Points on ellipses of constant energy: (q sqrt(k), p / sqrt(m)) at radius r, random phase."""
        m, k = self.params["m"], self.params["k"]
        r = uniform(n, self.params["radius_low"], self.params["radius_high"], generator)
        phase = uniform(n, 0.0, 2 * math.pi, generator)
        q = r * torch.cos(phase) / math.sqrt(k)
        p = r * torch.sin(phase) * math.sqrt(m)
        return PhaseState(q.reshape(n, 1, 1), p.reshape(n, 1, 1))

    def observation_geometry(self) -> tuple[str, list[int | None]]:
        return "linear", [-1]  # a displacement along x, on a spring from the wall

    def positions(self, q: Tensor) -> Tensor:
        zero = torch.zeros_like(q[..., 0])
        return torch.stack([q[..., 0], zero, zero], dim=-1)

    def link_segments(self, pos: Tensor) -> Tensor:
        wall = pos.new_zeros(pos[..., 0, :].shape)
        wall[..., 0] = -0.9 * self.view_extent()  # the spring hangs off a wall on the left
        return torch.stack([wall, pos[..., 0, :]], dim=-2)[..., None, :, :]

    def view_extent(self) -> float:
        return 1.6 * self.params["radius_high"] / math.sqrt(self.params["k"]) + 0.3

    def entity_radii(self) -> list[float]:
        return [0.15 * self.view_extent()]
