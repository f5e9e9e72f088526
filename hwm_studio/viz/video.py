"""Exporting rollouts as video: truth | model | error, side by side (the CLI's `render`).

The model panel is what the model itself shows: a pixel model's decoded frames, or a state
model's predicted states drawn by the system's renderer. Writing goes through a temporary file
in the target directory and a rename, so a failed export leaves no half-written video.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from hwm_studio.viz.frames import error_map

VIDEO_SUFFIXES = (".mp4", ".gif")
GAP = 2  # pixels between panels


def side_by_side(truth: np.ndarray, model: np.ndarray, scale: int = 1) -> np.ndarray:
    """uint8 (T, H, W, 3) stacks -> (T, H * scale, 3 * W * scale + 2 * GAP, 3): truth | model | error."""
    if truth.dtype != np.uint8 or model.dtype != np.uint8:
        raise ValueError("side_by_side expects uint8 frames")
    if truth.shape != model.shape or truth.ndim != 4 or truth.shape[-1] != 3:
        raise ValueError(f"frame stacks must both be (T, H, W, 3); got {truth.shape} and {model.shape}")
    panels = [truth, model, error_map(truth, model)]
    if scale > 1:
        panels = [p.repeat(scale, axis=1).repeat(scale, axis=2) for p in panels]
    t, h = panels[0].shape[:2]
    gap = np.full((t, h, GAP, 3), 255, dtype=np.uint8)
    return np.concatenate([panels[0], gap, panels[1], gap, panels[2]], axis=2)


def write_video(
    path: str | os.PathLike[str], frames: np.ndarray | Iterable[np.ndarray], fps: float = 10.0
) -> tuple[Path, int]:
    """Write uint8 frames (T, H, W, 3), or an iterable of such chunks (streamed, so a long episode
    is never held whole), as .mp4 (H.264 through imageio-ffmpeg) or .gif, atomically; returns the
    path and the number of frames written."""
    import imageio.v2 as imageio

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise ValueError(f"video must end in {' or '.join(VIDEO_SUFFIXES)}, got {path.name!r}")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    chunks = iter([frames] if isinstance(frames, np.ndarray) else frames)
    fd, tmp = tempfile.mkstemp(suffix=suffix, dir=path.parent if str(path.parent) else ".")
    os.close(fd)
    written, shape = 0, None
    try:
        options = (
            {"duration": 1000.0 / fps, "loop": 0}
            if suffix == ".gif"
            else {"fps": fps, "codec": "libx264", "macro_block_size": 1}
        )
        with imageio.get_writer(tmp, mode="I", **options) as writer:
            for chunk in chunks:
                if chunk.dtype != np.uint8 or chunk.ndim != 4 or chunk.shape[-1] != 3:
                    raise ValueError(f"expected uint8 frames (T, H, W, 3), got {chunk.dtype} {chunk.shape}")
                if shape is not None and chunk.shape[1:] != shape:
                    raise ValueError(f"every frame must be {shape}, got {chunk.shape[1:]}")
                shape = chunk.shape[1:]
                if suffix == ".mp4":  # H.264 with yuv420p needs even sides: pad with background
                    h, w = chunk.shape[1:3]
                    chunk = np.pad(chunk, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), constant_values=255)
                for frame in chunk:
                    writer.append_data(frame)
                written += len(chunk)
        if written == 0:
            raise ValueError("no frames to write")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; a video is an ordinary file
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path, written
