"""Encoders and decoders between observations and entity phase space (role 1 and 3, for states).

Observations are per entity, (B, E, O). A coder maps data (q, p) to observations (`observe`),
observations to the latent phase state (`encode`), the latent back to observations (`decode`),
and observations back to data coordinates (`to_data`), so training compares like with like.

- CanonicalCoder: the data already is canonical (q, p); the latent is the data (O = 2D).
- AngleCoder: angles observed as (cos q, sin q, v) (Pendulum-v1, SymODEN). Encoding is exact
  and structured: q = atan2(sin, cos) (an MLP cannot map the circle to a line continuously), and
  p = s * v with a learned positive scale s per entity (v is a velocity; s plays the inertia).
- MLPCoder: generic observation vectors through learned MLPs both ways; the latent is only
  canonical up to what the dynamics loss can enforce.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from hwm_studio.models.mlp import MLP
from hwm_studio.state import PhaseState


class Coder(nn.Module, ABC):
    """Observation <-> phase-space maps for entity states."""

    name: ClassVar[str]
    angular: ClassVar[bool] = False  # data q are angles: compare them modulo 2 pi

    def __init__(self, n_entities: int, dim: int) -> None:
        super().__init__()
        self.n_entities, self.dim = n_entities, dim

    @property
    @abstractmethod
    def obs_dim(self) -> int:
        """Observation size per entity, O."""

    @abstractmethod
    def observe(self, q: Tensor, p: Tensor) -> Tensor:
        """Data (q, p) (..., E, D) -> observations (..., E, O). No learned parameters."""

    @abstractmethod
    def encode(self, obs: Tensor) -> PhaseState:
        """Observations (B, E, O) -> latent phase state (B, E, D)."""

    @abstractmethod
    def decode(self, q: Tensor, p: Tensor) -> Tensor:
        """Latent (..., E, D) -> observations (..., E, O)."""

    @abstractmethod
    def to_data(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """Observations (..., E, O) -> data coordinates (q, p)."""


class CanonicalCoder(Coder):
    name = "canonical"

    @property
    def obs_dim(self) -> int:
        return 2 * self.dim

    def observe(self, q: Tensor, p: Tensor) -> Tensor:
        return torch.cat([q, p], dim=-1)

    def encode(self, obs: Tensor) -> PhaseState:
        return PhaseState(obs[..., : self.dim], obs[..., self.dim :])

    def decode(self, q: Tensor, p: Tensor) -> Tensor:
        return torch.cat([q, p], dim=-1)

    def to_data(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        return obs[..., : self.dim], obs[..., self.dim :]


class AngleCoder(Coder):
    name = "angle"
    angular = True

    def __init__(self, n_entities: int, dim: int) -> None:
        if dim != 1:
            raise ValueError(f"the angle coder needs one angle per entity (dim 1), got dim {dim}")
        super().__init__(n_entities, dim)
        self.log_scale = nn.Parameter(torch.zeros(n_entities, 1))  # s = softplus(.) / softplus(0)

    @property
    def obs_dim(self) -> int:
        return 3

    def scale(self) -> Tensor:
        return F.softplus(self.log_scale) / F.softplus(torch.zeros(()))  # starts at exactly 1

    def observe(self, q: Tensor, p: Tensor) -> Tensor:
        return torch.cat([torch.cos(q), torch.sin(q), p], dim=-1)

    def encode(self, obs: Tensor) -> PhaseState:
        q = torch.atan2(obs[..., 1:2], obs[..., 0:1])
        return PhaseState(q, obs[..., 2:3] * self.scale())

    def decode(self, q: Tensor, p: Tensor) -> Tensor:
        return torch.cat([torch.cos(q), torch.sin(q), p / self.scale()], dim=-1)

    def to_data(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        return torch.atan2(obs[..., 1:2], obs[..., 0:1]), obs[..., 2:3]


class MLPCoder(Coder):
    """Learned encoder/decoder for generic per-entity observation vectors (here: the data's q, p)."""

    name = "mlp"

    def __init__(self, n_entities: int, dim: int, hidden: int = 64) -> None:
        super().__init__(n_entities, dim)
        self.encoder = MLP(2 * dim, 2 * dim, hidden=hidden, depth=2)
        self.decoder = MLP(2 * dim, 2 * dim, hidden=hidden, depth=2)

    @property
    def obs_dim(self) -> int:
        return 2 * self.dim

    def observe(self, q: Tensor, p: Tensor) -> Tensor:
        return torch.cat([q, p], dim=-1)

    def encode(self, obs: Tensor) -> PhaseState:
        z = self.encoder(obs)
        return PhaseState(z[..., : self.dim], z[..., self.dim :])

    def decode(self, q: Tensor, p: Tensor) -> Tensor:
        return self.decoder(torch.cat([q, p], dim=-1))

    def to_data(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        return obs[..., : self.dim], obs[..., self.dim :]


CODERS: dict[str, type[Coder]] = {c.name: c for c in (CanonicalCoder, AngleCoder, MLPCoder)}


def build_coder(name: str, n_entities: int, dim: int) -> Coder:
    try:
        return CODERS[name](n_entities, dim)
    except KeyError:
        raise ValueError(f"unknown observation coder {name!r}; use one of {', '.join(CODERS)}") from None
