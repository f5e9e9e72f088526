"""Learned energy terms: T = 1/2 p^T M^-1 p, V(q_i) shared across entities, U(q_i, q_j) symmetric.

Inductive biases, each a constructor choice rather than a hidden flag:
  - features: positions enter as q / q_scale, or as (cos q, sin q) when q are angles (the energy
    is then exactly periodic);
  - identical entities share every weight (permutation-equivariant); otherwise each entity also
    sees a small learned embedding, so links of different length can have different energies;
  - the interaction is a function of the difference q_i - q_j, even in it (symmetric in the pair);
    for entities that are not identical every pair also has its own embedding and gate, so pairs
    can differ and a pair can learn not to interact.
Gradients of V and U are analytic (ScalarMLP.value_and_grad pulled back through the features).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from hwm_studio.models.mlp import MLP, ScalarMLP
from hwm_studio.physics.energy import EnergyTerm
from hwm_studio.physics.held import held

SOFTPLUS_INV_ONE = math.log(math.e - 1.0)  # softplus(x) = 1


class PositionFeatures(nn.Module):
    """q (..., D) -> features (..., F) and the pull-back of feature gradients to q."""

    def __init__(self, q_scale: Sequence[float], angular: bool) -> None:
        super().__init__()
        self.angular = angular
        self.register_buffer("inv_scale", 1.0 / torch.as_tensor(q_scale, dtype=torch.float32))
        self.dim = len(q_scale)
        self.out_dim = 2 * self.dim if angular else self.dim

    def forward(self, q: Tensor) -> Tensor:
        if self.angular:
            return torch.cat([torch.cos(q), torch.sin(q)], dim=-1)
        return q * self.inv_scale.to(q.dtype)

    def pullback(self, q: Tensor, g: Tensor) -> Tensor:
        """d(energy)/dq from d(energy)/d(features) g (..., F)."""
        if self.angular:
            d = self.dim
            return g[..., d:] * torch.cos(q) - g[..., :d] * torch.sin(q)
        return g * self.inv_scale.to(q.dtype)

    @property
    def even_dim(self) -> int:
        return self.dim + self.dim**2 if self.angular else self.dim**2

    def even(self, d: Tensor) -> Tensor:
        """Features of a pair's difference d (..., D) that are the same for -d (..., even_dim):
        the products x_a x_b of x = d / scale, or (cos d_a, sin d_a sin d_b) for angles. Every
        smooth even function of d is a smooth function of these, so one network evaluation gives a
        symmetric pair energy (phi(f(d)) + phi(f(-d)) needs two)."""
        if self.angular:
            s = torch.sin(d)
            return torch.cat([torch.cos(d), (s.unsqueeze(-1) * s.unsqueeze(-2)).flatten(-2)], dim=-1)
        x = d * self.inv_scale.to(d.dtype)
        return (x.unsqueeze(-1) * x.unsqueeze(-2)).flatten(-2)

    def even_pullback(self, d: Tensor, g: Tensor) -> Tensor:
        """d(energy)/dd from d(energy)/d(even features) g (..., even_dim): with G the gradient on the
        products y_a y_b, the pull-back to y is (G + G^T) y."""
        n = self.dim
        if self.angular:
            s = torch.sin(d)
            gs = g[..., n:].unflatten(-1, (n, n))
            return ((gs + gs.transpose(-1, -2)) * s.unsqueeze(-2)).sum(-1) * torch.cos(d) - g[..., :n] * s
        inv = self.inv_scale.to(d.dtype)
        gx = g.unflatten(-1, (n, n))
        return ((gx + gx.transpose(-1, -2)) * (d * inv).unsqueeze(-2)).sum(-1) * inv


class EntityEmbedding(nn.Module):
    """Per-entity learned vectors (or nothing, for identical entities)."""

    def __init__(self, n_entities: int, identical: bool, size: int = 4) -> None:
        super().__init__()
        self.size = 0 if identical else size
        self.table = nn.Parameter(0.5 * torch.randn(n_entities, size)) if not identical else None

    def attach(self, feats: Tensor) -> Tensor:
        """Concatenate the embedding to per-entity features (B, E, F) -> (B, E, F + size)."""
        if self.table is None:
            return feats
        emb = self.table.to(feats.dtype).expand(*feats.shape[:-1], self.size)
        return torch.cat([feats, emb], dim=-1)


class SeparableKinetic(EnergyTerm):
    """T = 1/2 sum_i p_i^T A_i p_i, A_i = L_i L_i^T positive definite, constant (mass matrix inverse).

    One shared A for identical entities, one per entity otherwise. Starts at A = I.
    """

    kind = "kinetic"
    uses_q = False
    uses_p = True

    def __init__(self, n_entities: int, dim: int, identical: bool) -> None:
        super().__init__()
        n = 1 if identical else n_entities
        raw = torch.zeros(n, dim, dim)
        raw.diagonal(dim1=-2, dim2=-1).fill_(SOFTPLUS_INV_ONE)
        self.raw = nn.Parameter(raw)

    def inverse_mass(self) -> Tensor:
        """A = L L^T, (E or 1, D, D): positive definite by construction (once per rollout: `held`)."""
        return held(self, "inverse_mass", self._inverse_mass)

    def _inverse_mass(self) -> Tensor:
        diag = F.softplus(self.raw.diagonal(dim1=-2, dim2=-1)) + 1e-4
        lower = torch.tril(self.raw, diagonal=-1) + torch.diag_embed(diag)
        return lower @ lower.transpose(-1, -2)

    def grad_p(self, q: Tensor, p: Tensor) -> Tensor:
        # (A p)_i = sum_j A_ij p_j written elementwise: a broadcast batched matmul costs far more
        # per call than these three small ops at the studio's batch size of one.
        return (self.inverse_mass().to(p.dtype) * p.unsqueeze(-2)).sum(-1)

    def energy(self, q: Tensor, p: Tensor) -> Tensor:
        return 0.5 * (p * self.grad_p(q, p)).sum(dim=(1, 2))

    def momentum(self, q: Tensor, velocity: Tensor) -> Tensor:
        """p with A p = velocity, per entity: (B, E, D)."""
        a = self.inverse_mass().to(velocity.dtype)  # (E or 1, D, D)
        return torch.linalg.solve(a.expand(*velocity.shape[:-1], -1, -1), velocity)


class ConfigurationKinetic(EnergyTerm):
    """T = 1/2 p^T A(q) p over all entities jointly, A(q) = L(q) L(q)^T + eps I.

    For systems whose mass matrix depends on the configuration (the double pendulum): H is then
    not separable and the integrators take their implicit paths. Both gradients are analytic.
    """

    kind = "kinetic"
    uses_q = True
    uses_p = True

    def __init__(self, features: PositionFeatures, n_entities: int, dim: int, hidden: int, activation: str) -> None:
        super().__init__()
        self.features = features
        self.n = n_entities * dim
        self.net = MLP(n_entities * features.out_dim, self.n * (self.n + 1) // 2, hidden, 2, activation, zero_last=True)
        self.register_buffer("tril_index", torch.tril_indices(self.n, self.n))
        self.diag_bias = SOFTPLUS_INV_ONE

    def _factor(self, q: Tensor) -> tuple[Tensor, Tensor, Callable[[Tensor], Tensor]]:
        """L(q) (B, n, n), the diagonal's pre-softplus values, and the MLP's vjp."""
        b = q.shape[0]
        entries, vjp = self.net.forward_and_vjp(self.features(q).reshape(b, -1))  # (B, n(n+1)/2)
        raw = q.new_zeros(b, self.n, self.n)
        raw[:, self.tril_index[0], self.tril_index[1]] = entries
        pre = raw.diagonal(dim1=-2, dim2=-1) + self.diag_bias
        lower = torch.tril(raw, diagonal=-1) + torch.diag_embed(F.softplus(pre) + 1e-3)
        return lower, pre, vjp

    def inverse_mass(self, q: Tensor) -> Tensor:
        """A(q), shape (B, E*D, E*D)."""
        lower = self._factor(q)[0]
        return lower @ lower.transpose(-1, -2)

    def grad_p(self, q: Tensor, p: Tensor) -> Tensor:
        a = self.inverse_mass(q)
        return (a @ p.reshape(p.shape[0], self.n, 1)).reshape(p.shape)

    def momentum(self, q: Tensor, velocity: Tensor) -> Tensor:
        """p with A(q) p = velocity, over all entities jointly: (B, E, D)."""
        a = self.inverse_mass(q)
        return torch.linalg.solve(a, velocity.reshape(velocity.shape[0], self.n)).reshape(velocity.shape)

    def grad_q(self, q: Tensor, p: Tensor) -> Tensor:
        return self.grad_qp(q, p)[0]

    def grad_qp(self, q: Tensor, p: Tensor) -> tuple[Tensor, Tensor]:
        """Both gradients from one factorisation, analytically (so the step traces and fuses).

        T = 1/2 |L^T p|^2, so with v = L^T p: dT/dL_ij = p_i v_j on the lower triangle; the
        diagonal passes through softplus (derivative sigmoid); then back through the MLP and the
        position features.
        """
        b = q.shape[0]
        lower, pre, vjp = self._factor(q)
        pv = p.reshape(b, self.n, 1)
        v = lower.transpose(-1, -2) @ pv  # (B, n, 1)
        grad_p = (lower @ v).reshape(p.shape)  # A p = L (L^T p)
        d_lower = pv * v.transpose(-1, -2)  # (B, n, n): p_i v_j
        d_raw = torch.tril(d_lower, diagonal=-1) + torch.diag_embed(
            d_lower.diagonal(dim1=-2, dim2=-1) * torch.sigmoid(pre)
        )
        d_feats = vjp(d_raw[:, self.tril_index[0], self.tril_index[1]])  # (B, E * F)
        grad_q = self.features.pullback(q, d_feats.reshape(*q.shape[:2], -1))
        return grad_q, grad_p

    def energy(self, q: Tensor, p: Tensor) -> Tensor:
        return 0.5 * (p * self.grad_p(q, p)).sum(dim=(1, 2))


class LearnedPotential(EnergyTerm):
    """V = sum_i phi(features(q_i), embedding_i), phi one ScalarMLP shared by all entities."""

    kind = "potential"

    def __init__(
        self, features: PositionFeatures, embedding: EntityEmbedding, hidden: int, depth: int, activation: str
    ) -> None:
        super().__init__()
        self.features, self.embedding = features, embedding
        self.net = ScalarMLP(features.out_dim + embedding.size, hidden, depth, activation)

    def energy(self, q: Tensor, p: Tensor) -> Tensor:
        x = self.embedding.attach(self.features(q))
        return self.net.value_and_grad(x)[0].sum(dim=1)

    def grad_q(self, q: Tensor, p: Tensor) -> Tensor:
        x = self.embedding.attach(self.features(q))
        g = self.net.grad(x)  # (B, E, F + emb)
        if self.embedding.size:
            g = g[..., : self.features.out_dim]
        return self.features.pullback(q, g)


PAIR_FEATURES = ("symmetrised", "even")


class LearnedInteraction(EnergyTerm):
    """U = sum over pairs p = (i, j) of g_p phi(d_ij, e_p), symmetric in the pair's two bodies.

    Symmetric by construction, in one of two ways (`pair_features`): 'even' feeds phi the even
    features of d = q_i - q_j (PositionFeatures.even: one evaluation per pair); 'symmetrised' (the
    models saved before 'even' existed) sums phi(f(d)) + phi(f(-d)) (two).
    Shared (identical entities): one phi, no e_p, g_p = 1, so no pair is special and the energy is
    permutation-equivariant. Per pair (`per_pair`): each pair has a learned embedding e_p, so pairs
    can interact differently (springs of different stiffness), and a gate g_p, so a pair can stop
    interacting at all: `pair_forces` is what a sparsity pressure acts on (HamiltonianWorldModel),
    `coupling` what the studio and `eval` show.
    """

    kind = "interaction"

    def __init__(
        self,
        features: PositionFeatures,
        n_entities: int,
        pairs: Sequence[Sequence[int]],
        hidden: int,
        depth: int,
        activation: str,
        per_pair: bool = False,
        embedding_size: int = 4,
        pair_features: str = "symmetrised",
    ) -> None:
        super().__init__()
        if pair_features not in PAIR_FEATURES:
            raise ValueError(f"pair_features must be one of {', '.join(PAIR_FEATURES)}, got {pair_features!r}")
        incidence = torch.zeros(len(pairs), n_entities)
        for row, (i, j) in enumerate(pairs):
            incidence[row, i], incidence[row, j] = 1.0, -1.0
        self.register_buffer("incidence", incidence)  # (P, E): d_ij = q_i - q_j
        self.pairs = [(int(i), int(j)) for i, j in pairs]
        self.features = features
        self.even = pair_features == "even"
        self.feature_dim = features.even_dim if self.even else features.out_dim
        self.embedding_size = embedding_size if per_pair else 0
        self.net = ScalarMLP(self.feature_dim + self.embedding_size, hidden, depth, activation)
        if per_pair:
            self.pair_embedding = nn.Parameter(0.5 * torch.randn(len(pairs), embedding_size))
            self.gate = nn.Parameter(torch.ones(len(pairs)))
        else:
            self.pair_embedding = self.gate = None

    def _diffs(self, q: Tensor) -> Tensor:
        return torch.matmul(self.incidence.to(q.dtype), q)  # (B, P, D)

    def _inputs(self, d: Tensor) -> Tensor:
        """The network's inputs with each pair's embedding: (B, P, F + emb) for even features,
        (2, B, P, F + emb) for f(d) and f(-d)."""
        x = self.features.even(d) if self.even else self.features(torch.stack([d, -d]))
        if self.pair_embedding is None:
            return x
        emb = self.pair_embedding.to(x.dtype).expand(*x.shape[:-1], self.embedding_size)
        return torch.cat([x, emb], dim=-1)

    def energy(self, q: Tensor, p: Tensor) -> Tensor:
        per_pair = self.net.value_and_grad(self._inputs(self._diffs(q)))[0]
        if not self.even:
            per_pair = per_pair.sum(0)  # (B, P)
        if self.gate is not None:
            per_pair = per_pair * self.gate.to(per_pair.dtype)
        return per_pair.sum(-1)

    def pair_forces(self, q: Tensor) -> Tensor:
        """dU_p / d(q_i - q_j) for every pair: (B, P, D)."""
        d = self._diffs(q)
        g = self.net.grad(self._inputs(d))[..., : self.feature_dim]
        if self.even:
            gd = self.features.even_pullback(d, g)
        else:
            gd = self.features.pullback(d, g[0]) - self.features.pullback(-d, g[1])
        if self.gate is not None:
            gd = gd * self.gate.to(gd.dtype)[:, None]
        return gd

    def grad_q(self, q: Tensor, p: Tensor) -> Tensor:
        return torch.matmul(self.incidence.to(q.dtype).T, self.pair_forces(q))

    @torch.no_grad()
    def coupling(self, q: Tensor) -> dict[tuple[int, int], float]:
        """How strongly each pair interacts on the states q (B, E, D): its force's RMS."""
        rms = self.pair_forces(q).pow(2).sum(-1).mean(0).sqrt()  # (P,)
        return {pair: float(v) for pair, v in zip(self.pairs, rms.tolist(), strict=True)}


class MonolithicEnergy(EnergyTerm):
    """H(q, p) as one MLP of every coordinate (the HNN baseline): no structure to decompose."""

    kind = "unstructured"
    uses_q = True
    uses_p = True

    def __init__(self, n_entities: int, dim: int, q_scale: Sequence[float], p_scale: Sequence[float],
                 hidden: int, depth: int, activation: str) -> None:  # fmt: skip
        super().__init__()
        self.net = ScalarMLP(2 * n_entities * dim, hidden, depth, activation)
        self.register_buffer("inv_q", 1.0 / torch.as_tensor(q_scale, dtype=torch.float32))
        self.register_buffer("inv_p", 1.0 / torch.as_tensor(p_scale, dtype=torch.float32))

    def _x(self, q: Tensor, p: Tensor) -> Tensor:
        b = q.shape[0]
        return torch.cat([(q * self.inv_q.to(q.dtype)).reshape(b, -1), (p * self.inv_p.to(p.dtype)).reshape(b, -1)], 1)

    def energy(self, q: Tensor, p: Tensor) -> Tensor:
        return self.net.value_and_grad(self._x(q, p))[0]

    def grad_qp(self, q: Tensor, p: Tensor) -> tuple[Tensor, Tensor]:
        g = self.net.grad(self._x(q, p))
        n = q[0].numel()
        gq = g[:, :n].reshape(q.shape) * self.inv_q.to(q.dtype)
        gp = g[:, n:].reshape(p.shape) * self.inv_p.to(p.dtype)
        return gq, gp

    def grad_q(self, q: Tensor, p: Tensor) -> Tensor:
        return self.grad_qp(q, p)[0]

    def grad_p(self, q: Tensor, p: Tensor) -> Tensor:
        return self.grad_qp(q, p)[1]
