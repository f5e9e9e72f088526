"""A small vectorised 2D rasteriser: anti-aliased discs (entities) and rods (links).

Pure torch, batched over frames, deterministic (no randomness, no GPU-specific paths), so the
same states always give the same bytes. World coordinates span [-extent, extent] on both
axes, y pointing up. A `RenderStyle` draws the same states another way (colours, a coloured
background, soft blurred bodies, no rods): pixel models must not depend on one way of drawing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

# Distinct, colour-blind-friendly entity colours (Okabe-Ito), as RGB in [0, 1].
PALETTE: tuple[tuple[float, float, float], ...] = (
    (0.835, 0.369, 0.000),  # vermillion
    (0.000, 0.447, 0.698),  # blue
    (0.000, 0.620, 0.451),  # green
    (0.902, 0.624, 0.000),  # orange
    (0.800, 0.475, 0.655),  # purple
    (0.337, 0.706, 0.914),  # sky
    (0.941, 0.894, 0.259),  # yellow
)
BACKGROUND = (0.07, 0.07, 0.09)
ROD_COLOUR = (0.62, 0.62, 0.66)
MAX_PIXELS_PER_CHUNK = 4_000_000  # bounds memory when rendering long videos


@dataclass(frozen=True)
class RenderStyle:
    """How frames are drawn. The default is the project's look; others test pixel models."""

    background: tuple[float, float, float] = BACKGROUND
    colours: tuple[tuple[float, float, float], ...] = PALETTE  # cycled over entities
    rods: bool = True
    rod_colour: tuple[float, float, float] = ROD_COLOUR
    soft: bool = False  # bodies as Gaussian blobs (std = radius / 1.5) instead of sharp discs
    radius_scale: float = 1.0  # bodies drawn this much larger or smaller


STYLES: dict[str, RenderStyle] = {
    "default": RenderStyle(),
    # another renderer: warm pale background, other colours, soft blurred bodies, no rods
    "soft": RenderStyle(
        background=(0.93, 0.89, 0.78),
        colours=((0.20, 0.25, 0.60), (0.65, 0.10, 0.25), (0.15, 0.50, 0.20), (0.45, 0.30, 0.10)),
        rods=False,
        soft=True,
        radius_scale=1.3,
    ),
}


def get_style(name: str) -> RenderStyle:
    try:
        return STYLES[name]
    except KeyError:
        raise ValueError(f"unknown render style {name!r}; choose one of {', '.join(STYLES)}") from None


def entity_colours(n: int, palette: tuple[tuple[float, float, float], ...] = PALETTE) -> Tensor:
    """(n, 3) colours, cycling the palette."""
    return torch.tensor([palette[i % len(palette)] for i in range(n)], dtype=torch.float32)


def _coverage(signed_distance: Tensor, pixel: float) -> Tensor:
    """Anti-aliased coverage from a signed distance (negative inside), one pixel of ramp."""
    return (0.5 - signed_distance / pixel).clamp(0.0, 1.0)


def _segment_distance(px: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Distance from pixel centres px (H*W, 2) to segments a->b (N, S, 2): (N, S, H*W)."""
    ab = b - a  # (N, S, 2)
    ap = px[None, None] - a[:, :, None]  # (N, S, P, 2)
    denom = (ab * ab).sum(-1, keepdim=True).clamp_min(1e-12)  # (N, S, 1)
    t = ((ap * ab[:, :, None]).sum(-1) / denom).clamp(0.0, 1.0)  # (N, S, P)
    closest = ap - t[..., None] * ab[:, :, None]
    return torch.hypot(closest[..., 0], closest[..., 1])


def rasterize(
    centres: Tensor,
    radii: Tensor,
    segments: Tensor | None,
    extent: float,
    size: int,
    rod_width: float | None = None,
    style: RenderStyle | None = None,
) -> Tensor:
    """Render frames.

    Args:
        centres: (N, E, 2) entity positions in world units.
        radii: (E,) disc radii in world units.
        segments: (N, S, 2, 2) rod end points, or None.
        extent: half-width of the square view in world units.
        size: output frames are size x size pixels.
        rod_width: rod thickness in world units (default: 1.5 pixels or 0.12 * smallest radius).
        style: how to draw (default: RenderStyle()).
    Returns:
        uint8 tensor (N, size, size, 3).
    """
    if size < 8:
        raise ValueError(f"frame size must be at least 8 pixels, got {size}")
    style = style or RenderStyle()
    centres = centres.detach().to("cpu", torch.float32)
    n, e, _ = centres.shape
    pixel = 2.0 * extent / size
    coords = (torch.arange(size, dtype=torch.float32) + 0.5) * pixel - extent
    yy, xx = torch.meshgrid(-coords, coords, indexing="ij")  # row 0 is the top (largest y)
    px = torch.stack([xx, yy], dim=-1).reshape(-1, 2)  # (P, 2)
    colours = entity_colours(e, style.colours)
    radii = radii.to(torch.float32) * style.radius_scale
    width = rod_width if rod_width is not None else max(1.5 * pixel, 0.12 * float(radii.min()))
    chunk = max(1, MAX_PIXELS_PER_CHUNK // (px.shape[0] * max(e, 1)))
    out = []
    for start in range(0, n, chunk):
        c = centres[start : start + chunk]  # (n_c, E, 2)
        img = torch.tensor(style.background).expand(c.shape[0], px.shape[0], 3).clone()  # (n_c, P, 3)
        if style.rods and segments is not None and segments.shape[1] > 0:
            seg = segments[start : start + chunk].detach().to("cpu", torch.float32)
            d = _segment_distance(px, seg[:, :, 0], seg[:, :, 1])  # (n_c, S, P)
            cov = _coverage(d.min(dim=1).values - 0.5 * width, pixel)[..., None]  # (n_c, P, 1)
            img = torch.lerp(img, torch.tensor(style.rod_colour).expand_as(img), cov)  # "over": one op
        for i in range(e):
            r = torch.hypot(px[None, :, 0] - c[:, i, 0:1], px[None, :, 1] - c[:, i, 1:2])  # (n_c, P)
            if style.soft:
                cov = torch.exp(-0.5 * (1.5 * r / radii[i]) ** 2)[..., None]
            else:
                cov = _coverage(r - radii[i], pixel)[..., None]
            img = torch.lerp(img, colours[i].expand_as(img), cov)
        out.append(img)
    frames = torch.cat(out).reshape(n, size, size, 3)
    return (frames * 255.0 + 0.5).clamp(0, 255).to(torch.uint8)
