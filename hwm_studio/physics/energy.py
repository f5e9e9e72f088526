"""Energy terms and the Hamiltonian built from them.

H = T(q, p) + sum_i V_i(q_i) + sum_{i<j} U_ij(q_i, q_j). Each term is its own module so the
studio can show the decomposition (kinetic, potential, interaction) and so integrators can ask
whether H is separable (every term depends on q alone or p alone), which makes leapfrog explicit.

Gradients: a term may give analytic dE/dq and dE/dp (cheap, fuses well, used by known systems
and by the learned MLP energies); otherwise autograd is used.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn

from hwm_studio.state import PhaseState

# 'unstructured' is a monolithic H(q, p) (the HNN baseline): it cannot be split, so it is shown as such.
ENERGY_KINDS: tuple[str, ...] = ("kinetic", "potential", "interaction", "unstructured")


class EnergyTerm(nn.Module, ABC):
    """One additive piece of a Hamiltonian.

    Subclasses set `kind` (one of ENERGY_KINDS) and `uses_q` / `uses_p`, implement `energy`,
    and may override `grad_q` / `grad_p` with analytic forms.
    """

    kind: ClassVar[str]
    uses_q: ClassVar[bool] = True
    uses_p: ClassVar[bool] = False

    @abstractmethod
    def energy(self, q: Tensor, p: Tensor) -> Tensor:
        """Energy per batch element, shape (B,), for q and p shaped (B, E, D)."""

    def grad_q(self, q: Tensor, p: Tensor) -> Tensor:
        """dE/dq, shape (B, E, D). Autograd unless overridden."""
        return _autograd_grad(self, q, p, wrt_q=True)

    def grad_p(self, q: Tensor, p: Tensor) -> Tensor:
        """dE/dp, shape (B, E, D). Autograd unless overridden."""
        return _autograd_grad(self, q, p, wrt_q=False)

    def grad_qp(self, q: Tensor, p: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """(dE/dq, dE/dp), None where the term does not depend on that variable.

        Terms of both q and p may override this to get both from one pass.
        """
        return (self.grad_q(q, p) if self.uses_q else None, self.grad_p(q, p) if self.uses_p else None)


def _autograd_grad(term: EnergyTerm, q: Tensor, p: Tensor, wrt_q: bool) -> Tensor:
    """Gradient of term.energy by autograd, differentiable itself when grad mode is on.

    When called for training (grad mode on) the result keeps its graph, so losses on the
    vector field train the energy's parameters. At inference it builds a throwaway graph.
    """
    keep_graph = torch.is_grad_enabled()
    with torch.enable_grad():
        x = q if wrt_q else p
        if not x.requires_grad:
            x = x.detach().requires_grad_(True)
        e = term.energy(x, p) if wrt_q else term.energy(q, x)
        (g,) = torch.autograd.grad(e.sum(), x, create_graph=keep_graph)
    return g


def sum_or_zeros(parts: list[Tensor], like: Tensor) -> Tensor:
    """Sum of gradient parts (no zeros tensor to start from: fewer ops in fused graphs)."""
    if not parts:
        return torch.zeros_like(like)
    total = parts[0]
    for g in parts[1:]:
        total = total + g
    return total


class Hamiltonian(nn.Module):
    """Sum of energy terms, with the decomposition and gradient the physics needs."""

    def __init__(self, terms: Sequence[EnergyTerm]) -> None:
        super().__init__()
        if not terms:
            raise ValueError("a Hamiltonian needs at least one energy term")
        for t in terms:
            if t.kind not in ENERGY_KINDS:
                raise ValueError(f"energy term {type(t).__name__} has unknown kind {t.kind!r}")
        self.terms = nn.ModuleList(terms)

    @property
    def separable(self) -> bool:
        """True when H = T(p) + V(q): no term depends on both q and p."""
        return all(not (t.uses_q and t.uses_p) for t in self.terms)

    def energy(self, state: PhaseState) -> Tensor:
        """Total H, shape (B,)."""
        return torch.stack([t.energy(state.q, state.p) for t in self.terms]).sum(0)

    def decompose(self, state: PhaseState) -> dict[str, Tensor]:
        """H split by kind, each (B,), plus 'total'. Kinds with no term report zeros."""
        out = {k: torch.zeros(state.batch_size, dtype=state.dtype, device=state.device) for k in ENERGY_KINDS}
        for t in self.terms:
            out[t.kind] = out[t.kind] + t.energy(state.q, state.p)
        out["total"] = sum(out[k] for k in ENERGY_KINDS)
        return out

    def grad_q(self, q: Tensor, p: Tensor) -> Tensor:
        """dH/dq, shape (B, E, D)."""
        return sum_or_zeros([t.grad_q(q, p) for t in self.terms if t.uses_q], q)

    def grad_p(self, q: Tensor, p: Tensor) -> Tensor:
        """dH/dp, shape (B, E, D)."""
        return sum_or_zeros([t.grad_p(q, p) for t in self.terms if t.uses_p], p)

    def grad(self, state: PhaseState) -> PhaseState:
        """grad H as a state-shaped pair (dH/dq, dH/dp)."""
        parts = [t.grad_qp(state.q, state.p) for t in self.terms]
        return PhaseState(
            sum_or_zeros([g for g, _ in parts if g is not None], state.q),
            sum_or_zeros([g for _, g in parts if g is not None], state.p),
        )

    def hamilton_field(self, state: PhaseState) -> PhaseState:
        """J grad H = (dH/dp, -dH/dq): the conservative part of the dynamics."""
        g = self.grad(state)
        return PhaseState(g.p, -g.q)
