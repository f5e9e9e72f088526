"""Phase-space state: positions q and momenta p of every entity, kept as two named tensors.

Why not one flat vector: entity structure (which numbers belong to which body) is what
interaction terms, the 3D view and the phase portraits are built on; splitting a flat vector
in half loses it and invites q/p mix-ups.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True, slots=True)
class PhaseState:
    """Canonical coordinates of a batch of systems.

    Attributes:
        q: generalized positions, shape (B, E, D) (batch, entities, dims per entity).
        p: conjugate momenta, same shape as q.
    """

    q: Tensor
    p: Tensor

    def __post_init__(self) -> None:
        if self.q.ndim != 3:
            raise ValueError(f"PhaseState.q must have shape (batch, entities, dim), got {tuple(self.q.shape)}")
        if self.q.shape != self.p.shape:
            raise ValueError(
                f"PhaseState q and p must have the same shape, got {tuple(self.q.shape)} and {tuple(self.p.shape)}"
            )

    @property
    def batch_size(self) -> int:
        return self.q.shape[0]

    @property
    def n_entities(self) -> int:
        return self.q.shape[1]

    @property
    def dim(self) -> int:
        return self.q.shape[2]

    @property
    def device(self) -> torch.device:
        return self.q.device

    @property
    def dtype(self) -> torch.dtype:
        return self.q.dtype

    def to(self, *args: object, **kwargs: object) -> PhaseState:
        return PhaseState(self.q.to(*args, **kwargs), self.p.to(*args, **kwargs))

    def detach(self) -> PhaseState:
        return PhaseState(self.q.detach(), self.p.detach())

    def axpy(self, scale: float | Tensor, other: PhaseState) -> PhaseState:
        """Return self + scale * other (the update every integrator stage is built from)."""
        return PhaseState(self.q + scale * other.q, self.p + scale * other.p)

    def dot(self, other: PhaseState) -> Tensor:
        """Euclidean inner product over entities and dims, per batch element: shape (B,)."""
        return (self.q * other.q).sum(dim=(1, 2)) + (self.p * other.p).sum(dim=(1, 2))

    def expand(self, batch_size: int) -> PhaseState:
        """Broadcast a batch-1 state to `batch_size` (planning rolls one state out many ways)."""
        if self.batch_size == batch_size:
            return self
        if self.batch_size != 1:
            raise ValueError(f"cannot broadcast a state of batch {self.batch_size} to batch {batch_size}")
        return PhaseState(self.q.expand(batch_size, -1, -1), self.p.expand(batch_size, -1, -1))

    @staticmethod
    def zeros_like(other: PhaseState) -> PhaseState:
        return PhaseState(torch.zeros_like(other.q), torch.zeros_like(other.p))

    @staticmethod
    def stack(states: list[PhaseState], dim: int = 1) -> tuple[Tensor, Tensor]:
        """Stack a time series of states into (B, T, E, D) tensors for q and p."""
        return torch.stack([s.q for s in states], dim=dim), torch.stack([s.p for s in states], dim=dim)
