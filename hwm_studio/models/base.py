"""The world-model interface shared by the HWM and every baseline.

encode (observations -> latent phase state), evolve (latent rollout under actions), decode
(latent -> observations). Inference knobs (integrator, dt, dissipation and residual scales)
are plain attributes so the studio can turn them between rollouts.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import Tensor, nn

from hwm_studio.models.coders import build_coder
from hwm_studio.models.config import ModelConfig
from hwm_studio.physics.field import VectorField
from hwm_studio.physics.fused import FusedRollout, NotFusable
from hwm_studio.physics.integrators import Integrator, get_integrator
from hwm_studio.physics.port_hamiltonian import PortHamiltonianField
from hwm_studio.physics.rollout import Trajectory, energy_ledger
from hwm_studio.state import PhaseState

FUSE_MIN_STEPS = 10  # shorter rollouts gain nothing from a traced chunk of 10 steps


class WorldModel(nn.Module, ABC):
    """Base of every model. Subclasses set `kind` and implement `rollout_latent`."""

    kind: ClassVar[str]
    continuous: ClassVar[bool] = True  # a vector field integrated in time (vs a discrete map)
    sees_pixels: ClassVar[bool] = False  # reads and draws frames (models/pixel/) rather than states
    # the named parts of the last training window's loss, for the log (models with several terms set it)
    last_loss_terms: dict[str, float] = {}  # noqa: RUF012 (read-only default; models assign a new dict)

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
        # What this model's weights are, when other models share them read-only (a checkpoint
        # loaded by `checkpoint.load_shared`): its fused rollouts then share traced graphs with theirs.
        self.shared_as: tuple | None = None

    @property
    def worth_tracing(self) -> bool:
        """Whether a long-lived process should trace this model's rollouts: only weights shared
        read-only (checkpoints, a bounded set). torch never frees a traced graph (~60 MB a model),
        so tracing every model a server meets (each training run of each session) would grow it
        without bound; eagerly, the numbers are the same bit for bit, only slower."""
        return self.shared_as is not None

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
        if integ.needs_hamiltonian and self.hamiltonian_field is None:
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

    # --- training hooks (fit() calls these, so every observation kind trains in one loop) ---------
    def observe_data(self, q: Tensor, p: Tensor, frames: Tensor | None) -> Tensor:
        """The data as this model observes it: (N, T, E, O) for state models."""
        return self.coder.observe(q, p)

    def window_length(self, horizon: int) -> int:
        """Consecutive observations one training window needs for a rollout of `horizon` steps."""
        return horizon + 1

    def prepare_training(self, obs: Tensor) -> None:
        """Called by fit() once with the training observations, before the first step (no-op here)."""

    def window_loss(
        self, obs: Tensor, actions: Tensor | None, horizon: int, progress: float = 1.0
    ) -> tuple[Tensor, Tensor]:
        """(prediction loss, penalty) of windows obs (B, window_length, ...), actions (B, L - 1, A).

        `progress` in [0, 1] is how far training is (models with phases use it). State models:
        normalised multi-step error of the decoded rollout from the first point.
        """
        pred, traj = self.predict(obs[:, 0], actions, horizon)  # (B, h+1, E, O)
        err = (pred - obs) / self.obs_scale.to(obs.dtype)
        return (err * err).mean() + self.structure_prior(traj), self.regularization(traj)

    def series_error(self, obs: Tensor, actions: Tensor | None) -> float:
        """Validation: normalised error of whole rollouts from the start of each series."""
        h = obs.shape[1] - 1
        pred, _ = self.predict(obs[:, 0], None if actions is None else actions[:, :h], h)
        err = (pred - obs) / self.obs_scale.to(obs.dtype)
        return float((err * err).mean())

    def diagnose(self, obs: Tensor, actions: Tensor | None) -> str | None:
        """A warning about how training is going, judged on validation series (None: nothing to say)."""
        return None

    def predict(self, obs0: Tensor, actions: Tensor | None, steps: int) -> tuple[Tensor, Trajectory]:
        """Encode, roll out, decode: observations (B, steps+1, E, O) and the latent trajectory."""
        actions = self.accepted_actions(actions)
        traj = self.rollout_latent(self.encode(obs0), actions, steps)
        return self.decode(traj.q, traj.p), traj

    def rollout_data(
        self,
        q0: Tensor,
        p0: Tensor,
        actions: Tensor | None,
        steps: int,
        record_energy: bool = False,
        fused: bool = False,
    ) -> tuple[Tensor, Tensor, Trajectory]:
        """From data-space states (B, E, D): predicted (q, p) in data coordinates, (B, steps+1, E, D),
        and the latent trajectory (with the model's energy ledger when `record_energy`).

        `fused=True` (inference only) runs the model's step (see `stepper`) through traced chunks:
        the same model at float32 rounding level, several times less per-step overhead (the studio).
        """
        z0 = self.encode(self.coder.observe(q0, p0))
        actions = self.accepted_actions(actions)
        traj = None
        if fused and steps >= FUSE_MIN_STEPS and not torch.is_grad_enabled() and not self.__dict__.get("_unfusable"):
            try:
                traj = self._fused_rollout(z0, actions, steps, record_energy)
            except NotFusable:
                self._unfusable = True  # e.g. an energy term whose gradient needs autograd
        if traj is None:
            traj = self.rollout_latent(z0, actions, steps, record_energy)
        q, p = self.coder.to_data(self.decode(traj.q, traj.p))
        return q, p, traj

    def integration_field(self) -> VectorField:
        """The vector field the integrator steps (continuous models)."""
        field = self.hamiltonian_field
        if field is None:
            raise ValueError(f"the {self.kind} model has no vector field to integrate")
        return field

    def stepper(self) -> tuple[nn.Module, Integrator]:
        """(field, step rule) that one model step applies: what a fused rollout traces."""
        return self.integration_field(), self.integrator

    def _fused_rollout(self, z0: PhaseState, actions: Tensor | None, steps: int, record_energy: bool) -> Trajectory:
        field, step_rule = self.stepper()
        key = step_rule.name
        cache = self.__dict__.setdefault("_fused_cache", {})
        if key not in cache:
            cache[key] = FusedRollout(field, step_rule, shared_as=self.shared_as)
        if actions is not None and not getattr(field, "action_dim", 0):
            actions = None
        q, p = cache[key](z0, actions, self.dt, steps)
        acts = None if actions is None else actions[:, :steps].expand(q.shape[0], -1, -1)
        traj = Trajectory(q=q, p=p, dt=self.dt, actions=acts, energy={}, power={}, ledger={})
        if record_energy:
            if not isinstance(field, PortHamiltonianField):
                raise ValueError(f"the {self.kind} model has no energy to record")
            traj.energy, traj.power, traj.ledger = energy_ledger(field, q, p, acts, self.dt, step_rule)
        return traj

    def latent(self, q: Tensor, p: Tensor) -> PhaseState:
        """Data-space states (B, E, D) -> the model's latent phase state."""
        return self.encode(self.coder.observe(q, p))

    @property
    def angular(self) -> bool:
        """Whether the data's q are angles (compare modulo 2 pi)."""
        return self.coder.angular

    def own_copy(self) -> WorldModel:
        """A copy with knobs of its own (dt, integrator, scales) for another caller, such as a
        planner's thread. A model whose weights are shared read-only (`shared_as`) shares them with
        the copy, and so its traced graphs; any other model's weights are copied."""
        if self.shared_as is None:
            return copy.deepcopy(self)
        memo: dict[int, object] = {id(t): t for t in (*self.parameters(), *self.buffers())}
        return copy.deepcopy(self, memo)

    def __getstate__(self) -> dict:
        """Copies and pickles leave the fused rollouts behind: they belong to this model's field
        (a copy makes its own, or takes the shared ones, on its first fused rollout)."""
        state = dict(self.__dict__)
        state.pop("_fused_cache", None)
        return state

    def knobs(self) -> dict[str, object]:
        """Inference knobs this model has, with their current values (what the studio may turn)."""
        out: dict[str, object] = {}
        if self.continuous:
            out["dt"] = self.dt
            out["integrator"] = self.integrator.name
        return out

    def configure(self, **knobs: object) -> None:
        """Set inference knobs by name (see `knobs()`); unknown or inapplicable ones are errors."""
        have = self.knobs()
        for name, value in knobs.items():
            if name not in have:
                raise ValueError(f"the {self.kind} model has no {name!r} knob (it has: {', '.join(have) or 'none'})")
            if name == "dt":
                if not float(value) > 0:  # type: ignore[arg-type]
                    raise ValueError(f"dt must be > 0, got {value}")
                self.dt = float(value)  # type: ignore[arg-type]
            elif name == "integrator":
                self.set_integrator(str(value))
            else:
                setattr(self, name, float(value))  # type: ignore[arg-type]

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

    def momentum(self, q: Tensor, velocity: Tensor) -> Tensor:
        """The latent momentum p whose velocity dq/dt at q is `velocity` (B, E, D).

        Models without a kinetic energy have no mass to apply: their p is the velocity itself."""
        return velocity

    def regularization(self, traj: Trajectory) -> Tensor:
        """Extra loss on a training rollout (the HWM's residual penalty); zero by default."""
        return traj.q.new_zeros(())

    def structure_prior(self, traj: Trajectory) -> Tensor:
        """A prior on the model's structure, part of the prediction loss (the HWM's coupling
        sparsity); zero by default."""
        return traj.q.new_zeros(())

    def couplings(self, q: Tensor) -> dict[tuple[int, int], float] | None:
        """Learned strength of each entity pair's interaction on states q (B, E, D), None if the
        model has no pairwise terms to read."""
        return None

    def large_step_parameters(self) -> list[nn.Parameter]:
        """Parameters trained with a larger step (TrainConfig.large_step_lr_scale): scalar physical
        constants (masses, frictions, input gains), and a pixel model's image templates, whose
        logits must travel far."""
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
