"""Analytic energy terms with exact gradients, the building blocks of the ground-truth systems.

Per-entity constants are buffers (so `.to(device)` moves them) and are cast to the input's
dtype at use, so the same system runs in float32 for models and float64 for tests.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from hwm_studio.physics.energy import EnergyTerm


def _per_entity(values: float | Sequence[float], name: str, positive: bool = True) -> Tensor:
    t = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} must be finite, got {values}")
    if positive and (t <= 0).any():
        raise ValueError(f"{name} must be positive, got {values}")
    return t.reshape(1, -1, 1)  # (1, E or 1, 1): broadcasts over batch and dims


class QuadraticKinetic(EnergyTerm):
    """T = sum_i |p_i|^2 / (2 m_i): constant (possibly per-entity) mass or inertia."""

    kind = "kinetic"
    uses_q = False
    uses_p = True

    def __init__(self, mass: float | Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("inv_mass", 1.0 / _per_entity(mass, "mass"))

    def energy(self, q: Tensor, p: Tensor) -> Tensor:
        return 0.5 * (self.inv_mass.to(p.dtype) * p * p).sum(dim=(1, 2))

    def grad_p(self, q: Tensor, p: Tensor) -> Tensor:
        return self.inv_mass.to(p.dtype) * p


class HarmonicPotential(EnergyTerm):
    """V = sum_i k_i |q_i|^2 / 2: each entity tied to the origin by a spring."""

    kind = "potential"

    def __init__(self, stiffness: float | Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("k", _per_entity(stiffness, "stiffness"))

    def energy(self, q: Tensor, p: Tensor) -> Tensor:
        return 0.5 * (self.k.to(q.dtype) * q * q).sum(dim=(1, 2))

    def grad_q(self, q: Tensor, p: Tensor) -> Tensor:
        return self.k.to(q.dtype) * q


class CosinePotential(EnergyTerm):
    """V = sum_i a_i (1 - cos(q_i - phase)): gravity on a rigid pendulum link.

    phase = 0 puts the minimum at q = 0 (hanging down); phase = pi puts it at q = pi, the
    convention of gymnasium's Pendulum-v1 where q = 0 is upright.
    """

    kind = "potential"

    def __init__(self, amplitude: float | Sequence[float], phase: float = 0.0) -> None:
        super().__init__()
        self.register_buffer("a", _per_entity(amplitude, "amplitude"))
        self.phase = float(phase)

    def energy(self, q: Tensor, p: Tensor) -> Tensor:
        return (self.a.to(q.dtype) * (1.0 - torch.cos(q - self.phase))).sum(dim=(1, 2))

    def grad_q(self, q: Tensor, p: Tensor) -> Tensor:
        return self.a.to(q.dtype) * torch.sin(q - self.phase)


class SpringInteraction(EnergyTerm):
    """U = sum over listed pairs (i, j) of k/2 |q_j - q_i|^2 (q are displacements from rest)."""

    kind = "interaction"

    def __init__(self, n_entities: int, pairs: Sequence[tuple[int, int]], stiffness: float) -> None:
        super().__init__()
        if stiffness <= 0:
            raise ValueError(f"stiffness must be positive, got {stiffness}")
        incidence = torch.zeros(len(pairs), n_entities, dtype=torch.float64)  # (P, E)
        for row, (i, j) in enumerate(pairs):
            if not (0 <= i < n_entities and 0 <= j < n_entities and i != j):
                raise ValueError(f"bad spring pair {(i, j)} for {n_entities} entities")
            incidence[row, i] = -1.0
            incidence[row, j] = 1.0
        self.register_buffer("incidence", incidence)
        self.k = float(stiffness)

    def _stretch(self, q: Tensor) -> Tensor:
        return torch.einsum("pe,bed->bpd", self.incidence.to(q.dtype), q)  # (B, P, D)

    def energy(self, q: Tensor, p: Tensor) -> Tensor:
        s = self._stretch(q)
        return 0.5 * self.k * (s * s).sum(dim=(1, 2))

    def grad_q(self, q: Tensor, p: Tensor) -> Tensor:
        return self.k * torch.einsum("pe,bpd->bed", self.incidence.to(q.dtype), self._stretch(q))


class GravityInteraction(EnergyTerm):
    """U = -sum_{i<j} G m_i m_j / sqrt(|q_i - q_j|^2 + eps^2) (Plummer-softened when eps > 0)."""

    kind = "interaction"

    def __init__(self, masses: Sequence[float], gravity: float = 1.0, softening: float = 0.0) -> None:
        super().__init__()
        m = _per_entity(masses, "masses").reshape(-1)
        self.register_buffer("mm", m[:, None] * m[None, :])  # (E, E)
        self.g = float(gravity)
        self.eps2 = float(softening) ** 2

    def _pairs(self, q: Tensor) -> tuple[Tensor, Tensor]:
        diff = q[:, :, None, :] - q[:, None, :, :]  # (B, E, E, D): q_i - q_j
        r2 = (diff * diff).sum(-1) + self.eps2  # (B, E, E)
        eye = torch.eye(q.shape[1], dtype=torch.bool, device=q.device)
        r2 = torch.where(eye, torch.ones_like(r2), r2)  # keep the diagonal finite; masked below
        return diff, r2

    def energy(self, q: Tensor, p: Tensor) -> Tensor:
        _, r2 = self._pairs(q)
        mm = self.mm.to(q.dtype)
        off = 1.0 - torch.eye(q.shape[1], dtype=q.dtype, device=q.device)
        return -0.5 * self.g * (off * mm * torch.rsqrt(r2)).sum(dim=(1, 2))  # 0.5: each pair twice

    def grad_q(self, q: Tensor, p: Tensor) -> Tensor:
        diff, r2 = self._pairs(q)
        off = 1.0 - torch.eye(q.shape[1], dtype=q.dtype, device=q.device)
        w = self.g * off * self.mm.to(q.dtype) * r2.pow(-1.5)  # (B, E, E)
        return (w[..., None] * diff).sum(dim=2)


class DoublePendulumKinetic(EnergyTerm):
    """Kinetic energy of the planar double pendulum in canonical momenta (absolute angles).

    T = [m2 l2^2 p1^2 + (m1+m2) l1^2 p2^2 - 2 m2 l1 l2 p1 p2 cos(q1-q2)]
        / [2 m2 l1^2 l2^2 (m1 + m2 sin^2(q1-q2))]
    The mass matrix depends on q, so H is not separable: dq/dt != p / m.
    Expects q, p of shape (B, 2, 1).
    """

    kind = "kinetic"
    uses_q = True
    uses_p = True

    def __init__(self, m1: float, m2: float, l1: float, l2: float) -> None:
        super().__init__()
        for name, v in (("m1", m1), ("m2", m2), ("l1", l1), ("l2", l2)):
            if v <= 0:
                raise ValueError(f"{name} must be positive, got {v}")
        self.m1, self.m2, self.l1, self.l2 = float(m1), float(m2), float(l1), float(l2)

    def _parts(self, q: Tensor, p: Tensor) -> tuple[Tensor, ...]:
        m1, m2, l1, l2 = self.m1, self.m2, self.l1, self.l2
        delta = q[:, 0, 0] - q[:, 1, 0]
        c, s = torch.cos(delta), torch.sin(delta)
        p1, p2 = p[:, 0, 0], p[:, 1, 0]
        num = m2 * l2**2 * p1**2 + (m1 + m2) * l1**2 * p2**2 - 2 * m2 * l1 * l2 * p1 * p2 * c
        den = 2 * m2 * l1**2 * l2**2 * (m1 + m2 * s**2)
        return num, den, c, s, p1, p2

    def energy(self, q: Tensor, p: Tensor) -> Tensor:
        num, den, *_ = self._parts(q, p)
        return num / den

    def grad_q(self, q: Tensor, p: Tensor) -> Tensor:
        m2, l1, l2 = self.m2, self.l1, self.l2
        num, den, c, s, p1, p2 = self._parts(q, p)
        dnum = 2 * m2 * l1 * l2 * p1 * p2 * s  # d num / d delta
        dden = 2 * m2 * l1**2 * l2**2 * m2 * 2 * s * c  # d den / d delta
        dt = (dnum * den - num * dden) / (den * den)
        return torch.stack([dt, -dt], dim=1)[..., None]  # d delta/dq1 = 1, d delta/dq2 = -1

    def grad_p(self, q: Tensor, p: Tensor) -> Tensor:
        m1, m2, l1, l2 = self.m1, self.m2, self.l1, self.l2
        _, den, c, _, p1, p2 = self._parts(q, p)
        g1 = (2 * m2 * l2**2 * p1 - 2 * m2 * l1 * l2 * p2 * c) / den
        g2 = (2 * (m1 + m2) * l1**2 * p2 - 2 * m2 * l1 * l2 * p1 * c) / den
        return torch.stack([g1, g2], dim=1)[..., None]
