"""Learned port terms: friction R(z) (PSD by construction), input map G(q), residual r(z, u).

Friction acts on momenta: R = diag(0, Gamma(z)) with Gamma = diag(softplus(.)) >= 0, so
dissipated power grad_p H^T Gamma grad_p H is never negative whatever the weights. G(q) starts
as a learned constant; its state-dependent correction and the residual start at exactly zero
(zero-initialised last layers), so the model begins as a pure conservative system and only
grows what the data asks for.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from hwm_studio.models.energies import PositionFeatures
from hwm_studio.models.mlp import MLP
from hwm_studio.physics.energy import Hamiltonian
from hwm_studio.physics.held import held
from hwm_studio.physics.port_hamiltonian import Dissipation, InputMap, Residual
from hwm_studio.state import PhaseState

INITIAL_GAMMA = 0.05


def _inv_softplus(y: float) -> float:
    return float(torch.log(torch.expm1(torch.tensor(y))))


class ConstantFriction(Dissipation):
    """Gamma = softplus(theta), one value per entity (or shared) and dim: viscous friction."""

    def __init__(self, n_entities: int, dim: int, identical: bool) -> None:
        super().__init__()
        n = 1 if identical else n_entities
        self.theta = nn.Parameter(torch.full((n, dim), _inv_softplus(INITIAL_GAMMA)))

    def gamma(self) -> Tensor:
        return held(self, "gamma", lambda: F.softplus(self.theta))  # (E or 1, D), once per rollout

    momentum_only = True

    def momentum_part(self, state: PhaseState, hamiltonian: Hamiltonian) -> Tensor:
        gp = hamiltonian.grad_p(state.q, state.p)
        return self.gamma().to(gp.dtype) * gp


class StateFriction(Dissipation):
    """Gamma(z)_i = softplus(MLP(features(q_i), p_i / p_scale)): friction that depends on the state."""

    def __init__(self, features: PositionFeatures, p_scale: Sequence[float], hidden: int) -> None:
        super().__init__()
        self.features = features
        dim = len(p_scale)
        self.register_buffer("inv_p", 1.0 / torch.as_tensor(p_scale, dtype=torch.float32))
        self.net = MLP(features.out_dim + dim, dim, hidden, 2, "tanh", zero_last=True)
        self.bias = _inv_softplus(INITIAL_GAMMA)

    def gamma(self, state: PhaseState) -> Tensor:
        x = torch.cat([self.features(state.q), state.p * self.inv_p.to(state.p.dtype)], dim=-1)
        return F.softplus(self.net(x) + self.bias)  # (B, E, D)

    momentum_only = True

    def momentum_part(self, state: PhaseState, hamiltonian: Hamiltonian) -> Tensor:
        gp = hamiltonian.grad_p(state.q, state.p)
        return self.gamma(state) * gp


class LearnedInputMap(InputMap):
    """G(q) u on momenta: G(q) = G0 + MLP(features(q)) (the MLP part optional, zero at start)."""

    def __init__(
        self, n_entities: int, dim: int, action_dim: int, features: PositionFeatures | None, hidden: int
    ) -> None:
        super().__init__()
        self.n_entities, self.dim, self.action_dim = n_entities, dim, action_dim
        self.g0 = nn.Parameter(torch.zeros(n_entities * dim, action_dim))
        self.features = features
        self.net = (
            None
            if features is None
            else MLP(n_entities * features.out_dim, n_entities * dim * action_dim, hidden, 2, "tanh", zero_last=True)
        )

    def _state_part(self, q: Tensor) -> Tensor:
        """G(q) - G0, the learned state-dependent correction: (B, E*D, A)."""
        assert self.net is not None
        assert self.features is not None
        return self.net(self.features(q).reshape(q.shape[0], -1)).reshape(q.shape[0], *self.g0.shape)

    def matrix(self, q: Tensor) -> Tensor:
        """G(q), (B or 1, E*D, A)."""
        g = self.g0.to(q.dtype)[None]
        return g if self.net is None else g + self._state_part(q)

    momentum_only = True
    reads_momentum = False

    def momentum_part(self, state: PhaseState, u: Tensor) -> Tensor:
        force = u @ self.g0.to(u.dtype).T  # (B, E*D): the constant part as one product
        if self.net is not None:
            force = force + (self._state_part(state.q) @ u[..., None])[..., 0]
        force = force.reshape(force.shape[0], self.n_entities, self.dim)
        return force if force.shape == state.p.shape else force.expand_as(state.p)


class LearnedResidual(Residual):
    """r(z, u) = MLP(features(q), p / p_scale, u) for all entities jointly, on positions and
    momenta; starts at zero."""

    parts = 2  # (r_q, r_p)

    def __init__(
        self, features: PositionFeatures, n_entities: int, p_scale: Sequence[float], action_dim: int, hidden: int
    ) -> None:
        super().__init__()
        dim = len(p_scale)
        self.features, self.n_entities, self.dim, self.action_dim = features, n_entities, dim, action_dim
        self.register_buffer("inv_p", 1.0 / torch.as_tensor(p_scale, dtype=torch.float32))
        in_dim = n_entities * (features.out_dim + dim) + action_dim
        self.net = MLP(in_dim, self.parts * n_entities * dim, hidden, 2, "tanh", zero_last=True)

    def _outputs(self, state: PhaseState, u: Tensor | None) -> Tensor:
        b = state.batch_size
        inputs = [self.features(state.q).reshape(b, -1), (state.p * self.inv_p.to(state.p.dtype)).reshape(b, -1)]
        if self.action_dim:
            inputs.append(u if u is not None else state.q.new_zeros(b, self.action_dim))
        return self.net(torch.cat(inputs, dim=-1)).reshape(b, self.parts, self.n_entities, self.dim)

    def apply(self, state: PhaseState, u: Tensor | None) -> PhaseState:
        rq, rp = self._outputs(state, u).unbind(1)
        return PhaseState(rq, rp)


class LearnedForceResidual(LearnedResidual):
    """r(z, u) = (0, MLP(...)): a residual force, which changes momenta and leaves the kinematics
    dq/dt = dH/dp to the kinetic energy. Momentum-only, so a rollout's integrator can carry each
    step's closing force dH/dq into the next (one force evaluation per leapfrog step, not two)."""

    parts = 1
    momentum_only = True

    def momentum_part(self, state: PhaseState, u: Tensor | None) -> Tensor:
        return self._outputs(state, u)[:, 0]

    def apply(self, state: PhaseState, u: Tensor | None) -> PhaseState:
        return PhaseState(torch.zeros_like(state.q), self.momentum_part(state, u))
