"""Planar double pendulum in absolute angles and canonical momenta.

H = T(q, p) + (m1 + m2) g l1 (1 - cos q1) + m2 g l2 (1 - cos q2), with the q-dependent mass
matrix inside T (see DoublePendulumKinetic): H is not separable. Two torques: tau1 at the
shoulder (ground -> link 1) and tau2 at the elbow (link 1 -> link 2), whose generalized forces
in absolute angles are (tau1 - tau2, tau2).
"""

from __future__ import annotations

import torch
from torch import Tensor

from hwm_studio.physics.energy import Hamiltonian
from hwm_studio.physics.terms import CosinePotential, DoublePendulumKinetic
from hwm_studio.state import PhaseState
from hwm_studio.systems.base import PIVOT, Param, System, uniform


class DoublePendulum(System):
    name = "double_pendulum"
    angular = True
    separable = False  # the mass matrix depends on the angle between the links
    title = "Double pendulum"
    param_specs = (
        Param("m1", 1.0, "mass of the first bob"),
        Param("m2", 1.0, "mass of the second bob"),
        Param("l1", 1.0, "length of the first link"),
        Param("l2", 1.0, "length of the second link"),
        Param("g", 9.81, "gravitational acceleration"),
    )
    default_dt = 0.01
    action_bound = 5.0

    @property
    def n_entities(self) -> int:
        return 2

    @property
    def dim(self) -> int:
        return 1

    def build_hamiltonian(self) -> Hamiltonian:
        m1, m2, l1, l2, g = (self.params[k] for k in ("m1", "m2", "l1", "l2", "g"))
        return Hamiltonian([DoublePendulumKinetic(m1, m2, l1, l2), CosinePotential([(m1 + m2) * g * l1, m2 * g * l2])])

    def input_matrix(self) -> list[list[float]]:
        return [[1.0, -1.0], [0.0, 1.0]]

    def interaction_pairs(self) -> list[tuple[int, int]]:
        return []  # the coupling lives in the kinetic energy, not in a potential U(q1, q2)

    def mass_matrix(self, q: Tensor) -> Tensor:
        """M(q) with p = M(q) qdot, for q (B, 2, 1): (B, 2, 2)."""
        m1, m2, l1, l2 = (self.params[k] for k in ("m1", "m2", "l1", "l2"))
        c = torch.cos(q[:, 0, 0] - q[:, 1, 0])
        m11 = torch.full_like(c, (m1 + m2) * l1 * l1)
        m22 = torch.full_like(c, m2 * l2 * l2)
        m12 = m2 * l1 * l2 * c
        return torch.stack([torch.stack([m11, m12], -1), torch.stack([m12, m22], -1)], -2)

    def sample_initial(self, n: int, generator: torch.Generator | None = None) -> PhaseState:
        """Angles in [-1, 1] rad, angular velocities in [-1, 1] rad/s, mapped to momenta by M(q)."""
        q = torch.stack([uniform(n, -1.0, 1.0, generator) for _ in range(2)], dim=1)[..., None]
        qdot = torch.stack([uniform(n, -1.0, 1.0, generator) for _ in range(2)], dim=1)[..., None]
        p = self.mass_matrix(q) @ qdot
        return PhaseState(q, p)

    def observation_geometry(self) -> tuple[str, list[int | None]]:
        return "angular", [-1, 0]  # absolute angles: the second link hangs from the first bob

    def positions(self, q: Tensor) -> Tensor:
        l1, l2 = self.params["l1"], self.params["l2"]
        a1, a2 = q[..., 0, 0], q[..., 1, 0]
        x1, y1 = l1 * torch.sin(a1), -l1 * torch.cos(a1)
        x2, y2 = x1 + l2 * torch.sin(a2), y1 - l2 * torch.cos(a2)
        zero = torch.zeros_like(a1)
        return torch.stack([torch.stack([x1, y1, zero], -1), torch.stack([x2, y2, zero], -1)], dim=-2)

    def links(self) -> list[tuple[int, int]]:
        return [(PIVOT, 0), (0, 1)]

    def view_extent(self) -> float:
        return 1.12 * (self.params["l1"] + self.params["l2"])

    def entity_radii(self) -> list[float]:
        s = 0.1 * (self.params["l1"] + self.params["l2"])
        return [s, s]
