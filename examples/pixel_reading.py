"""How a pixel model reads frames: each frame, its redrawing, where each entity looks, the empty scene.

For diagnosing a pixel run that does not learn: if an entity's attention sits on a rod or on a
fixed point instead of on its body, the dynamics never see the right q. Also prints, per entity,
the circular correlation (angular geometry) or R^2 (otherwise) of its reading against the true q,
and the reconstruction error. Run from the repository root:

    python examples/pixel_reading.py assets/models/hgn_pendulum_hwm_pixels --task pendulum
    python examples/pixel_reading.py RUN --task double_pendulum --out reading.png --rows 6

Columns of the picture: the true frame | the model's redrawing of it from its own reading | the
attention of entity 0 (red) and entity 1 (green), each scaled to its maximum | the learned empty
scene. Held-out frames (seed 123, which the HGN benchmark does not use for training).
"""

from __future__ import annotations

import argparse

import imageio.v3 as iio
import numpy as np
import torch

from hwm_studio.frames import frames_to_float
from hwm_studio.models.pixel.alignment import affine_r2, circular_correlation
from hwm_studio.protocols.hgn import TASKS, dataset
from hwm_studio.training.checkpoint import CheckpointError, load_model


def reading_picture(model, frames: torch.Tensor, redrawn: torch.Tensor, scale: int = 6) -> np.ndarray:
    """One row per frame (N, H, W, 3) uint8 and its redrawing (N, H, W, 3) in [0, 1] -> an
    (N*H*scale, 4*W*scale, 3) uint8 picture."""
    with torch.no_grad():
        attention = model.attention(frames)  # (N, E, H, W)
        empty = model.decoder.background_image()
    truth = frames_to_float(frames)
    rows = []
    for n in range(frames.shape[0]):
        channels = [attention[n, i] / attention[n, i].max() for i in range(min(2, attention.shape[1]))]
        channels += [torch.zeros_like(attention[n, 0])] * (3 - len(channels))
        rows.append(torch.cat([truth[n], redrawn[n], torch.stack(channels, -1), empty], dim=1))
    picture = torch.cat(rows, dim=0).clamp(0, 1).numpy()
    return (np.kron(picture, np.ones((scale, scale, 1))) * 255 + 0.5).astype(np.uint8)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", help="a pixel model's run directory (or a pixel asset)")
    parser.add_argument("--task", required=True, choices=sorted(TASKS), help="HGN task whose frames to read")
    parser.add_argument("--trajectories", type=int, default=50, help="held-out trajectories for the scores")
    parser.add_argument("--rows", type=int, default=6, help="frames in the picture")
    parser.add_argument("--out", default="pixel_reading.png")
    args = parser.parse_args()
    if args.trajectories < 1 or args.rows < 1:
        parser.error("--trajectories and --rows must be >= 1")
    try:
        model = load_model(args.run).eval()
    except CheckpointError as exc:
        parser.error(str(exc))
    if not getattr(model, "sees_pixels", False):
        parser.error(f"{args.run} is a {model.kind} model, not a pixel model")
    data = dataset(args.task, args.trajectories, model.config.context_frames, steps=1, seed=123)
    frames = torch.as_tensor(data.frames[:, 0])  # one frame per trajectory: (N, H, W, 3)
    wanted, drawn = (model.config.n_entities, model.config.frame_size), (data.n_entities, frames.shape[1])
    if wanted != drawn:
        parser.error(f"{args.run} reads {wanted[0]} bodies in {wanted[1]}px frames; the {args.task} task draws "
                     f"{drawn[0]} in {drawn[1]}px frames")  # fmt: skip
    with torch.no_grad():
        read = model.geometry.from_image(model.locate(frames))  # (N, E, D)
        redrawn = model.decode_frames(read)
    q = read.double().numpy()
    true_q = data.q[:, 0]
    for i in range(q.shape[1]):
        if model.geometry.angular:
            name, value = "circular correlation", circular_correlation(q[:, i].ravel(), true_q[:, i].ravel())
        else:
            name, value = "R^2", affine_r2(true_q[:, i], q[:, i])
        print(f"entity {i}: {name} of its reading against the true q: {value:.4f}")
    print(f"reconstruction MSE x1e-4: {float(((redrawn - frames_to_float(frames)) ** 2).mean()) * 1e4:.2f}")
    iio.imwrite(args.out, reading_picture(model, frames[: args.rows], redrawn[: args.rows]))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
