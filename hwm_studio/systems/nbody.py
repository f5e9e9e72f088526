"""N bodies in the plane under Newtonian gravity (two- and three-body presets).

H = sum |p_i|^2 / (2 m) - sum_{i<j} G m^2 / sqrt(|q_i - q_j|^2 + eps^2). Softening eps keeps
close encounters finite. Initial states are near-circular orbits on a ring (the HNN/HGN style
two- and three-body tasks), with a random perturbation of the speeds. A 2-D thrust acts on body 0.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from hwm_studio.physics.energy import Hamiltonian
from hwm_studio.physics.terms import GravityInteraction, QuadraticKinetic
from hwm_studio.state import PhaseState
from hwm_studio.systems.base import Param, System, uniform


class NBody(System):
    name = "nbody"
    identical_entities = True
    title = "N-body gravity"
    param_specs = (
        Param("n", 3, "number of bodies", low=2, high=8, integer=True, low_inclusive=True),
        Param("m", 1.0, "mass of each body"),
        Param("G", 1.0, "gravitational constant"),
        Param("softening", 0.1, "Plummer softening length", low_inclusive=True),
        Param("radius_low", 0.8, "smallest ring radius of the initial orbit"),
        Param("radius_high", 1.2, "largest ring radius of the initial orbit"),
        Param("speed_noise", 0.1, "relative random perturbation of circular speeds", low_inclusive=True),
    )
    default_dt = 0.02
    action_bound = 0.5

    @property
    def n_entities(self) -> int:
        return int(self.params["n"])

    @property
    def dim(self) -> int:
        return 2

    def build_hamiltonian(self) -> Hamiltonian:
        n, m = self.n_entities, self.params["m"]
        return Hamiltonian(
            [
                QuadraticKinetic(m),
                GravityInteraction([m] * n, self.params["G"], self.params["softening"]),
            ]
        )

    def input_matrix(self) -> list[list[float]]:
        rows = [[0.0, 0.0] for _ in range(2 * self.n_entities)]
        rows[0][0] = rows[1][1] = 1.0  # thrust (x, y) on body 0
        return rows

    def sample_initial(self, n: int, generator: torch.Generator | None = None) -> PhaseState:
        """Bodies evenly spaced on a ring at a random radius and rotation, moving at the speed
        that makes the ring's orbit circular (from the actual softened force), perturbed."""
        e, m = self.n_entities, self.params["m"]
        radius = uniform(n, self.params["radius_low"], self.params["radius_high"], generator)
        rot = uniform(n, 0.0, 2 * math.pi, generator)
        ang = rot[:, None] + 2 * math.pi * torch.arange(e, dtype=torch.float64) / e  # (n, E)
        unit = torch.stack([torch.cos(ang), torch.sin(ang)], dim=-1)  # (n, E, 2)
        q = radius[:, None, None] * unit
        force = self._hamiltonian.grad_q(q, torch.zeros_like(q))  # dU/dq: points outward
        f_in = (force * unit).sum(-1).abs()  # (n, E) inward force magnitude
        speed = torch.sqrt(f_in * radius[:, None] / m)
        tangent = torch.stack([-unit[..., 1], unit[..., 0]], dim=-1)
        noise = 1.0 + self.params["speed_noise"] * (2 * torch.rand(n, e, dtype=torch.float64, generator=generator) - 1)
        p = m * (speed * noise)[..., None] * tangent
        p = p - p.mean(dim=1, keepdim=True)  # zero total momentum: the centre of mass stays put
        return PhaseState(q, p)

    def observation_geometry(self) -> tuple[str, list[int | None]]:
        return "planar", [None] * self.n_entities  # free points of the plane

    def positions(self, q: Tensor) -> Tensor:
        return torch.cat([q, torch.zeros_like(q[..., :1])], dim=-1)

    def view_extent(self) -> float:
        return 1.5 * self.params["radius_high"] + 0.3

    def entity_radii(self) -> list[float]:
        return [0.12 * self.view_extent()] * self.n_entities
