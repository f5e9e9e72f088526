"""Frame conversions for Bokeh's image_rgba (binary transfer, no PNG encoding)."""

from __future__ import annotations

import numpy as np


def to_rgba_uint32(frames: np.ndarray) -> np.ndarray:
    """uint8 RGB frames (..., H, W, 3) -> packed uint32 RGBA (..., H, W), rows flipped.

    Bokeh's image origin is the bottom-left corner, frames are stored top row first.
    """
    if frames.dtype != np.uint8 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames (..., H, W, 3), got {frames.dtype} {frames.shape}")
    rgba = np.empty((*frames.shape[:-1], 4), dtype=np.uint8)
    rgba[..., :3] = frames
    rgba[..., 3] = 255
    return np.ascontiguousarray(np.flip(rgba, axis=-3)).view(np.uint32)[..., 0]


def error_map(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Per-pixel absolute error of two uint8 RGB frame stacks, as a uint8 heat image (..., H, W, 3)."""
    if truth.shape != pred.shape:
        raise ValueError(f"frame stacks differ in shape: {truth.shape} vs {pred.shape}")
    err = np.abs(truth.astype(np.int16) - pred.astype(np.int16)).max(axis=-1).astype(np.float32) / 255.0
    heat = np.stack([err, 0.35 * err, 0.9 * (1 - err) * err * 4], axis=-1)  # black -> orange-red
    return (np.clip(heat, 0, 1) * 255).astype(np.uint8)
