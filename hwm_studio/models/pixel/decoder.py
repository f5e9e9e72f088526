"""The sprite decoder: entity positions -> a frame, each body drawn exactly where q puts it.

    background (learned image)
      over  each linked entity's link: a learned template stretched from its anchor to the body
      over  each entity's sprite: a learned template (colour + opacity) centred on the body

Templates are placed by an inverse spatial transform (every output pixel asks where it falls in
the template's own frame, `grid_sample` reads it there, bilinearly) and composited with
premultiplied alpha, so the picture is a differentiable function of the positions and a body can
only appear where its position says. A link's frame has its u axis from the anchor (u = 0) to the
body (u = 1) and a fixed width, so a rigid rod rotates with an angle and a spring's rod stretches
with a displacement; a template that learns zero opacity draws no link. Nothing else is drawn:
what is not background must be explained by a body or a link.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from hwm_studio.frames import pixel_grid

SPRITE_HALF = 0.3  # half-width of a body template, in normalised image units (+-4.8 px at 32 px)
LINK_HALF = 0.12  # half-width of a link template, same units
LINK_SPAN = (-0.25, 1.25)  # a link template covers u in this range (anchor at 0, body at 1)


def template_cells(size: int) -> int:
    """Cells across a body template for frames `size` px square: two per pixel (0.6 px at any size).

    Bilinear reads of a coarser template blur a body's anti-aliased rim wherever it sits between
    cells: at the old one cell per pixel (`legacy_template_cells`) the spring's reconstruction
    stopped at 0.42e-4 pixel MSE with the positions held at their best and the templates refitted,
    against 0.07e-4 at two (measured on the HGN spring frames)."""
    return size // 2 + 1


def legacy_template_cells(size: int) -> int:
    """The template size of models saved before `template_cells` (config `sprite_cells` = 0)."""
    return max(9, size // 4 + 1)


class SpriteDecoder(nn.Module):
    """Positions (..., E, 2) and anchor points (..., E, 2) -> frames (..., H, W, 3) in [0, 1]."""

    def __init__(self, size: int, n_entities: int, linked: Sequence[bool], cells: int | None = None) -> None:
        super().__init__()
        if len(linked) != n_entities:
            raise ValueError(f"sprite decoder: {len(linked)} link flags for {n_entities} entities")
        cells = template_cells(size) if cells is None else cells
        if cells < 3:
            raise ValueError(f"sprite decoder: a template needs >= 3 cells across, got {cells}")
        self.size, self.n_entities = size, n_entities
        self.linked = [i for i, flag in enumerate(linked) if flag]
        r = torch.linspace(-1, 1, cells)
        rr = r[None, :] ** 2 + r[:, None] ** 2
        sprite = torch.zeros(n_entities, 4, cells, cells)
        sprite[:, 3] = 8.0 * torch.exp(-rr / (2 * 0.35**2)) - 4.0  # a soft disc, ~2 px radius at 32 px
        sprite[:, :3] = 0.3 * torch.randn(n_entities, 3, 1, 1)  # distinct colours: entities start apart
        self.sprite = nn.Parameter(sprite)  # RGB logits + opacity logit, row 0 at the top
        link = torch.zeros(len(self.linked), 4, 2 * cells // 3 + 1, 2 * cells)
        link[:, 3] = -4.0  # links start transparent; they appear where the frames have them
        self.link = nn.Parameter(link)
        self.background = nn.Parameter(torch.full((3, size, size), -2.0))  # logits of the empty scene
        self.register_buffer("grid", pixel_grid(size), persistent=False)  # (H, W, 2)

    @torch.no_grad()
    def set_background(self, image: Tensor) -> None:
        """Start the background from an image (H, W, 3) in [0, 1] (e.g. the data's median frame)."""
        x = image.to(self.background.dtype).clamp(1e-3, 1 - 1e-3).permute(2, 0, 1)
        self.background.copy_(torch.log(x / (1 - x)))

    @torch.no_grad()
    def relabel(self, order: list[int]) -> None:
        """Entity i now looks like entity order[i] did (its sprite, and its link where both have one)."""
        old_sprite, old_link = self.sprite.clone(), self.link.clone()
        self.sprite.copy_(old_sprite[order])
        for k, i in enumerate(self.linked):
            if order[i] in self.linked:
                self.link[k].copy_(old_link[self.linked.index(order[i])])

    def background_image(self) -> Tensor:
        """The learned empty scene, (H, W, 3) in [0, 1]."""
        return torch.sigmoid(self.background).permute(1, 2, 0)

    @staticmethod
    def _premultiplied(template: Tensor) -> Tensor:
        """RGB + opacity logits (K, 4, h, w) -> premultiplied (alpha * colour, alpha) in [0, 1]."""
        alpha = torch.sigmoid(template[:, 3:])
        return torch.cat([alpha * torch.sigmoid(template[:, :3]), alpha], dim=1)

    def _place(self, template: Tensor, grid: Tensor, frozen: bool) -> Tensor:
        """Sample templates (K, 4, h, w) at grid_sample coordinates (N, K, H, W, 2) -> (N, K, 4, H, W).

        Outside its frame a template is transparent (zero padding of premultiplied values)."""
        n, k, h, w, _ = grid.shape
        src = (
            self._premultiplied(template.detach() if frozen else template)
            .expand(n, -1, -1, -1, -1)
            .reshape(n * k, 4, *template.shape[-2:])
        )
        out = F.grid_sample(
            src, grid.reshape(n * k, h, w, 2), mode="bilinear", padding_mode="zeros", align_corners=True
        )
        return out.reshape(n, k, 4, h, w)

    def layers(self, xy: Tensor, anchors: Tensor, frozen: bool = False) -> Tensor:
        """Premultiplied layers (N, L, 4, H, W) in drawing order: links, then bodies."""
        return torch.cat(self._layers(xy, anchors, frozen), dim=1)

    def _layers(self, xy: Tensor, anchors: Tensor, frozen: bool) -> list[Tensor]:
        """The links' layers (N, K, 4, H, W), then the bodies' (N, E, 4, H, W).

        Each template's frame is an affine map of image coordinates, so every pixel's place in it
        is one small matmul, (H*W, 2) x (2, 2) per template and frame, plus an offset; grid_sample's
        y axis points down, so the second row is negated."""
        c = self.grid.to(xy.dtype).reshape(-1, 2)  # (P, 2) image coordinates of the pixel centres
        n, size = xy.shape[0], self.size
        out = []
        if self.linked:
            a = anchors[:, self.linked]  # (N, K, 2)
            d = xy[:, self.linked] - a  # anchor -> body
            length2 = (d * d).sum(-1, keepdim=True).clamp_min(1e-6)  # (N, K, 1)
            lo, hi = LINK_SPAN
            along = d * (2 / ((hi - lo) * length2))  # u = rel . d / |d|^2, rescaled to [-1, 1] over the span
            across = torch.stack([d[..., 1], -d[..., 0]], dim=-1) / (length2.sqrt() * LINK_HALF)  # -v
            basis = torch.stack([along, across], dim=-1)  # (N, K, 2, 2): columns give grid x, grid y
            shift = torch.tensor([(lo + hi) / (hi - lo), 0.0], dtype=xy.dtype, device=xy.device)
            offset = (a[..., None] * basis).sum(-2) + shift  # (N, K, 2)
            grid = torch.matmul(c, basis) - offset[:, :, None]  # (N, K, P, 2)
            out.append(self._place(self.link, grid.reshape(n, len(self.linked), size, size, 2), frozen))
        flip = torch.tensor([1.0 / SPRITE_HALF, -1.0 / SPRITE_HALF], dtype=xy.dtype, device=xy.device)
        grid = (c[None, None] - xy[:, :, None]) * flip  # (N, E, P, 2)
        out.append(self._place(self.sprite, grid.reshape(n, self.n_entities, size, size, 2), frozen))
        return out

    def forward(self, xy: Tensor, anchors: Tensor, frozen: bool = False) -> Tensor:
        """`frozen`: draw with the appearance (templates, background) held fixed, so that a loss on
        these frames moves only the positions (prediction errors must not blur the sprites)."""
        lead = xy.shape[:-2]
        xy = xy.reshape(-1, self.n_entities, 2)
        anchors = anchors.reshape(-1, self.n_entities, 2)
        background = self.background.detach() if frozen else self.background
        img = torch.sigmoid(background).expand(xy.shape[0], -1, -1, -1)  # (N, 3, H, W)
        for group in self._layers(xy, anchors, frozen):
            for layer in group.unbind(1):  # "over" compositing, in order
                img = torch.addcmul(layer[:, :3] + img, layer[:, 3:], img, value=-1.0)
        return img.permute(0, 2, 3, 1).reshape(*lead, self.size, self.size, 3)
