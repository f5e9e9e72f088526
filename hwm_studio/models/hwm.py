"""The Hamiltonian World Model: a composition of the physics core with learned parts.

    dz/dt = (J - R(z)) grad H(z) + G(q) u + r(z, u),   H = T + sum_i V(q_i) + sum_pairs U(q_i, q_j)

integrated by a structure-preserving scheme (leapfrog by default; implicit midpoint when the
learned mass matrix depends on q). Nothing here is a monolith: the field is the same
PortHamiltonianField the ground-truth systems use, with learned terms plugged in.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hwm_studio.models.base import WorldModel
from hwm_studio.models.config import ModelConfig
from hwm_studio.models.energies import (
    ConfigurationKinetic,
    EntityEmbedding,
    LearnedInteraction,
    LearnedPotential,
    PositionFeatures,
    SeparableKinetic,
)
from hwm_studio.models.ports import (
    ConstantFriction,
    LearnedForceResidual,
    LearnedInputMap,
    LearnedResidual,
    StateFriction,
)
from hwm_studio.physics.energy import EnergyTerm, Hamiltonian
from hwm_studio.physics.port_hamiltonian import PortHamiltonianField
from hwm_studio.physics.rollout import Trajectory, flatten_time, rollout
from hwm_studio.state import PhaseState

DISSIPATIONS = ("none", "constant", "state")
INPUT_MAPS = ("none", "constant", "state")
KINETICS = ("separable", "configuration")
RESIDUALS = {"state": LearnedResidual, "momenta": LearnedForceResidual}


class HamiltonianWorldModel(WorldModel):
    kind = "hwm"

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        c = config
        for name, value, allowed in (
            ("dissipation", c.dissipation, DISSIPATIONS),
            ("input_map", c.input_map, INPUT_MAPS),
            ("kinetic", c.kinetic, KINETICS),
            ("residual_on", c.residual_on, tuple(RESIDUALS)),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        e, d = c.n_entities, c.dim
        feats = PositionFeatures(c.q_scale, c.angular)
        embedding = EntityEmbedding(e, c.identical_entities)
        kinetic: EnergyTerm
        if c.kinetic == "separable":
            kinetic = SeparableKinetic(e, d, c.identical_entities)
        else:
            kinetic = ConfigurationKinetic(feats, e, d, c.hidden, c.activation)
        terms: list[EnergyTerm] = [kinetic, LearnedPotential(feats, embedding, c.hidden, c.depth, c.activation)]
        pairs = c.all_pairs()
        if e > 1 and pairs:
            terms.append(
                LearnedInteraction(
                    feats, e, pairs, c.hidden, c.depth, c.activation, c.per_pair, pair_features=c.pair_features
                )
            )
        dissipation = {
            "none": None,
            "constant": lambda: ConstantFriction(e, d, c.identical_entities),
            "state": lambda: StateFriction(feats, c.p_scale, c.hidden),
        }[c.dissipation]
        input_map = None
        if c.action_dim > 0 and c.input_map != "none":
            input_map = LearnedInputMap(e, d, c.action_dim, feats if c.input_map == "state" else None, c.hidden)
        residual = RESIDUALS[c.residual_on](feats, e, c.p_scale, c.action_dim, c.hidden) if c.residual else None
        self.field = PortHamiltonianField(
            Hamiltonian(terms),
            dissipation=dissipation() if dissipation else None,
            input_map=input_map,
            residual=residual,
        )
        self.register_buffer("q_scale", torch.as_tensor(c.q_scale, dtype=torch.float32))
        self.register_buffer("p_scale", torch.as_tensor(c.p_scale, dtype=torch.float32))

    @property
    def hamiltonian_field(self) -> PortHamiltonianField:
        return self.field

    @property
    def interaction(self) -> LearnedInteraction | None:
        """The pairwise energy term, if the model has one (found in H, not registered twice)."""
        return next((t for t in self.field.hamiltonian.terms if isinstance(t, LearnedInteraction)), None)

    # --- knobs the studio turns ----------------------------------------------------------------
    @property
    def dissipation_scale(self) -> float:
        return self.field.dissipation_scale

    @dissipation_scale.setter
    def dissipation_scale(self, value: float) -> None:
        if value < 0:
            raise ValueError("dissipation scale must be >= 0 (a negative scale would make R indefinite)")
        self.field.dissipation_scale = float(value)

    @property
    def residual_scale(self) -> float:
        return self.field.residual_scale

    @residual_scale.setter
    def residual_scale(self, value: float) -> None:
        self.field.residual_scale = float(value)

    def knobs(self) -> dict[str, object]:
        out = super().knobs()
        if self.field.dissipation is not None:
            out["dissipation_scale"] = self.dissipation_scale
        if self.field.residual is not None:
            out["residual_scale"] = self.residual_scale
        return out

    # --- dynamics ------------------------------------------------------------------------------
    def rollout_latent(
        self, z0: PhaseState, actions: Tensor | None, steps: int, record_energy: bool = False
    ) -> Trajectory:
        if self.field.input_map is None:
            actions = None
        return rollout(self.field, self.integrator, z0, actions, self.dt, steps, record_energy)

    def derivative(self, z: PhaseState, u: Tensor | None) -> PhaseState:
        return self.field(z, u if self.field.input_map is not None else None)

    def momentum(self, q: Tensor, velocity: Tensor) -> Tensor:
        """p = M(q) dq/dt through the learned kinetic energy (dq/dt = dT/dp = M^-1(q) p)."""
        return self.field.hamiltonian.terms[0].momentum(q, velocity)  # type: ignore[operator]

    def regularization(self, traj: Trajectory) -> Tensor:
        """Squared residual rate on the visited states, relative to the data's scale: (r / scale)^2.

        Measured per unit time, not per step: a per-step measure (r dt)^2 shrinks as dt^2, which
        makes the residual nearly free at small dt and lets it fit noise instead of physics.
        """
        if self.field.residual is None:
            return traj.q.new_zeros(())
        states = flatten_time(traj.q[:, :-1], traj.p[:, :-1])
        u = None if traj.actions is None else traj.actions.reshape(states.batch_size, -1)
        residual = self.field.residual
        if residual.momentum_only:  # a residual force: no q-part to measure
            rp = residual.momentum_part(states, u) / self.p_scale.to(states.p.dtype)
            return (rp * rp).mean()
        r = residual.apply(states, u)
        rq = r.q / self.q_scale.to(r.q.dtype)
        rp = r.p / self.p_scale.to(r.p.dtype)
        return (rq * rq).mean() + (rp * rp).mean()

    def structure_prior(self, traj: Trajectory) -> Tensor:
        """Coupling sparsity: coupling_sparsity x sum over pairs of the RMS of the pair's force on the
        rollouts' starting states (the windows' first states: a random sample of the data's, and a
        ninth of the cost of every visited state at horizon 8), as momentum change per step in the
        data's momentum scale (F dt / p_scale, what a spurious force costs a one-step prediction).
        An L1 sum over pairs (a group lasso): it drives a pair whose force explains nothing to
        exactly zero and barely touches real ones."""
        if self.interaction is None or self.config.coupling_sparsity <= 0:
            return traj.q.new_zeros(())
        q = traj.q[:, 0]
        force = self.interaction.pair_forces(q) * (self.dt / self.p_scale.to(q.dtype))  # (B, P, D)
        rms = (force.pow(2).sum(-1).mean(0) + 1e-12).sqrt()  # (P,)
        return self.config.coupling_sparsity * rms.sum()

    def couplings(self, q: Tensor) -> dict[tuple[int, int], float] | None:
        """How strongly each pair interacts on the states q (B, E, D): the RMS of its learned force."""
        return None if self.interaction is None else self.interaction.coupling(q)

    def large_step_parameters(self) -> list[nn.Parameter]:
        params: list[nn.Parameter] = []
        for module in (self.field.dissipation, self.field.input_map, self.field.hamiltonian.terms[0], self.coder):
            if isinstance(module, (ConstantFriction, SeparableKinetic)):
                params.extend(module.parameters())
            elif isinstance(module, LearnedInputMap):
                params.append(module.g0)
            elif module is self.coder and hasattr(module, "log_scale"):
                params.append(module.log_scale)
        return params

    def describe(self) -> dict[str, object]:
        info = super().describe()
        info.update(
            structure=[f"{t.kind}: {type(t).__name__}" for t in self.field.hamiltonian.terms],
            dissipation=self.config.dissipation,
            input_map=self.config.input_map if self.field.input_map is not None else "none",
            residual=self.config.residual,
            dissipation_scale=self.dissipation_scale,
            residual_scale=self.residual_scale,
        )
        return info
