"""The localising encoder: one frame -> where each entity is in it.

    frame - the empty scene (N, H, W, 3) --fully convolutional net--> one logit map per entity
          --softmax over pixels, entity by entity, each excluded from where earlier ones were found-->
          attention (N, E, H, W) --expected pixel position (soft-argmax)--> (N, E, 2) in [-1, 1]

Why this shape: positions are what a frame shows (speed is not in one frame); a convolution finds
a body wherever it is (translation-equivariant: a body seen in one corner during training is
found in another); the soft-argmax is differentiable and sub-pixel. Reading the frame minus the
decoder's empty scene makes every background pixel look alike from the first step, so attention
goes to what moves. Entities are read in order and each is kept off the places where the earlier
ones were found: without that, several entities can settle on one body, or sit at the centre of
a symmetric scene (two bodies orbiting the image centre), where the reconstruction's pull from
the bodies cancels. The geometry turns positions into q; momenta come from q across frames (see
PixelWorldModel), never from a free regression, so the latent cannot collapse to a point.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from hwm_studio.frames import frames_to_float, pixel_grid

EXCLUSION_RADIUS = 0.1  # normalised image units (1.6 px at 32 px): where an earlier entity was found
EXCLUSION_DEPTH = 20.0  # attention there is down-weighted e^20 (entities may not share a body)
SHARPNESS = 8.0  # the net's logits are scaled by this: a peaked attention from the start
SALIENCY = (
    10.0  # weight of |frame - empty scene|^2 in every entity's logits: attention starts on what is not background
)
# Saliency averaged over k x k pixels (k = the config's saliency_pool): attention then starts on the
# brightest *region*, not the brightest pixel, so a body a few pixels across outweighs a 1.5-pixel
# rod even where the rod is brighter (the double pendulum's grey links against its coloured bobs,
# where per-pixel saliency put an entity on the rod by the pivot and none on the inner bob).
SALIENCY_POOL = 3
POOLED_SALIENCY = 20.0  # its weight once pooled: averaging about halves a small body's peak


def saliency_pool_for(anchors: Sequence[int | None] | None) -> int:
    """The default pooling for a geometry's anchors: SALIENCY_POOL where a body hangs from another
    body (links between bodies, as on the double pendulum: per pixel it scored 32.9e-4 there against
    3.49e-4 pooled), per pixel elsewhere. Pooled saliency stays in the logits and pulls every reading
    toward the bright pixels around the body (its rod): on the pendulum, over 30 predicted steps,
    0.63e-4 and 0.60e-4 per pixel against 1.56e-4 and 1.28e-4 pooled (two seeds, benchmarks/hgn.py)."""
    return SALIENCY_POOL if anchors is not None and any(a is not None and a >= 0 for a in anchors) else 1


def soft_argmax(logits: Tensor) -> tuple[Tensor, Tensor]:
    """Logit maps (N, H, W) -> the attention's centre of mass (N, 2) in normalised image coordinates,
    and the attention (N, H, W) = softmax over pixels."""
    n, h, w = logits.shape
    att = logits.reshape(n, h * w).softmax(-1)
    return att @ pixel_grid(h, logits.device, logits.dtype).reshape(h * w, 2), att.reshape(n, h, w)


class LocalisingEncoder(nn.Module):
    """Frames (..., H, W, 3) -> entity positions (..., E, 2); `attention` shows where it looks."""

    def __init__(self, n_entities: int, width: int = 16, saliency_pool: int = 1) -> None:
        super().__init__()
        if saliency_pool < 1 or saliency_pool % 2 == 0:
            raise ValueError(f"saliency_pool must be an odd number of pixels >= 1, got {saliency_pool}")
        self.n_entities = n_entities
        self.saliency_pool = saliency_pool
        # a 5 x 5 colour-and-shape detector, then per-pixel layers: small enough to stay local
        # (a body, not its surroundings) and cheap: this net reads every frame of every window
        self.net = nn.Sequential(
            nn.Conv2d(3, width, 5, padding=2),
            nn.ReLU(),
            nn.Conv2d(width, width, 1),
            nn.ReLU(),
            nn.Conv2d(width, n_entities, 1),
        ).to(memory_format=torch.channels_last)
        # the learned part starts at zero: attention starts as saliency (with the exclusions) alone,
        # and the net learns from the reconstruction which body each entity is
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def logits(self, frames: Tensor, background: Tensor | None) -> Tensor:
        """(..., H, W, 3) -> (N, E, H, W) attention logits, N the flattened leading dims."""
        x = frames_to_float(frames)
        h, w = x.shape[-3:-1]
        x = x.reshape(-1, h, w, 3)
        x = x - (0.5 if background is None else background.detach().to(x.dtype))
        saliency = (x * x).sum(-1)[:, None]  # (N, 1, H, W): how far each pixel is from the empty scene
        k = self.saliency_pool
        if k > 1:
            saliency = POOLED_SALIENCY * F.avg_pool2d(saliency, k, 1, k // 2, count_include_pad=False)
        else:
            saliency = SALIENCY * saliency
        return SHARPNESS * self.net(x.permute(0, 3, 1, 2)) + saliency  # channels-last: faster convolutions

    def read(self, frames: Tensor, background: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Positions (..., E, 2) and attention (..., E, H, W) (each map sums to 1)."""
        lg = self.logits(frames, background)
        n, e, h, w = lg.shape
        grid = pixel_grid(h, lg.device, lg.dtype)  # (H, W, 2)
        prior = lg.new_zeros(n, h, w)  # log-weights: 0, or -EXCLUSION_DEPTH where taken
        positions, maps = [], []
        for i in range(e):
            xy, att = soft_argmax(lg[:, i] + prior)  # (N, 2), (N, H, W)
            positions.append(xy)
            maps.append(att)
            if i + 1 < e:
                d2 = ((grid[None] - xy.detach()[:, None, None]) ** 2).sum(-1)  # (N, H, W)
                prior = prior - EXCLUSION_DEPTH * torch.exp(-d2 / (2 * EXCLUSION_RADIUS**2))
        lead = frames.shape[:-3]
        return torch.stack(positions, 1).reshape(*lead, e, 2), torch.stack(maps, 1).reshape(*lead, e, h, w)

    @torch.no_grad()
    def relabel(self, order: list[int]) -> None:
        """Entity i now reads what entity order[i] read."""
        last = self.net[-1]
        last.weight.copy_(last.weight[order].clone())
        last.bias.copy_(last.bias[order].clone())

    def forward(self, frames: Tensor, background: Tensor | None = None) -> Tensor:
        return self.read(frames, background)[0]
