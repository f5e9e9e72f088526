"""A chain of N masses on a line, neighbours coupled by springs, each pinned by an on-site spring.

q_i is the displacement of mass i from its rest site. H = sum p_i^2 / (2m) + sum k0 q_i^2 / 2
+ sum_i k (q_{i+1} - q_i)^2 / 2: the coupling is an interaction term U(q_i, q_{i+1}), so a
learned model must discover it. The on-site spring k0 keeps the chain from drifting away.
A force acts on the first mass.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hwm_studio.physics.energy import Hamiltonian
from hwm_studio.physics.terms import HarmonicPotential, QuadraticKinetic, SpringInteraction
from hwm_studio.state import PhaseState
from hwm_studio.systems.base import Param, System, uniform

SPACING = 1.0  # rest distance between neighbours in the views (not part of the physics)


class Chain(System):
    name = "chain"
    identical_entities = True
    title = "Spring chain"
    param_specs = (
        Param("n", 4, "number of masses", low=2, high=16, integer=True, low_inclusive=True),
        Param("m", 1.0, "mass of each body"),
        Param("k", 1.0, "coupling spring stiffness between neighbours"),
        Param("k0", 0.5, "on-site spring stiffness"),
    )
    default_dt = 0.05
    action_bound = 1.0

    @property
    def n_entities(self) -> int:
        return int(self.params["n"])

    @property
    def dim(self) -> int:
        return 1

    def interaction_pairs(self) -> list[tuple[int, int]]:
        return [(i, i + 1) for i in range(self.n_entities - 1)]

    def build_hamiltonian(self) -> Hamiltonian:
        n = self.n_entities
        return Hamiltonian(
            [
                QuadraticKinetic(self.params["m"]),
                HarmonicPotential(self.params["k0"]),
                SpringInteraction(n, self.interaction_pairs(), self.params["k"]),
            ]
        )

    def input_matrix(self) -> list[list[float]]:
        return [[1.0]] + [[0.0]] * (self.n_entities - 1)

    def sample_initial(self, n: int, generator: torch.Generator | None = None) -> PhaseState:
        """Displacements in [-0.3, 0.3] spacings, momenta in [-0.3, 0.3] m * spacing / s."""
        e = self.n_entities
        q = uniform(n * e, -0.3, 0.3, generator).reshape(n, e, 1)
        p = self.params["m"] * uniform(n * e, -0.3, 0.3, generator).reshape(n, e, 1)
        return PhaseState(q, p)

    def observation_geometry(self) -> tuple[str, list[int | None]]:
        return "linear", [None, *range(self.n_entities - 1)]  # displacements; rods to the neighbour

    def positions(self, q: Tensor) -> Tensor:
        e = self.n_entities
        sites = (torch.arange(e, dtype=q.dtype, device=q.device) - 0.5 * (e - 1)) * SPACING
        x = sites + q[..., 0]
        zero = torch.zeros_like(x)
        return torch.stack([x, zero, zero], dim=-1)

    def links(self) -> list[tuple[int, int]]:
        return self.interaction_pairs()

    def view_extent(self) -> float:
        return 0.5 * (self.n_entities - 1) * SPACING + 0.8

    def entity_radii(self) -> list[float]:
        return [0.22 * SPACING] * self.n_entities
