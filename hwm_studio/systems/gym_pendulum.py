"""The pendulum of gymnasium's Pendulum-v1, as a Hamiltonian system.

Pendulum-v1 integrates theta'' = (3 g / 2 l) sin(theta) + 3 u / (m l^2) (theta = 0 upright):
a uniform rod of inertia I = m l^2 / 3 with its centre of mass at l / 2. So
    H = p^2 / (2 I) + (m g l / 2)(1 + cos q),   p = I qdot,   torque u enters dp/dt.
`env_step` reproduces the environment's own update exactly (semi-implicit Euler, speed clipped
to +-max_speed, torque clipped to +-max_torque), which the Hamiltonian form cannot express.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from hwm_studio.physics.energy import Hamiltonian
from hwm_studio.physics.terms import CosinePotential, QuadraticKinetic
from hwm_studio.state import PhaseState
from hwm_studio.systems.base import PIVOT, Param, System, uniform


class GymPendulum(System):
    name = "gym_pendulum"
    angular = True
    title = "Gymnasium Pendulum-v1"
    param_specs = (
        Param("g", 10.0, "gravitational acceleration"),
        Param("m", 1.0, "rod mass"),
        Param("l", 1.0, "rod length"),
        Param("max_speed", 8.0, "angular speed clip of the environment"),
        Param("max_torque", 2.0, "torque bound of the environment"),
    )
    default_dt = 0.05
    action_bound = 2.0

    @property
    def n_entities(self) -> int:
        return 1

    @property
    def dim(self) -> int:
        return 1

    @property
    def inertia(self) -> float:
        return self.params["m"] * self.params["l"] ** 2 / 3.0

    def build_hamiltonian(self) -> Hamiltonian:
        m, l, g = self.params["m"], self.params["l"], self.params["g"]
        return Hamiltonian([QuadraticKinetic(self.inertia), CosinePotential(0.5 * m * g * l, phase=math.pi)])

    def input_matrix(self) -> list[list[float]]:
        return [[1.0]]

    def default_reward(self) -> Callable[..., Tensor]:
        """Pendulum-v1's own reward, so planned returns compare with published ones."""
        from hwm_studio.planning.costs import PendulumV1Reward  # on call: planning imports systems at load

        return PendulumV1Reward(self.inertia)

    def sample_initial(self, n: int, generator: torch.Generator | None = None) -> PhaseState:
        """The environment's reset: theta ~ U(-pi, pi), theta_dot ~ U(-1, 1)."""
        q = uniform(n, -math.pi, math.pi, generator)
        qdot = uniform(n, -1.0, 1.0, generator)
        return PhaseState(q.reshape(n, 1, 1), (self.inertia * qdot).reshape(n, 1, 1))

    def env_step(self, theta: Tensor, theta_dot: Tensor, u: Tensor, dt: float = 0.05) -> tuple[Tensor, Tensor]:
        """One Pendulum-v1 step on (B,) tensors, exactly as gymnasium computes it."""
        g, m, l = self.params["g"], self.params["m"], self.params["l"]
        u = u.clamp(-self.params["max_torque"], self.params["max_torque"])
        new_dot = theta_dot + (3 * g / (2 * l) * torch.sin(theta) + 3.0 / (m * l * l) * u) * dt
        new_dot = new_dot.clamp(-self.params["max_speed"], self.params["max_speed"])
        return theta + new_dot * dt, new_dot

    def observation_geometry(self) -> tuple[str, list[int | None]]:
        return "angular", [-1]  # an angle about the pivot (read from hanging; q here is from upright)

    def positions(self, q: Tensor) -> Tensor:
        l = self.params["l"]
        a = q[..., 0]
        return torch.stack([l * torch.sin(a), l * torch.cos(a), torch.zeros_like(a)], dim=-1)

    def links(self) -> list[tuple[int, int]]:
        return [(PIVOT, 0)]

    def view_extent(self) -> float:
        return 1.25 * self.params["l"]

    def entity_radii(self) -> list[float]:
        return [0.14 * self.params["l"]]
