"""Trajectory data of systems this project does not know, written the way a user would write it.

Why: a model proves little on the systems it was designed around. Each system here is nothing but
an energy H(q, p) given as a formula, linear friction and a force; its files name a system the
project has never heard of and carry no parameters, so every model sees them exactly as it sees a
user's file (no declared pairs, no identical entities, no angles). Together they set what a world
model must find out for itself: masses that differ per entity, couplings between some pairs only
or between all pairs with different strengths, walls, forcing, damping, 1-D and 2-D.

The equations of motion are dq/dt = dH/dp, dp/dt = -dH/dq - c dH/dp + B u, integrated by RK4 in
float64 with `substeps` steps per recorded step (gradients of H by autograd).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from hwm_studio.data.format import TrajectoryData

Energy = Callable[[Tensor, Tensor], Tensor]  # (B, E, D), (B, E, D) -> (B,)
Sampler = Callable[[int, torch.Generator], tuple[Tensor, Tensor]]  # n -> q, p (n, E, D)


@dataclass(frozen=True)
class ForeignSystem:
    """A user's system: its energy, friction and which entities a scalar force pushes."""

    name: str
    n_entities: int
    dim: int
    dt: float
    energy: Energy
    sample: Sampler
    friction: float = 0.0  # c: dp/dt gains -c dH/dp (viscous damping)
    forced: tuple[int, ...] = ()  # entities a scalar action pushes along their first axis
    coupled: tuple[tuple[int, int], ...] = ()  # the pairs that truly interact (for scoring only)

    @property
    def conservative(self) -> bool:
        return self.friction == 0.0 and not self.forced

    def field(self, q: Tensor, p: Tensor, u: Tensor | None) -> tuple[Tensor, Tensor]:
        with torch.enable_grad():
            q = q.detach().requires_grad_(True)
            p = p.detach().requires_grad_(True)
            dh_dq, dh_dp = torch.autograd.grad(self.energy(q, p).sum(), (q, p))
        dp = -dh_dq - self.friction * dh_dp
        if u is not None and self.forced:
            push = torch.zeros_like(dp)
            push[:, list(self.forced), 0] = u[:, :1]
            dp = dp + push
        return dh_dp, dp

    def simulate(self, n: int, points: int, seed: int = 0, substeps: int = 10, hold: int = 10) -> TrajectoryData:
        """n trajectories of `points` states; with a force, random actions in [-1, 1] held `hold` steps."""
        if n < 1 or points < 2 or substeps < 1 or hold < 1:
            raise ValueError(
                f"need n >= 1, points >= 2, substeps >= 1, hold >= 1; got {n}, {points}, {substeps}, {hold}"
            )
        g = torch.Generator().manual_seed(seed)
        q, p = self.sample(n, g)
        q, p = q.double(), p.double()
        u = None
        if self.forced:
            blocks = -(-points // hold)
            u = (2 * torch.rand(n, blocks, 1, generator=g, dtype=torch.float64) - 1).repeat_interleave(hold, 1)
            u = u[:, :points]
        h = self.dt / substeps
        qs, ps = [q], [p]
        for t in range(points - 1):
            ut = None if u is None else u[:, t]
            for _ in range(substeps):
                k1 = self.field(q, p, ut)
                k2 = self.field(q + 0.5 * h * k1[0], p + 0.5 * h * k1[1], ut)
                k3 = self.field(q + 0.5 * h * k2[0], p + 0.5 * h * k2[1], ut)
                k4 = self.field(q + h * k3[0], p + h * k3[1], ut)
                q = q + h / 6 * (k1[0] + 2 * k2[0] + 2 * k3[0] + k4[0])
                p = p + h / 6 * (k1[1] + 2 * k2[1] + 2 * k3[1] + k4[1])
            qs.append(q)
            ps.append(p)
        q_all, p_all = torch.stack(qs, 1), torch.stack(ps, 1)  # (n, T, E, D)
        energy = self.energy(q_all.reshape(-1, self.n_entities, self.dim), p_all.reshape(-1, self.n_entities, self.dim))
        meta = {"system": self.name, "params": {}, "entities": [f"body{i}" for i in range(self.n_entities)]}
        return TrajectoryData(
            q=q_all.numpy(), p=p_all.numpy(), dt=self.dt, u=None if u is None else u.numpy(),
            energy=energy.reshape(n, points).numpy(), meta=meta,
        )  # fmt: skip

    def true_energy(self, q: np.ndarray, p: np.ndarray) -> np.ndarray:
        """H on states (..., E, D) (e.g. a model's predictions), as float64 (...)."""
        lead = q.shape[:-2]
        qt = torch.as_tensor(q, dtype=torch.float64).reshape(-1, self.n_entities, self.dim)
        pt = torch.as_tensor(p, dtype=torch.float64).reshape(-1, self.n_entities, self.dim)
        return self.energy(qt, pt).reshape(lead).numpy()


def _kinetic(masses: Tensor, p: Tensor) -> Tensor:
    return 0.5 * (p * p / masses.to(p.dtype)[:, None]).sum((1, 2))


def _uniform(g: torch.Generator, shape: tuple[int, ...], lo: float, hi: float) -> Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=g, dtype=torch.float64)


def _wall(x: Tensor, at: float, stiffness: float) -> Tensor:
    """A one-sided stiff wall: zero inside |x| < at, cubic outside (C2, so integrators see no kink)."""
    return stiffness * torch.relu(x.abs() - at) ** 3


def wall_chain() -> ForeignSystem:
    """Three masses (1, 1.6, 0.7) on a line between walls at +-2, nonlinear springs between
    neighbours only (stiffness 2 and 3.5, rest length 1, quartic 4): damped, the first one pushed."""
    m = torch.tensor([1.0, 1.6, 0.7])
    k = (2.0, 3.5)

    def energy(q: Tensor, p: Tensor) -> Tensor:
        x = q[..., 0]
        d01, d12 = x[:, 1] - x[:, 0] - 1.0, x[:, 2] - x[:, 1] - 1.0
        springs = 0.5 * k[0] * d01**2 + d01**4 + 0.5 * k[1] * d12**2 + d12**4
        return _kinetic(m, p) + springs + _wall(x, 2.0, 200.0).sum(1)

    def sample(n: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
        rest = torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64)
        q = rest + _uniform(g, (n, 3), -0.4, 0.4)
        p = m.double() * _uniform(g, (n, 3), -0.8, 0.8)
        return q[..., None], p[..., None]

    return ForeignSystem("user_wall_chain", 3, 1, 0.05, energy, sample, friction=0.1, forced=(0,),
                         coupled=((0, 1), (1, 2)))  # fmt: skip


def polynomial_particle() -> ForeignSystem:
    """One 2-D particle (mass 1.3) in the non-separable polynomial potential
    V = (x^2 + y^2)^2 / 4 - x^2 / 2 + 0.6 x y^2 (a tilted double well): conservative."""
    m = torch.tensor([1.3])

    def energy(q: Tensor, p: Tensor) -> Tensor:
        x, y = q[:, 0, 0], q[:, 0, 1]
        r2 = x * x + y * y
        return _kinetic(m, p) + 0.25 * r2 * r2 - 0.5 * x * x + 0.6 * x * y * y

    def sample(n: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
        return _uniform(g, (n, 1, 2), -1.2, 1.2), _uniform(g, (n, 1, 2), -0.6, 0.6)

    return ForeignSystem("user_polynomial_particle", 1, 2, 0.05, energy, sample)


def spring_triangle() -> ForeignSystem:
    """Three 2-D bodies of masses 1, 2 and 0.5, every pair joined by a spring of its own stiffness
    (1, 2.5, 0.5; rest length 1): all-to-all, conservative, zero total momentum."""
    m = torch.tensor([1.0, 2.0, 0.5])
    pairs = ((0, 1), (0, 2), (1, 2))
    k = (1.0, 2.5, 0.5)

    def energy(q: Tensor, p: Tensor) -> Tensor:
        u = q.new_zeros(q.shape[0])
        for (i, j), kij in zip(pairs, k, strict=True):
            r = (q[:, i] - q[:, j]).norm(dim=-1)
            u = u + 0.5 * kij * (r - 1.0) ** 2
        return _kinetic(m, p) + u

    def sample(n: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
        angles = torch.tensor([0.0, 2.0944, 4.1888], dtype=torch.float64)
        ring = 0.577 * torch.stack([torch.cos(angles), torch.sin(angles)], -1)  # equilateral, side 1
        q = ring + _uniform(g, (n, 3, 2), -0.25, 0.25)
        p = _uniform(g, (n, 3, 2), -0.5, 0.5)
        p = p - m.double()[:, None] * (p.sum(1, keepdim=True) / m.sum())  # no drift of the centre of mass
        return q, p

    return ForeignSystem("user_spring_triangle", 3, 2, 0.05, energy, sample, coupled=pairs)


def two_dimers() -> ForeignSystem:
    """Four equal 2-D bodies in a weak harmonic trap; only (0, 1) and (2, 3) are bound, by Morse
    bonds of different depth: four of the six pairs do not interact at all."""
    m = torch.ones(4)
    bonds = (((0, 1), 1.0), ((2, 3), 2.0))

    def energy(q: Tensor, p: Tensor) -> Tensor:
        u = 0.5 * 0.3 * (q * q).sum((1, 2))
        for (i, j), depth in bonds:
            r = (q[:, i] - q[:, j]).norm(dim=-1)
            u = u + depth * (1 - torch.exp(-2.0 * (r - 0.6))) ** 2
        return _kinetic(m, p) + u

    def sample(n: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
        centres = _uniform(g, (n, 2, 1, 2), -1.0, 1.0)
        angle = _uniform(g, (n, 2, 1), 0.0, 2 * np.pi)
        half = 0.3 * torch.stack([torch.cos(angle), torch.sin(angle)], -1)  # (n, 2, 1, 2)
        q = torch.cat([centres + half, centres - half], 2).reshape(n, 4, 2)
        return q, _uniform(g, (n, 4, 2), -0.4, 0.4)

    return ForeignSystem("user_two_dimers", 4, 2, 0.05, energy, sample, coupled=((0, 1), (2, 3)))


FOREIGN_SYSTEMS: dict[str, Callable[[], ForeignSystem]] = {
    "wall_chain": wall_chain,
    "polynomial_particle": polynomial_particle,
    "spring_triangle": spring_triangle,
    "two_dimers": two_dimers,
}
