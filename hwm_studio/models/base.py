"""The world-model interface shared by the HWM and every baseline.

encode (observations -> latent phase state), evolve (latent rollout under actions), decode
(latent -> observations). Inference knobs (integrator, dt, dissipation and residual scales)
are plain attributes so the studio can turn them between rollouts.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import Tensor, nn

from hwm_studio.models.coders import build_coder
from hwm_studio.models.config import ModelConfig
from hwm_studio.physics.integrators import Integrator, get_integrator
from hwm_studio.physics.port_hamiltonian import PortHamiltonianField
from hwm_studio.physics.rollout import Trajectory
from hwm_studio.state import PhaseState


class WorldModel(nn.Module, ABC):
    """Base of every model. Subclasses set `kind` and implement `rollout_latent`."""

    kind: ClassVar[str]
    continuous: ClassVar[bool] = True  # a vector field integrated in time (vs a discrete map)

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.kind != self.kind:
            raise ValueError(f"config is for a {config.kind!r} model, not {self.kind!r}")
        self.config = config
        self.coder = build_coder(config.observation, config.n_entities, config.dim)
        scale = torch.as_tensor(config.obs_scale, dtype=torch.float32)
        if scale.shape != (config.n_entities, self.coder.obs_dim):
            raise ValueError(
                f"obs_scale must be (E, O) = ({config.n_entities}, {self.coder.obs_dim}), got {tuple(scale.shape)}"
            )
        self.register_buffer("obs_scale", scale)
        self.dt = float(config.dt)
        self.integrator: Integrator = get_integrator(config.integrator)

    @property
    def hamiltonian_field(self) -> PortHamiltonianField | None:
        """The model's port-Hamiltonian field, if it has an energy (HWM, HNN); None otherwise."""
        return None

    # --- knobs ---------------------------------------------------------------------------------
    @property
    def action_dim(self) -> int:
        """Actions the model accepts (0: it ignores actions, e.g. the conservative HNN)."""
        return self.config.action_dim

    def set_integrator(self, name: str) -> None:
        if not self.continuous:
            raise ValueError(f"the {self.kind} model is a discrete map; it has no integrator")
        integ = get_integrator(name)
        if integ.symplectic and self.hamiltonian_field is None:
            raise ValueError(f"{name} needs a Hamiltonian; the {self.kind} model only supports rk4")
        self.integrator = integ

    # --- roles ---------------------------------------------------------------------------------
    def encode(self, obs: Tensor) -> PhaseState:
        """Observations (B, E, O) -> latent (B, E, D)."""
        return self.coder.encode(obs)

    def decode(self, traj_q: Tensor, traj_p: Tensor) -> Tensor:
        """Latent series (..., E, D) -> observations (..., E, O)."""
        return self.coder.decode(traj_q, traj_p)

    @abstractmethod
    def rollout_latent(
        self, z0: PhaseState, actions: Tensor | None, steps: int, record_energy: bool = False
    ) -> Trajectory:
        """Evolve the latent state `steps` steps of self.dt under actions (B, T, A) or None."""

    def predict(self, obs0: Tensor, actions: Tensor | None, steps: int) -> tuple[Tensor, Trajectory]:
        """Encode, roll out, decode: observations (B, steps+1, E, O) and the latent trajectory."""
        actions = self.accepted_actions(actions)
        traj = self.rollout_latent(self.encode(obs0), actions, steps)
        return self.decode(traj.q, traj.p), traj

    def accepted_actions(self, actions: Tensor | None) -> Tensor | None:
        """The actions this model takes: dropped for action-free models, checked otherwise."""
        if self.action_dim == 0 or actions is None:
            return None
        if actions.ndim != 3 or actions.shape[-1] != self.action_dim:
            raise ValueError(f"actions must be (B, T, {self.action_dim}), got {tuple(actions.shape)}")
        return actions

    # --- training hooks ------------------------------------------------------------------------
    def derivative(self, z: PhaseState, u: Tensor | None) -> PhaseState | None:
        """dz/dt at z (for the HNN-style derivative loss); None for discrete maps."""
        return None

    def regularization(self, traj: Trajectory) -> Tensor:
        """Extra loss on a training rollout (the HWM's residual penalty); zero by default."""
        return traj.q.new_zeros(())

    def physical_parameters(self) -> list[nn.Parameter]:
        """Scalar physical constants (masses, frictions, input gains) trained with a larger step."""
        return []

    def describe(self) -> dict[str, object]:
        """What the studio shows about the model (no internals beyond this)."""
        return {
            "kind": self.kind,
            "parameters": sum(p.numel() for p in self.parameters()),
            "integrator": self.integrator.name if self.continuous else "discrete map",
            "dt": self.dt,
            "has_energy": self.hamiltonian_field is not None,
        }
