"""World models that see: frames -> entity phase space -> frames (roles 1 and 3 for pixels).

    frames t-k+1..t  --FrameEncoder-->  z_t = {(q_i, p_i)}  --dynamics-->  z_t+1..  --FrameDecoder-->  frames

- FrameEncoder: a stack of k >= 2 consecutive frames (momentum cannot be read from one frame),
  through a small CoordConv trunk, to one (q_i, p_i) per entity (per-entity heads).
- FrameDecoder: a small transposed-convolution decoder run once per entity on its position q_i
  alone (frames show where things are, not how fast they move); the entities' colour logits add up
  over a learned background. So every decoded frame is the
  model's own rendering of its predicted state, never the simulator's renderer.
- The dynamics in between are an unchanged state model on the latent (the HWM, or the MLP
  transition as the unstructured baseline): same knobs, energies, fused rollouts.

Training (fit(), via the WorldModel hooks): windows of k + h frames; encode the first k, roll out
h steps, decode the k-th to the last frame and compare (reconstruction + prediction), plus a latent
consistency term (the rolled-out state against the encoder's (fixed) reading of a later frame
stack), a weak anchor of the latent's scale, and the HWM's residual penalty.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from hwm_studio.models.baselines import MLPTransition
from hwm_studio.models.config import ModelConfig
from hwm_studio.models.hwm import HamiltonianWorldModel
from hwm_studio.physics.rollout import Trajectory
from hwm_studio.state import PhaseState

CONSISTENCY_WEIGHT = 1e-3  # the pixel MSE is ~1e-3 and latent errors ~1: larger weights collapse the latent
# A weak prior pulling the encoder's reading towards |z| ~ 1 (the role of HGN's KL term). Nothing
# else fixes the latent's scale: without it the HWM's latent ran away (q std ~8000) or, with
# friction and residual on, collapsed to draw-the-background-only (HGN mass-spring, 1200 steps:
# pixel MSE 25.7e-4 without, 1.44e-4 with it; see the README).
ANCHOR_WEIGHT = 1e-5


def frames_to_float(frames: Tensor) -> Tensor:
    """uint8 (..., H, W, 3) -> float32 in [0, 1] (float input passes through)."""
    if frames.dtype == torch.uint8:
        return frames.to(torch.float32) / 255.0
    return frames.to(torch.float32)


def frames_to_uint8(frames: Tensor | np.ndarray) -> np.ndarray:
    """Decoded float frames in [0, 1] -> uint8 (..., H, W, 3), as shown and exported."""
    x = frames.detach().cpu().numpy() if isinstance(frames, Tensor) else np.asarray(frames)
    return np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)


def check_frames(frames: Tensor, size: int, where: str = "frames") -> None:
    """Clear errors for frames a pixel model cannot read: dtype, rank, size, channels, values."""
    if frames.dtype not in (torch.uint8, torch.float32, torch.float64):
        raise ValueError(f"{where} must be uint8 (0-255) or float (0-1), got {frames.dtype}")
    if frames.ndim < 4 or frames.shape[-1] != 3:
        raise ValueError(f"{where} must have shape (..., H, W, 3) with 3 RGB channels, got {tuple(frames.shape)}")
    if frames.shape[-3:-1] != (size, size):
        raise ValueError(
            f"{where} must be {size}x{size} pixels for this model, got {frames.shape[-3]}x{frames.shape[-2]}"
        )
    if frames.is_floating_point() and not torch.isfinite(frames).all():
        raise ValueError(f"{where} contain NaN or infinite values")


def _coords(size: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """(2, size, size) pixel-centre coordinates in [-1, 1]: x to the right, y up."""
    c = (torch.arange(size, device=device, dtype=dtype) + 0.5) / size * 2 - 1
    y, x = torch.meshgrid(-c, c, indexing="ij")
    return torch.stack([x, y])


class FrameEncoder(nn.Module):
    """k stacked RGB frames (B, k, H, W, 3) -> PhaseState (B, E, D) (one head slice per entity)."""

    def __init__(self, context: int, size: int, n_entities: int, dim: int, width: int = 32) -> None:
        super().__init__()
        if context < 2:
            raise ValueError(f"a pixel encoder needs >= 2 frames to see motion, got {context}")
        self.context, self.size, self.n_entities, self.dim = context, size, n_entities, dim
        self.trunk = nn.Sequential(
            nn.Conv2d(3 * context + 2, width, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1),
            nn.SiLU(),
            nn.Conv2d(2 * width, 2 * width, 4, stride=2, padding=1),
            nn.SiLU(),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(2 * width * 16, 128),
            nn.SiLU(),
        )
        self.heads = nn.Linear(128, n_entities * 2 * dim)  # entity i reads slice i

    def forward(self, frames: Tensor) -> PhaseState:
        x = frames_to_float(frames)
        b, k = x.shape[:2]
        if k != self.context:
            raise ValueError(f"the encoder reads {self.context} frames, got {k}")
        x = x.permute(0, 1, 4, 2, 3).reshape(b, 3 * k, self.size, self.size) - 0.5
        x = torch.cat([x, _coords(self.size, x.device, x.dtype).expand(b, -1, -1, -1)], dim=1)
        z = self.heads(self.trunk(x)).reshape(b, self.n_entities, 2, self.dim)
        return PhaseState(z[:, :, 0], z[:, :, 1])


class FrameDecoder(nn.Module):
    """Positions q (N, E, D) -> frames (N, H, W, 3) in [0, 1], each entity drawn by the same net.

    Per entity: q_i (as (cos q, sin q) for angles, so that a pendulum that goes over the top draws
    the same picture at q and q + 2 pi) with a one-hot entity id (the frames draw each entity in its
    own colour, so the decoder must know which one it draws, even when the dynamics treat them alike)
    -> an MLP -> a 64-channel map of
    size/8 squared -> three stride-2 transposed convolutions -> that entity's colour logits at full
    size; the entities' logits add up over a learned background, then a sigmoid. Tried first and
    dropped: a per-pixel MLP of (q_i, x, y) (spatial broadcast) and softmax-mask compositing; on
    32x32 frames with bodies of ~2 px both stayed in the draw-only-the-background minimum.
    """

    def __init__(self, size: int, n_entities: int, dim: int, angular: bool = False, width: int = 64) -> None:
        super().__init__()
        if size % 8:
            raise ValueError(f"the frame decoder needs a frame size divisible by 8, got {size}")
        self.size, self.n_entities, self.dim, self.width, self.angular = size, n_entities, dim, width, angular
        self.identity = n_entities if n_entities > 1 else 0  # one-hot entity id
        self.base = size // 8
        self.lift = nn.Sequential(
            nn.Linear((2 * dim if angular else dim) + self.identity, 128),
            nn.SiLU(),
            nn.Linear(128, width * self.base**2),
            nn.SiLU(),
        )
        self.up = nn.Sequential(
            nn.ConvTranspose2d(width, width, 4, stride=2, padding=1),
            nn.SiLU(),
            nn.ConvTranspose2d(width, width // 2, 4, stride=2, padding=1),
            nn.SiLU(),
            nn.ConvTranspose2d(width // 2, 3, 4, stride=2, padding=1),  # this entity's RGB logits
        )
        self.background = nn.Parameter(torch.full((3,), -2.0))  # logits of the empty scene

    def forward(self, q: Tensor) -> Tensor:
        n, e, _ = q.shape
        s = self.size
        who = torch.cat([torch.cos(q), torch.sin(q)], dim=-1) if self.angular else q
        if self.identity:
            who = torch.cat([who, torch.eye(e, device=q.device, dtype=q.dtype).expand(n, e, e)], dim=-1)
        x = self.lift(who.reshape(n * e, -1)).reshape(n * e, self.width, self.base, self.base)
        out = self.up(x).reshape(n, e, 3, s, s).sum(1)  # entities superpose in logit space
        return torch.sigmoid(out + self.background[:, None, None]).permute(0, 2, 3, 1)


class PixelCoding:
    """What turns a latent state model into a pixel world model (mixed into HWM and MLP classes)."""

    frame_encoder: FrameEncoder
    frame_decoder: FrameDecoder
    config: ModelConfig
    sees_pixels = True

    def _build_pixel_coders(self) -> None:
        c = self.config
        if c.frame_size < 8:
            raise ValueError(f"a pixel model needs frame_size >= 8, got {c.frame_size}")
        self.frame_encoder = FrameEncoder(c.context_frames, c.frame_size, c.n_entities, c.dim)
        self.frame_decoder = FrameDecoder(c.frame_size, c.n_entities, c.dim, c.angular)

    @property
    def context(self) -> int:
        return self.config.context_frames

    def encode_frames(self, frames: Tensor) -> PhaseState:
        """The state at the last of k frames (B, k, H, W, 3)."""
        check_frames(frames, self.config.frame_size)
        return self.frame_encoder(frames)

    def decode_frames(self, q: Tensor) -> Tensor:
        """Positions (..., E, D) -> frames (..., H, W, 3) in [0, 1]."""
        lead = q.shape[:-2]
        out = self.frame_decoder(q.reshape(-1, *q.shape[-2:]))
        return out.reshape(*lead, *out.shape[1:])

    def predict_frames(
        self, frames: Tensor, actions: Tensor | None, steps: int, fused: bool = False, record_energy: bool = False
    ) -> tuple[Tensor, Trajectory]:
        """From the first k frames (B, >= k, H, W, 3): decoded frames for times k-1 .. k-1+steps
        (the last context frame reconstructed, then the predictions), and the latent trajectory.

        `actions` (B, >= k - 1 + steps, A) are indexed by time like the data's `u`; the rollout
        uses those from time k-1 on.
        """
        k = self.context
        z = self.encode_frames(frames[:, :k])
        u = None if actions is None else actions[:, k - 1 : k - 1 + steps]
        u = self.accepted_actions(u)  # type: ignore[attr-defined]
        if fused and not torch.is_grad_enabled():
            _q, _p, traj = self.rollout_data(z.q, z.p, u, steps, record_energy, fused=True)  # type: ignore[attr-defined]
        else:
            traj = self.rollout_latent(z, u, steps, record_energy)  # type: ignore[attr-defined]
        return self.decode_frames(traj.q), traj

    # --- WorldModel training hooks ---------------------------------------------------------------
    def observe_data(self, q: Tensor, p: Tensor, frames: Tensor | None) -> Tensor:
        if frames is None:
            raise ValueError(f"the {self.config.kind} model learns from frames; the data has no 'frames'")
        check_frames(frames, self.config.frame_size, "the data's frames")
        return frames

    def window_length(self, horizon: int) -> int:
        return self.context + horizon

    def window_loss(self, obs: Tensor, actions: Tensor | None, horizon: int) -> tuple[Tensor, Tensor]:
        k = self.context
        target = frames_to_float(obs[:, k - 1 :])  # (B, h+1, H, W, 3)
        pred, traj = self.predict_frames(obs, actions, horizon)
        recon = F.mse_loss(pred, target)
        # the encoder's reading of later frames should agree with the rolled-out state; one later
        # time per window keeps the cost to two encoder passes
        t = horizon if horizon == 1 else int(torch.randint(1, horizon + 1, ()).item())
        z_later = self.frame_encoder(obs[:, t : t + k])
        z_roll = traj.state(t)
        # The later reading is a fixed target (no gradient): agreement must come from the rollout, not
        # from the encoder reading every frame as the same state. Tried and dropped: dividing by the
        # latent's spread (its gradient exploded as the spread shrank and the latent collapsed) and a
        # variance hinge (it dominated the loss and held reconstruction back).
        z_later = PhaseState(z_later.q.detach(), z_later.p.detach())
        consistency = ((z_roll.q - z_later.q) ** 2).mean() + ((z_roll.p - z_later.p) ** 2).mean()
        penalty = self.regularization(traj)  # type: ignore[attr-defined]
        z0 = traj.state(0)
        anchor = (z0.q**2).mean() + (z0.p**2).mean()
        return recon + CONSISTENCY_WEIGHT * consistency + ANCHOR_WEIGHT * anchor, penalty

    def series_error(self, obs: Tensor, actions: Tensor | None) -> float:
        """Validation: pixel MSE of the prediction from the first k frames over the whole series."""
        steps = obs.shape[1] - self.context
        pred, _ = self.predict_frames(obs, actions, steps)
        return float(F.mse_loss(pred, frames_to_float(obs[:, self.context - 1 :])))


class PixelHamiltonianWorldModel(PixelCoding, HamiltonianWorldModel):
    """The HWM on a latent read from frames and rendered back to frames."""

    kind = "hwm-pixels"

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self._build_pixel_coders()


class PixelMLPTransition(PixelCoding, MLPTransition):
    """The unstructured baseline with the same encoder and decoder: compares like with like."""

    kind = "mlp-pixels"

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self._build_pixel_coders()
