"""RGB frames as the models see them: dtype conversion, checks, and pixel-centre coordinates.

One module for every frame helper, so that encoders, decoders, the scene and the CLI agree on
what a frame is: (..., H, W, 3), uint8 in 0-255 or float in [0, 1]; image coordinates are
normalised to [-1, 1] with x to the right and y up (row 0 is the top).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


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


def pixel_grid(size: int, device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """(size, size, 2) normalised (x, y) of every pixel centre: x in [-1, 1] to the right, y up."""
    c = (torch.arange(size, device=device, dtype=dtype) + 0.5) / size * 2 - 1
    y, x = torch.meshgrid(-c, c, indexing="ij")
    return torch.stack([x, y], dim=-1)


def to_pixels(xy: Tensor | np.ndarray, size: int) -> np.ndarray:
    """Normalised image coordinates (..., 2) -> (column, row) in pixels (0.5 = first pixel centre)."""
    a = xy.detach().cpu().numpy() if isinstance(xy, Tensor) else np.asarray(xy)
    return np.stack([(a[..., 0] + 1) * size / 2, (1 - a[..., 1]) * size / 2], axis=-1)
