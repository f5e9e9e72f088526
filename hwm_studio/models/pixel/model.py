"""PixelWorldModel: a state world model that reads and draws frames, by composition.

    frames --LocalisingEncoder--> positions --geometry--> q per frame
           q of the k context frames --the state whose own rollout passes through them--> (q, p)
    (q, p) --dynamics (the HWM, or the MLP baseline)--> future (q, p)
    q --geometry--> positions --SpriteDecoder--> frames

The dynamics are an unchanged state model on the latent (same energies, knobs, fused rollouts,
energy ledger); the encoder, geometry and decoder are the same for every dynamics kind, so the
HWM-vs-MLP comparison isolates the dynamics. Momentum is never a free regression: it starts as
p = M(q) dq/dt through the dynamics' own kinetic energy (identity for models without one) and is
refined by a few Gauss-Newton steps until the model's own rollout passes closest to the k readings.

Training (fit(), through the WorldModel hooks), per window of k + h frames:
    warm-up: every frame reconstructed from its own encoder positions alone (the encoder learns
        to find the bodies, the decoder to draw them), until the bodies are found (see WARMUP_MIN)
    then, once: the geometry's constants are calibrated from the positions read in that batch.
    after: prediction loss of the h + 1 frames drawn from the rollout (appearance held fixed:
          what things look like is learned from frames as seen, where they go from predictions)
        + RECONSTRUCTION_WEIGHT x every frame drawn at its own read positions (keeps the encoder on
          the bodies: nothing else pins where it reads, only the angle or displacement it implies)
        + |to_image(from_image(read)) - read|^2 (the geometry's constants fitted to the readings)
        + LATENT_WEIGHT x |positions of the rollout - positions read off the frames|^2
        + the dynamics' own penalty (the HWM's residual).
Image losses are mean squared errors at full resolution plus 2x, 4x and 8x average-pooled
copies: a body drawn a few pixels off its true place then still feels which way to move.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from hwm_studio.frames import check_frames, frames_to_float
from hwm_studio.models.base import WorldModel
from hwm_studio.models.baselines import MLPTransition
from hwm_studio.models.config import ModelConfig
from hwm_studio.models.hwm import HamiltonianWorldModel
from hwm_studio.models.pixel.decoder import SpriteDecoder, legacy_template_cells
from hwm_studio.models.pixel.encoder import LocalisingEncoder
from hwm_studio.models.pixel.geometry import ObservationGeometry, build_geometry
from hwm_studio.physics.integrators import Integrator
from hwm_studio.physics.port_hamiltonian import PortHamiltonianField
from hwm_studio.physics.rollout import Trajectory
from hwm_studio.state import PhaseState

# the latent dynamics each pixel kind composes
LATENT_DYNAMICS: dict[str, type[WorldModel]] = {
    "hwm-pixels": HamiltonianWorldModel,
    "mlp-pixels": MLPTransition,
}
# Warm-up: reading and drawing frames, before any dynamics, until the bodies are found (the
# reconstruction of a batch below FOUND_RATIO x the background alone's error), between these
# fractions of training.
WARMUP_MIN, WARMUP_MAX = 0.02, 0.3
FOUND_RATIO = 0.1
RECONSTRUCTION_WEIGHT = 1.0
LATENT_WEIGHT = 1.0
POOLS = 3  # the image loss also compares 2x, 4x and 8x average-pooled frames
MOMENTUM_ITERATIONS = 3  # Gauss-Newton steps fitting the context's state to its readings
STUCK_RATIO = 0.7  # reconstruction this close to the background alone: nothing is being drawn


def _halve(x: Tensor) -> Tensor:
    """2 x 2 average pooling of (N, H, W, 3) frames (a reshape and a mean: no layout change)."""
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).mean((2, 4))


def image_loss(pred: Tensor, target: Tensor) -> Tensor:
    """MSE at full resolution plus at 2x, 4x, 8x average-pooled resolution; (..., H, W, 3) each."""
    a = pred.reshape(-1, *pred.shape[-3:])
    b = target.reshape(-1, *target.shape[-3:])
    loss = F.mse_loss(a, b)
    for _ in range(POOLS):
        if a.shape[1] < 4 or a.shape[1] % 2:
            break
        a, b = _halve(a), _halve(b)
        loss = loss + F.mse_loss(a, b)
    return loss


def wrapped(d: Tensor) -> Tensor:
    """Angle differences into (-pi, pi]."""
    return torch.atan2(torch.sin(d), torch.cos(d))


@dataclass
class FramePrediction:
    """What a pixel model predicts from k context frames, for times k-1 .. k-1+steps.

    frames (B, steps+1, H, W, 3) in [0, 1] drawn by the decoder; trajectory: the latent rollout
    (its energy ledger when asked); positions (B, steps+1, E, 2): where the bodies are drawn;
    context_positions (B, k, E, 2): where the encoder read them in the context frames.
    """

    frames: Tensor
    trajectory: Trajectory
    positions: Tensor
    context_positions: Tensor


class PixelWorldModel(WorldModel):
    """Frames in, frames out; the latent is the geometry's q and the dynamics' p.

    `kind` is the config's ('hwm-pixels' or 'mlp-pixels'): one class, the dynamics chosen by it.
    Knobs, integrator, dt and the energy are the dynamics' own (the studio turns them as usual).
    """

    sees_pixels = True

    def __init__(self, config: ModelConfig) -> None:
        # Not WorldModel.__init__: a pixel model has no coder or integrator of its own; those
        # belong to its dynamics, and the properties below delegate to them.
        nn.Module.__init__(self)
        if config.kind not in LATENT_DYNAMICS:
            raise ValueError(f"config is for a {config.kind!r} model, not a pixel model ({', '.join(LATENT_DYNAMICS)})")
        if config.frame_size < 8:
            raise ValueError(f"a pixel model needs frame_size >= 8, got {config.frame_size}")
        if config.context_frames < 2:
            raise ValueError(f"a pixel model needs >= 2 context frames to see motion, got {config.context_frames}")
        self.config = config
        latent_kind = LATENT_DYNAMICS[config.kind]
        self.dynamics = latent_kind(replace(config, kind=latent_kind.kind))
        self.geometry = build_geometry(config.geometry, config.n_entities, config.dim, config.anchors)
        self.encoder = LocalisingEncoder(config.n_entities, saliency_pool=config.saliency_pool)
        cells = config.sprite_cells or legacy_template_cells(config.frame_size)
        self.decoder = SpriteDecoder(config.frame_size, config.n_entities, self.geometry.linked, cells)
        self.register_buffer("prepared", torch.zeros((), dtype=torch.bool))

    # --- the dynamics' identity, knobs and energy ------------------------------------------------
    @property
    def shared_as(self) -> tuple | None:  # type: ignore[override]
        """Shared weights are the dynamics' concern: its fused rollouts are the traced graphs."""
        return self.dynamics.shared_as

    @shared_as.setter
    def shared_as(self, key: tuple | None) -> None:
        self.dynamics.shared_as = key

    @property
    def kind(self) -> str:  # type: ignore[override]
        return self.config.kind

    @classmethod
    def accepts(cls, kind: str) -> bool:
        return kind in LATENT_DYNAMICS

    @property
    def continuous(self) -> bool:  # type: ignore[override]
        return self.dynamics.continuous

    @property
    def coder(self) -> nn.Module:  # the latent is the dynamics' data space
        return self.dynamics.coder

    @property
    def dt(self) -> float:  # type: ignore[override]
        return self.dynamics.dt

    @dt.setter
    def dt(self, value: float) -> None:
        self.dynamics.dt = float(value)

    @property
    def integrator(self) -> Integrator:  # type: ignore[override]
        return self.dynamics.integrator

    @property
    def hamiltonian_field(self) -> PortHamiltonianField | None:
        return self.dynamics.hamiltonian_field

    @property
    def angular(self) -> bool:
        return self.geometry.angular

    @property
    def context(self) -> int:
        return self.config.context_frames

    def set_integrator(self, name: str) -> None:
        self.dynamics.set_integrator(name)

    def knobs(self) -> dict[str, object]:
        return self.dynamics.knobs()

    def configure(self, **knobs: object) -> None:
        self.dynamics.configure(**knobs)

    def accepted_actions(self, actions: Tensor | None) -> Tensor | None:
        return self.dynamics.accepted_actions(actions)

    def regularization(self, traj: Trajectory) -> Tensor:
        return self.dynamics.regularization(traj)

    def large_step_parameters(self) -> list[nn.Parameter]:
        """The dynamics' physical constants, the decoder's templates and background, the geometry's
        constants: per-pixel logits and positions that a small step would take thousands of steps to move."""
        return [*self.dynamics.large_step_parameters(), *self.decoder.parameters(), *self.geometry.parameters()]

    def describe(self) -> dict[str, object]:
        info = self.dynamics.describe()
        info.update(
            kind=self.kind,
            parameters=sum(p.numel() for p in self.parameters()),
            frame_size=self.config.frame_size,
            context_frames=self.context,
            **self.geometry.describe(),
        )
        return info

    # --- latent rollouts (the phase plane and planning work on the latent as on a state) ---------
    def rollout_latent(
        self, z0: PhaseState, actions: Tensor | None, steps: int, record_energy: bool = False
    ) -> Trajectory:
        return self.dynamics.rollout_latent(z0, actions, steps, record_energy)

    def rollout_data(
        self, q0: Tensor, p0: Tensor, actions: Tensor | None, steps: int, record_energy: bool = False,
        fused: bool = False,
    ) -> tuple[Tensor, Tensor, Trajectory]:  # fmt: skip
        return self.dynamics.rollout_data(q0, p0, actions, steps, record_energy, fused)

    def latent(self, q: Tensor, p: Tensor) -> PhaseState:
        return self.dynamics.latent(q, p)

    def encode(self, obs: Tensor) -> PhaseState:
        raise ValueError(f"the {self.kind} model reads frames: use encode_frames")

    # --- the three pixel roles -------------------------------------------------------------------
    def locate(self, frames: Tensor) -> Tensor:
        """Where the encoder reads each entity in each frame: (..., H, W, 3) -> (..., E, 2)."""
        check_frames(frames, self.config.frame_size)
        return self.encoder(frames, self.decoder.background_image())

    def attention(self, frames: Tensor) -> Tensor:
        """Where the encoder looks for each entity: (..., H, W, 3) -> (..., E, H, W), maps summing to 1."""
        check_frames(frames, self.config.frame_size)
        return self.encoder.read(frames, self.decoder.background_image())[1]

    def state_from_positions(self, xy: Tensor, actions: Tensor | None = None) -> PhaseState:
        """The state at the last of k >= 2 readings (B, k, E, 2): the one whose own rollout passes
        closest to the readings, so that p is the momentum of the model's own motion.

        Start: q at the first reading, p = M(q) dq/dt with dq/dt the forward difference there (second
        order with k >= 3) and M from the dynamics' kinetic energy. Then Gauss-Newton on (q_0, p_0)
        for the residuals q_model(j) - q_read(j), j = 0..k-1, with the free-flight Jacobian
        (dq_j/dq_0 = I, dq_j/dp_0 = j dt M^-1; the rollout itself supplies the forces), MOMENTUM_ITERATIONS
        times. A backward difference at the last frame alone amplifies reading noise 2.5x per dt and
        is biased by the curvature; this fit uses every context frame and the model's own dynamics.
        `actions` (B, k - 1, A) act between the context frames.
        """
        q = self.geometry.from_image(xy)  # (B, k, E, D)
        k = q.shape[1]
        steps = q[:, 1:] - q[:, :-1]
        if self.geometry.angular:
            steps = wrapped(steps)
        # forward difference at the first reading: (-3 q_0 + 4 q_1 - q_2) / (2 dt) = (3 s_0 - s_1) / (2 dt)
        velocity = (3 * steps[:, 0] - steps[:, 1]) / (2 * self.dt) if k >= 3 else steps[:, 0] / self.dt
        q0 = q[:, 0]
        p0 = self.dynamics.momentum(q0, velocity)
        u = self.accepted_actions(actions)
        j = torch.arange(k, dtype=q.dtype, device=q.device)[None, :, None, None] * self.dt  # (1, k, 1, 1) times
        jc = j - j.mean(1, keepdim=True)
        for _ in range(MOMENTUM_ITERATIONS):
            miss = self.dynamics.rollout_latent(PhaseState(q0, p0), u, k - 1).q - q  # (B, k, E, D)
            if self.geometry.angular:
                miss = wrapped(miss)
            # the least-squares line a + b t through the misses: shift q_0 by -a, the velocity by -b
            b = (jc * miss).sum(1) / (jc * jc).sum(1)
            a = miss.mean(1) - j.mean(1) * b
            q0 = q0 - a
            p0 = p0 - self.dynamics.momentum(q0, b)
        return self.dynamics.rollout_latent(PhaseState(q0, p0), u, k - 1).state(k - 1)

    def read_states(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """Every frame of series (B, T >= 2, H, W, 3) read alone: q (B, T, E, D), and p from the
        backward difference of the readings up to each time (first order at t = 1, forward at t = 0)."""
        xy = self.locate(frames)
        q = self.geometry.from_image(xy)
        steps = q[:, 1:] - q[:, :-1]
        if self.geometry.angular:
            steps = wrapped(steps)
        v1 = steps / self.dt  # (B, T - 1, ...): first-order backward at t = 1..T-1
        velocity = torch.cat([v1[:, :1], v1], dim=1)  # forward difference at t = 0
        if q.shape[1] >= 3:
            velocity[:, 2:] = (3 * steps[:, 1:] - steps[:, :-1]) / (2 * self.dt)
        b, t = q.shape[:2]
        p = self.dynamics.momentum(q.reshape(b * t, *q.shape[2:]), velocity.reshape(b * t, *q.shape[2:]))
        return q, p.reshape(q.shape)

    def encode_frames(self, frames: Tensor) -> PhaseState:
        """The state at the last of k frames (B, k, H, W, 3)."""
        return self.state_from_positions(self.locate(frames[:, : self.context]))

    def positions(self, q: Tensor) -> Tensor:
        """Where the decoder draws each entity for q (..., E, D): (..., E, 2)."""
        return self.geometry.to_image(q)

    def decode_frames(self, q: Tensor) -> Tensor:
        """q (..., E, D) -> frames (..., H, W, 3) in [0, 1]."""
        xy = self.geometry.to_image(q)
        return self.decoder(xy, self.geometry.anchor_points(xy))

    def predict_frames(
        self, frames: Tensor, actions: Tensor | None, steps: int, fused: bool = False, record_energy: bool = False
    ) -> FramePrediction:
        """From the first k frames (B, >= k, H, W, 3): the prediction for times k-1 .. k-1+steps.

        `actions` (B, >= k - 1 + steps, A) are indexed by time like the data's `u`; the rollout
        uses those from time k-1 on.
        """
        k = self.context
        if frames.shape[1] < k:
            raise ValueError(f"the {self.kind} model reads {k} frames before predicting, got {frames.shape[1]}")
        seen = self.locate(frames[:, :k])
        z = self.state_from_positions(seen, None if actions is None else actions[:, : k - 1])
        u = None if actions is None else actions[:, k - 1 : k - 1 + steps]
        u = self.accepted_actions(u)
        use_fused = fused and not torch.is_grad_enabled()
        _q, _p, traj = self.dynamics.rollout_data(z.q, z.p, u, steps, record_energy, fused=use_fused)
        xy = self.geometry.to_image(traj.q)
        return FramePrediction(self.decoder(xy, self.geometry.anchor_points(xy)), traj, xy, seen)

    # --- WorldModel training hooks ---------------------------------------------------------------
    def observe_data(self, q: Tensor, p: Tensor, frames: Tensor | None) -> Tensor:
        if frames is None:
            raise ValueError(f"the {self.kind} model learns from frames; the data has no 'frames'")
        check_frames(frames, self.config.frame_size, "the data's frames")
        return frames

    def prepare_training(self, obs: Tensor) -> None:
        """Once per model: start the background from the data's per-pixel median frame."""
        if bool(self.prepared):
            return
        sample = obs.reshape(-1, *obs.shape[-3:])
        idx = torch.linspace(0, sample.shape[0] - 1, min(sample.shape[0], 2048), device=sample.device).long()
        self.decoder.set_background(frames_to_float(sample[idx]).median(dim=0).values)
        self.prepared.fill_(True)

    def window_length(self, horizon: int) -> int:
        return self.context + horizon

    def window_loss(
        self, obs: Tensor, actions: Tensor | None, horizon: int, progress: float = 1.0
    ) -> tuple[Tensor, Tensor]:
        k = self.context
        frames = frames_to_float(obs)  # (B, k + h, H, W, 3)
        xy = self.encoder(frames, self.decoder.background_image())  # (B, k + h, E, 2): every frame read alone
        if not bool(self.geometry.calibrated):
            drawn = self.decoder(xy, self.geometry.anchor_points(xy))
            loss = image_loss(drawn, frames)
            with torch.no_grad():
                empty = F.mse_loss(self.decoder.background_image().expand_as(frames), frames)
                found = progress >= WARMUP_MIN and F.mse_loss(drawn, frames) <= FOUND_RATIO * empty
            if found or progress >= WARMUP_MAX:
                # relabelling entities rewrites encoder and decoder weights in place, which this
                # step's graph has used: read and draw again on the relabelled weights
                self._calibrate(xy.detach())
                xy = self.encoder(frames, self.decoder.background_image())
                loss = image_loss(self.decoder(xy, self.geometry.anchor_points(xy)), frames)
            return loss, frames.new_zeros(())
        recon = image_loss(self.decoder(xy, self.geometry.anchor_points(xy)), frames)
        read = xy.detach()
        fitted = ((self.geometry.to_image(self.geometry.from_image(read)) - read) ** 2).mean()
        z0 = self.state_from_positions(xy[:, :k], None if actions is None else actions[:, : k - 1])
        u = None if actions is None else self.accepted_actions(actions[:, k - 1 : k - 1 + horizon])
        traj = self.dynamics.rollout_latent(z0, u, horizon)
        rolled = self.geometry.to_image(traj.q)  # (B, h + 1, E, 2)
        pred = image_loss(self.decoder(rolled, self.geometry.anchor_points(rolled), frozen=True), frames[:, k - 1 :])
        latent = ((rolled[:, 1:] - read[:, k:]) ** 2).mean()
        loss = (
            pred + RECONSTRUCTION_WEIGHT * recon + fitted + LATENT_WEIGHT * latent + self.dynamics.structure_prior(traj)
        )
        self.last_loss_terms = {
            "prediction": float(pred.detach()), "reconstruction": float(recon.detach()),
            "geometry": float(fitted.detach()), "latent": float(latent.detach()),
        }  # fmt: skip
        return loss, self.dynamics.regularization(traj)

    @torch.no_grad()
    def _calibrate(self, xy: Tensor) -> None:
        """Fit the geometry to read positions (..., E, 2), once. When entities hang from each other
        (a double pendulum, a chain), which reading is which entity matters and the warm-up's order
        is arbitrary: every relabelling is tried and the one the geometry fits best is kept."""
        e = self.config.n_entities
        identity = list(range(e))
        orders = [list(o) for o in itertools.permutations(identity)] if self.geometry.chained and e <= 4 else [identity]
        best: tuple[float, list[int], ObservationGeometry] | None = None
        for order in orders:
            candidate = copy.deepcopy(self.geometry)
            candidate.calibrate(xy[..., order, :])
            r = float(candidate.residual(xy[..., order, :]))
            if best is None or r < best[0]:
                best = (r, order, candidate)
        assert best is not None
        _, order, fitted = best
        self.geometry.load_state_dict(fitted.state_dict())
        if order != identity:
            self.encoder.relabel(order)
            self.decoder.relabel(order)

    def series_error(self, obs: Tensor, actions: Tensor | None) -> float:
        """Validation: pixel MSE of the prediction from the first k frames over the whole series."""
        out = self.predict_frames(obs, actions, obs.shape[1] - self.context)
        return float(F.mse_loss(out.frames, frames_to_float(obs[:, self.context - 1 :])))

    @torch.no_grad()
    def diagnose(self, obs: Tensor, actions: Tensor | None) -> str | None:
        """A warning when the model draws the background only (its reconstruction is no better)."""
        frames = frames_to_float(obs)
        drawn = self.decode_frames(self.geometry.from_image(self.encoder(frames, self.decoder.background_image())))
        recon = float(F.mse_loss(drawn, frames))
        empty = float(F.mse_loss(self.decoder.background_image().expand_as(frames), frames))
        if recon > STUCK_RATIO * empty:
            return (
                f"the model draws little more than the background (reconstruction {recon:.3g} vs "
                f"{empty:.3g} for the background alone): it has not found the bodies yet"
            )
        return None
