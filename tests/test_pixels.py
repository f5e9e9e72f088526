"""Pixel world models: shapes for one and several entities, learning on a tiny set, bad frames,
evaluation, and the exported video."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from hwm_studio.cli import main
from hwm_studio.data.format import save_trajectories
from hwm_studio.data.simulate import simulate
from hwm_studio.models import PIXEL_MODELS, build_model, config_from_data
from hwm_studio.protocols.hgn import dataset
from hwm_studio.systems import get_system
from hwm_studio.training.evaluate import evaluate_pixels
from hwm_studio.training.fit import TrainConfig, fit


def _frames_data(system: str = "spring", n: int = 6, t: int = 10, size: int = 16, control: str = "zero"):
    return simulate(get_system(system), n, t, frame_size=size, control=control, seed=0)


@pytest.mark.parametrize("kind", PIXEL_MODELS)
@pytest.mark.parametrize("system", ["spring", "two_body", "chain"])
def test_encoder_decoder_shapes_one_and_several_entities(kind: str, system: str) -> None:
    data = _frames_data(system)
    model = build_model(config_from_data(data, kind))
    e, d = data.n_entities, data.dim
    frames = torch.as_tensor(data.frames[:, :3])
    z = model.encode_frames(frames)
    assert z.q.shape == (6, e, d)
    assert z.p.shape == (6, e, d)
    pred, traj = model.predict_frames(torch.as_tensor(data.frames), None, 5)
    assert pred.shape == (6, 6, 16, 16, 3)  # frame k-1 and 5 predictions
    assert traj.q.shape == (6, 6, e, d)
    assert float(pred.min()) >= 0
    assert float(pred.max()) <= 1
    # the decoder draws each entity from its own q: moving one entity changes the picture
    q = traj.q[:, 0].clone()
    base = model.decode_frames(q)
    q[:, -1] += 1.0
    assert not torch.allclose(model.decode_frames(q), base)


def test_pixel_fit_lowers_the_held_out_pixel_error() -> None:
    torch.manual_seed(0)
    train = dataset("mass_spring", 48, 3, steps=6, seed=0)
    test = dataset("mass_spring", 8, 3, steps=6, seed=1)
    model = build_model(config_from_data(train, "hwm-pixels"))
    before = evaluate_pixels(model, test)[0]["pixel_mse"]
    result = fit(model, train, TrainConfig(steps=80, batch_size=8, horizon=4, lr=2e-3, val_every=0, device="cpu"))
    after = evaluate_pixels(model, test)[0]["pixel_mse"]
    assert result.status == "completed"
    assert after < 0.5 * before, (before, after)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros((2, 5, 16, 16, 3), dtype=np.int32), "uint8"),
        (np.zeros((2, 5, 16, 16), dtype=np.uint8), "3 RGB channels"),
        (np.zeros((2, 5, 16, 16, 4), dtype=np.uint8), "3 RGB channels"),
        (np.zeros((2, 5, 20, 20, 3), dtype=np.uint8), "16x16"),
        (np.full((2, 5, 16, 16, 3), np.nan, dtype=np.float32), "NaN"),
    ],
)
def test_bad_frames_are_rejected_clearly(bad: np.ndarray, message: str) -> None:
    model = build_model(config_from_data(_frames_data(), "hwm-pixels"))
    with pytest.raises(ValueError, match=message):
        model.encode_frames(torch.as_tensor(bad)[:, :3])


def test_pixel_models_need_frames() -> None:
    data = simulate(get_system("spring"), 2, 5, seed=0)
    with pytest.raises(ValueError, match="no 'frames'"):
        config_from_data(data, "hwm-pixels")


def test_cli_trains_evaluates_and_renders_a_pixel_model(tmp_path, capsys) -> None:
    data = _frames_data(n=12, t=12)
    save_trajectories(data, tmp_path / "d.npz")
    run = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "d.npz"), "--model", "hwm-pixels", "--steps", "4",
                 "--batch-size", "4", "--horizon", "3", "--out", str(run)]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["eval", str(run), "--data", str(tmp_path / "d.npz"), "--json"]) == 0
    import json

    metrics = json.loads(capsys.readouterr().out)
    assert metrics["model"] == "hwm-pixels"
    assert metrics["horizon"] == 9
    assert set(metrics["pixel_mse_at"]) == {"1", "H"}
    assert metrics["pixel_mse"] > 0
    for name in ("r.gif", "r.mp4"):
        assert main(["render", str(run), "--data", str(tmp_path / "d.npz"), "--scale", "2", "--out",
                     str(tmp_path / name)]) == 0  # fmt: skip
        video = iio.imread(tmp_path / name, index=None)
        assert video.shape[0] == 10  # frame k-1 and 9 predictions
        assert video.shape[1:3] == (32, 3 * 32 + 4)  # truth | decoded | error at 2x, two gaps
    assert main(["render", str(run), "--data", str(tmp_path / "d.npz"), "--out", str(tmp_path / "r.avi")]) == 1
    assert not (tmp_path / "r.avi").exists()


def test_a_scene_feeds_a_pixel_model_the_true_frames_and_scores_its_decoded_ones() -> None:
    from hwm_studio.scene import Scene, SceneSpec

    model = build_model(config_from_data(_frames_data(size=16), "hwm-pixels")).eval()
    scene = Scene(model)
    r = scene.run(SceneSpec("spring", steps=12))
    k = model.config.context_frames
    assert r.latent
    assert r.context == k - 1
    assert r.vpt is None
    # what it read are the system's own drawings of the true states, at the model's frame size
    drawn = get_system("spring").render(torch.as_tensor(r.truth_q), size=16).numpy()
    np.testing.assert_array_equal(r.truth_frames, drawn)
    # and what it shows is exactly its prediction from those frames
    with torch.no_grad():
        pred, traj = model.predict_frames(torch.as_tensor(drawn[None, :k]), None, 12 - (k - 1))
    np.testing.assert_array_equal(r.model_frames[k - 1 :], np.round(pred[0].numpy() * 255).astype(np.uint8))
    np.testing.assert_allclose(r.model_q[k - 1 :], traj.q[0].double().numpy(), rtol=1e-4, atol=1e-5)
    assert np.isnan(r.model_q[: k - 1]).all()
    assert np.isnan(r.error[: k - 1]).all()
    expected = (((r.model_frames[k:].astype(float) - r.truth_frames[k:]) / 255) ** 2).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(r.error[k:], expected)
    truth_frame, model_frame = scene.frames(r, 5)
    assert truth_frame.shape == model_frame.shape == (16, 16, 3)
    with pytest.raises(ValueError, match="reads 3 frames"):
        scene.run(SceneSpec("spring", steps=2))
