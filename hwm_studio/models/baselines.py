"""Baselines in the same interface and training loop as the HWM, so comparisons are like for like.

- MLPTransition: an unstructured discrete map z_{t+1} = z_t + f(z_t, u_t) (the usual latent
  world-model transition). No energy, no time continuity.
- NeuralODE: an unconstrained vector field dz/dt = f(z, u), integrated with RK4.
- HNN: a conservative Hamiltonian network (Greydanus et al. 2019): one MLP H(q, p), no friction,
  no inputs, no residual; integrated with RK4 by default as in the paper's evaluation.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from hwm_studio.models.base import WorldModel
from hwm_studio.models.config import ModelConfig
from hwm_studio.models.energies import MonolithicEnergy
from hwm_studio.models.mlp import MLP
from hwm_studio.physics.energy import Hamiltonian
from hwm_studio.physics.field import VectorField
from hwm_studio.physics.port_hamiltonian import PortHamiltonianField
from hwm_studio.physics.rollout import Trajectory, rollout
from hwm_studio.state import PhaseState


class _FlatNet(torch.nn.Module):
    """f([z / scale, u]) * scale over all entities jointly: the unstructured function both share."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        e, d, a = config.n_entities, config.dim, config.action_dim
        self.shape = (e, d)
        self.action_dim = a
        self.net = MLP(2 * e * d + a, 2 * e * d, config.hidden, config.depth, config.activation)
        self.register_buffer("q_scale", torch.as_tensor(config.q_scale, dtype=torch.float32))
        self.register_buffer("p_scale", torch.as_tensor(config.p_scale, dtype=torch.float32))

    def __call__(self, state: PhaseState, u: Tensor | None = None) -> PhaseState:
        b = state.batch_size
        qs, ps = self.q_scale.to(state.q.dtype), self.p_scale.to(state.p.dtype)
        parts = [(state.q / qs).reshape(b, -1), (state.p / ps).reshape(b, -1)]
        if self.action_dim:
            parts.append(u if u is not None else state.q.new_zeros(b, self.action_dim))
        out = self.net(torch.cat(parts, dim=-1)).reshape(b, 2, *self.shape)
        return PhaseState(out[:, 0] * qs, out[:, 1] * ps)


class DiscreteStep:
    """z_{t+1} = z_t + f(z_t, u_t), shaped like an integrator step so its rollouts can be fused."""

    name = "discrete"

    def step(self, field: torch.nn.Module, state: PhaseState, u: Tensor | None, dt: object = None) -> PhaseState:
        return state.axpy(1.0, field(state, u))

    def stepper(self, field: torch.nn.Module, dt: object = None) -> Callable[[PhaseState, Tensor | None], PhaseState]:
        return lambda state, u: self.step(field, state, u)


class MLPTransition(WorldModel):
    kind = "mlp"
    continuous = False

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.f = _FlatNet(config)
        self.step_rule = DiscreteStep()

    def stepper(self) -> tuple[torch.nn.Module, DiscreteStep]:  # type: ignore[override]
        return self.f, self.step_rule

    def rollout_latent(
        self, z0: PhaseState, actions: Tensor | None, steps: int, record_energy: bool = False
    ) -> Trajectory:
        if record_energy:
            raise ValueError("the MLP transition has no energy to record")
        z = z0
        if actions is not None and actions.shape[0] != z.batch_size:
            z = z.expand(actions.shape[0])
        qs, ps = [z.q], [z.p]
        for t in range(steps):
            u = None if actions is None else actions[:, t]
            z = self.step_rule.step(self.f, z, u)
            qs.append(z.q)
            ps.append(z.p)
        return Trajectory(torch.stack(qs, 1), torch.stack(ps, 1), self.dt,
                          None if actions is None else actions[:, :steps], {}, {}, {})  # fmt: skip


class _ODEField(torch.nn.Module):
    """The neural ODE's vector field, shaped as the integrators expect."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.f = _FlatNet(config)
        self.action_dim = config.action_dim

    def forward(self, state: PhaseState, u: Tensor | None = None) -> PhaseState:
        return self.f(state, u)


class NeuralODE(WorldModel):
    kind = "node"

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        if self.integrator.needs_hamiltonian:
            raise ValueError("a neural ODE has no Hamiltonian: use the rk4 integrator")
        self.vector_field = _ODEField(config)

    def integration_field(self) -> VectorField:
        return self.vector_field

    def rollout_latent(
        self, z0: PhaseState, actions: Tensor | None, steps: int, record_energy: bool = False
    ) -> Trajectory:
        if record_energy:
            raise ValueError("the neural ODE has no energy to record")
        return rollout(self.vector_field, self.integrator, z0, actions, self.dt, steps, record_energy=False)

    def derivative(self, z: PhaseState, u: Tensor | None) -> PhaseState:
        return self.vector_field(z, u)


class HNN(WorldModel):
    kind = "hnn"

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        c = config
        energy = MonolithicEnergy(c.n_entities, c.dim, c.q_scale, c.p_scale, c.hidden, c.depth, c.activation)
        self.field = PortHamiltonianField(Hamiltonian([energy]))

    @property
    def hamiltonian_field(self) -> PortHamiltonianField:
        return self.field

    @property
    def action_dim(self) -> int:
        return 0  # conservative: actions cannot enter

    def rollout_latent(
        self, z0: PhaseState, actions: Tensor | None, steps: int, record_energy: bool = False
    ) -> Trajectory:
        return rollout(self.field, self.integrator, z0, None, self.dt, steps, record_energy)

    def derivative(self, z: PhaseState, u: Tensor | None) -> PhaseState:
        return self.field(z, None)
