"""Pixel world models: the geometry's round trip, the decoder drawing a body where q says, the
encoder finding a drawn body, shapes for one and several entities, learning from frames (the
project's and another renderer's), the stuck-training warning, bad frames, the CLI and the scene."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from hwm_studio.cli import main
from hwm_studio.data.format import load_trajectories
from hwm_studio.data.simulate import simulate
from hwm_studio.frames import frames_to_float, pixel_grid, to_pixels
from hwm_studio.models import PIXEL_MODELS, build_model, config_from_data
from hwm_studio.models.pixel.alignment import Alignment, affine_r2, circular_correlation
from hwm_studio.models.pixel.decoder import SpriteDecoder, legacy_template_cells, template_cells
from hwm_studio.models.pixel.encoder import soft_argmax
from hwm_studio.models.pixel.geometry import GEOMETRIES, build_geometry
from hwm_studio.protocols.hgn import dataset
from hwm_studio.state import PhaseState
from hwm_studio.systems import get_system
from hwm_studio.systems.render import STYLES
from hwm_studio.training.evaluate import evaluate_pixels
from hwm_studio.training.fit import TrainConfig, fit


def _frames_data(system: str = "spring", n: int = 6, t: int = 10, size: int = 16, control: str = "zero"):
    return simulate(get_system(system), n, t, frame_size=size, control=control, seed=0)


def _true_xy(system_name: str, q: np.ndarray) -> np.ndarray:
    """Where the system's renderer draws its entities, in normalised image coordinates."""
    system = get_system(system_name)
    return system.positions(torch.as_tensor(q)).numpy()[..., :2] / system.view_extent()


# --- geometry -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "anchors", "dim"), [
    ("linear", [-1], 1), ("linear", [None, 0, 1], 1), ("angular", [-1], 1), ("angular", [-1, 0], 1),
    ("planar", None, 2),
])  # fmt: skip
def test_geometry_round_trip_q_image_q(name: str, anchors, dim: int) -> None:
    torch.manual_seed(0)
    e = 3 if name == "planar" else len(anchors)
    geo = build_geometry(name, e, dim, anchors)
    with torch.no_grad():  # arbitrary learned constants, not the initial ones
        for p in geo.parameters():
            p.add_(0.2 * torch.randn_like(p))
    q = torch.rand(50, e, dim, dtype=torch.float64) * 2 - 1
    if geo.angular:
        q = q * 3.0
    back = geo.double().from_image(geo.to_image(q))
    diff = torch.atan2(torch.sin(back - q), torch.cos(back - q)) if geo.angular else back - q
    assert diff.abs().max() < 1e-9


def test_geometry_rejects_what_it_cannot_read() -> None:
    with pytest.raises(ValueError, match="unknown observation geometry"):
        build_geometry("polar", 1, 1)
    with pytest.raises(ValueError, match="reads 2 coordinate"):
        build_geometry("planar", 2, 1)
    with pytest.raises(ValueError, match="every entity needs an anchor"):
        build_geometry("angular", 1, 1, [None])
    with pytest.raises(ValueError, match="earlier entity"):
        build_geometry("angular", 2, 1, [-1, 1])


def test_calibration_finds_the_pivot_radius_and_which_link_is_which() -> None:
    """Read positions of a double pendulum, with the entities' readings swapped: calibrating picks
    the labelling the chain geometry fits and finds the pivot and both link lengths."""
    data = simulate(get_system("double_pendulum"), 8, 40, dt=0.05, seed=0)
    system = get_system("double_pendulum")
    xy = torch.as_tensor(_true_xy("double_pendulum", data.q.reshape(-1, 2, 1)), dtype=torch.float32)
    model = build_model(config_from_data(_frames_data("double_pendulum", size=32), "hwm-pixels"))
    model._calibrate(xy[:, [1, 0]])  # the warm-up found the outer bob first
    geo = model.geometry
    torch.testing.assert_close(geo.fixed[0], torch.zeros(2), atol=1e-4, rtol=0)
    expected = torch.tensor([system.params["l1"], system.params["l2"]]) / system.view_extent()
    torch.testing.assert_close(geo.radius().detach(), expected, atol=1e-3, rtol=0)
    assert float(geo.residual(xy).detach()) < 1e-8  # so entity 0 is the inner bob again


def test_the_step_that_ends_the_warm_up_trains_through_a_relabelling(monkeypatch) -> None:
    """The calibration at the end of the warm-up may swap which entity is which (encoder and decoder
    weights rewritten in place); that step's loss must still backpropagate (it once raised)."""
    data = _frames_data("double_pendulum", n=4, t=6, size=32)
    model = build_model(config_from_data(data, "hwm-pixels"))
    obs = torch.as_tensor(data.frames)
    model.prepare_training(obs)
    calibrate = model._calibrate

    def swapped(xy):  # the warm-up found the outer bob first
        calibrate(xy)
        with torch.no_grad():
            model.encoder.relabel([1, 0])
            model.decoder.relabel([1, 0])

    monkeypatch.setattr(model, "_calibrate", swapped)
    loss, _ = model.window_loss(obs[:, :5], None, 2, progress=1.0)  # past WARMUP_MAX: calibrates now
    assert bool(model.geometry.calibrated)
    loss.backward()
    assert model.encoder.net[-1].weight.grad is not None


# --- decoder and encoder --------------------------------------------------------------------------
@pytest.mark.parametrize("system", ["spring", "pendulum", "two_body", "double_pendulum"])
def test_the_decoder_draws_each_body_where_q_says(system: str) -> None:
    """The centre of mass of each body's drawn opacity is its geometry position, to 0.5 px."""
    size = 32
    model = build_model(config_from_data(_frames_data(system, size=size), "hwm-pixels"))
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.geometry.parameters():
            p.add_(0.1 * torch.randn_like(p))
        q = 0.6 * torch.randn(20, model.config.n_entities, model.config.dim)
        xy = model.positions(q)
        layers = model.decoder.layers(xy, model.geometry.anchor_points(xy))  # (N, L, 4, H, W)
    bodies = layers[:, -model.config.n_entities :, 3]  # the sprites' opacity, one layer per body
    grid = pixel_grid(size)  # (H, W, 2)
    centre = (bodies[..., None] * grid).sum((-3, -2)) / bodies.sum((-2, -1))[..., None]
    inside = (xy.abs() < 0.75).all(-1)  # sprites cut by the frame's edge are not symmetric
    err_px = np.abs(to_pixels(centre, size) - to_pixels(xy, size))[inside.numpy()]
    assert err_px.max() < 0.5, err_px.max()


def test_soft_argmax_finds_a_drawn_body_and_the_encoder_separates_two(monkeypatch) -> None:
    data = _frames_data("two_body", n=2, t=5, size=32)
    frames = frames_to_float(torch.as_tensor(data.frames[:, 0]))  # (2, 32, 32, 3)
    truth = _true_xy("two_body", data.q[:, 0])  # (2, 2, 2)
    # a heatmap that is the drawn body's colour match: its centre of mass is the body's centre
    colour = torch.tensor([0.835, 0.369, 0.0])
    match = -((frames - colour) ** 2).sum(-1) * 200.0
    xy, att = soft_argmax(match)
    assert np.abs(to_pixels(xy, 32) - to_pixels(truth[:, 0], 32)).max() < 0.25
    torch.testing.assert_close(att.sum((-2, -1)), torch.ones(2))
    # attention goes to what differs from the empty scene, and each entity is kept off the body an
    # earlier one took: with the saliency alone, sharpened, the two entities read the two bodies
    monkeypatch.setattr("hwm_studio.models.pixel.encoder.SALIENCY", 60.0)
    model = build_model(config_from_data(data, "hwm-pixels", saliency_pool=1))
    model.decoder.set_background(torch.tensor([0.07, 0.07, 0.09]).expand(32, 32, 3))
    with torch.no_grad():
        read = model.locate(torch.as_tensor(data.frames[:, 0]))
    for n in range(2):
        found = {int(np.argmin(np.linalg.norm(truth[n] - read[n, i].numpy(), axis=-1))) for i in range(2)}
        assert found == {0, 1}, "each entity reads a different body"
        dist = np.linalg.norm(to_pixels(read[n], 32)[:, None] - to_pixels(truth[n], 32)[None], axis=-1).min(1)
        assert dist.max() < 0.5


def test_pooled_saliency_starts_attention_on_the_inner_bob_not_on_the_rods() -> None:
    """The double pendulum's grey rods differ more from the background than its coloured bobs. With
    per-pixel saliency the first entity starts on the rods (up to ~3 px off the inner bob), and HGN
    runs ended with no entity on that bob; pooled over 3 x 3 pixels it starts on the bob (the brightest
    region: the bob where two rods meet). (Neither starts an entity on the outer bob: that one is
    found by learning.)"""
    data = dataset("double_pendulum", 16, 3, steps=1, seed=5)
    system = get_system("double_pendulum", g=3.0)
    inner = to_pixels(system.positions(torch.as_tensor(data.q[:, 0])).numpy()[:, 0, :2] / system.view_extent(), 32)
    off = {}
    for pool in (1, 3):
        model = build_model(config_from_data(data, "hwm-pixels", saliency_pool=pool))
        model.decoder.set_background(torch.tensor([0.0706, 0.0706, 0.0902]).expand(32, 32, 3))
        with torch.no_grad():
            read = to_pixels(model.locate(torch.as_tensor(data.frames[:, 0]))[:, 0], 32)  # entity 0, (N, 2)
        off[pool] = np.linalg.norm(read - inner, axis=-1)
    assert (off[3] < 1.5).all(), off
    assert (off[1] > 2.5).any(), off  # the failure the pooling is for


def test_the_default_encoder_pools_its_saliency_only_where_a_body_hangs_from_another() -> None:
    """Pooled on the double pendulum (links between bodies), per pixel on the pendulum and the bodies
    in a plane (pooling biases the reading there); checkpoints from before the field keep per pixel."""
    cfg = config_from_data(dataset("double_pendulum", 2, 3, steps=1, seed=5), "hwm-pixels")
    assert cfg.saliency_pool == 3
    for system in ("pendulum", "nbody"):
        assert config_from_data(_frames_data(system), "hwm-pixels").saliency_pool == 1, system
    old = {k: v for k, v in json.loads(cfg.to_json()).items() if k != "saliency_pool"}  # a checkpoint from before
    assert type(cfg).from_dict(old).saliency_pool == 1


def test_a_template_of_two_cells_per_pixel_draws_a_sub_pixel_rim_that_one_cell_per_pixel_blurs() -> None:
    """Fit only the appearance (template, background) to anti-aliased discs at known sub-pixel
    positions: the finer template must reach a reconstruction the coarse one cannot."""
    size, n = 32, 96
    g = torch.Generator().manual_seed(0)
    xy = (torch.rand(n, 1, 2, generator=g) - 0.5) * 1.2
    sub = pixel_grid(size * 4).reshape(size, 4, size, 4, 2).mean(dim=(1, 3))  # pixel centres, checked below
    assert torch.allclose(sub, pixel_grid(size), atol=1e-6)
    fine = pixel_grid(size * 4)  # 4 x 4 samples per pixel: coverage of a 2 px radius disc
    inside = ((fine[None] - xy[:, 0, None, None, :]).norm(dim=-1) < 2 * 2 / size).float()
    cover = inside.reshape(n, size, 4, size, 4).mean(dim=(2, 4))[..., None]
    frames = 0.1 + cover * (torch.tensor([0.9, 0.5, 0.1]) - 0.1)
    errors = {}
    for cells in (legacy_template_cells(size), template_cells(size)):
        torch.manual_seed(0)
        dec = SpriteDecoder(size, 1, [False], cells)
        opt = torch.optim.Adam(dec.parameters(), lr=3e-2)
        for _ in range(150):
            loss = ((dec(xy, xy) - frames) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        errors[cells] = loss.item()
    coarse, finer = errors.values()
    assert finer < coarse / 3, errors


def test_new_pixel_models_get_the_finer_templates_and_old_checkpoints_keep_their_size() -> None:
    data = _frames_data("pendulum")
    cfg = config_from_data(data, "hwm-pixels")
    assert cfg.sprite_cells == template_cells(cfg.frame_size)
    assert build_model(cfg).decoder.sprite.shape[-1] == template_cells(cfg.frame_size)
    old = type(cfg).from_dict({k: v for k, v in json.loads(cfg.to_json()).items() if k != "sprite_cells"})
    assert build_model(old).decoder.sprite.shape[-1] == legacy_template_cells(cfg.frame_size)


@pytest.mark.parametrize("kind", PIXEL_MODELS)
@pytest.mark.parametrize("system", ["spring", "pendulum", "two_body", "chain", "double_pendulum"])
def test_shapes_for_one_and_several_entities(kind: str, system: str) -> None:
    data = _frames_data(system)
    model = build_model(config_from_data(data, kind))
    e, d = data.n_entities, data.dim
    z = model.encode_frames(torch.as_tensor(data.frames[:, :3]))
    assert z.q.shape == z.p.shape == (6, e, d)
    out = model.predict_frames(torch.as_tensor(data.frames), None, 5)
    assert out.frames.shape == (6, 6, 16, 16, 3)  # frame k-1 and 5 predictions
    assert out.trajectory.q.shape == (6, 6, e, d)
    assert out.positions.shape == (6, 6, e, 2)
    assert out.context_positions.shape == (6, 3, e, 2)
    assert 0 <= float(out.frames.detach().min()) <= float(out.frames.detach().max()) <= 1
    # the decoder draws each entity from its own q: moving one entity changes the picture
    q = out.trajectory.q[:, 0].clone()
    base = model.decode_frames(q)
    q[:, -1] += 1.0
    assert not torch.allclose(model.decode_frames(q), base)


def test_a_pixel_hwm_gets_the_kinetic_energy_its_system_needs() -> None:
    """The double pendulum's links couple only through its configuration-dependent mass matrix: a
    pixel HWM with a constant one would learn two independent pendulums. It gets the state HWM's
    structure (and the implicit integrator that a non-separable H needs); its momentum solves the
    joint A(q) p = dq/dt, and the model's own rollout read back gives its own state."""
    for system, kinetic, integrator in (("double_pendulum", "configuration", "implicit_midpoint"),
                                        ("pendulum", "separable", "leapfrog")):  # fmt: skip
        state_cfg = config_from_data(_frames_data(system), "hwm")
        pixel_cfg = config_from_data(_frames_data(system), "hwm-pixels")
        assert (pixel_cfg.kinetic, pixel_cfg.integrator) == (state_cfg.kinetic, state_cfg.integrator)
        assert (pixel_cfg.kinetic, pixel_cfg.integrator) == (kinetic, integrator)
    model = build_model(config_from_data(_frames_data("double_pendulum", size=32), "hwm-pixels", residual=False,
                                         dissipation="none"))  # fmt: skip
    with torch.no_grad():
        start = PhaseState(torch.tensor([[[0.4], [-0.3]]]), torch.tensor([[[0.8], [0.2]]]))
        own = model.dynamics.rollout_latent(start, None, 2)
        z = model.state_from_positions(model.positions(own.q))
    torch.testing.assert_close(z.q, own.q[:, -1], atol=1e-4, rtol=0)
    torch.testing.assert_close(z.p, own.p[:, -1], atol=2e-3, rtol=0)


def test_momentum_is_the_models_own_motion_through_the_readings() -> None:
    """In free flight p = M dq/dt exactly, through the dynamics' own masses; with forces, readings of
    the model's own rollout give back the model's own state at the last context frame."""
    model = build_model(config_from_data(_frames_data("spring", size=32), "hwm-pixels", dissipation="none",
                                         residual=False))  # fmt: skip
    kinetic, potential = model.dynamics.field.hamiltonian.terms[:2]
    with torch.no_grad():
        kinetic.raw.fill_(math.log(math.expm1(0.5)))  # A = M^-1 = 0.25
        saved = potential.net.out.weight.clone()
        potential.net.out.weight.zero_()  # no force
    q = torch.tensor([0.1, 0.3, 0.5])[None, :, None, None]  # (B, k, E, D): constant velocity
    z = model.state_from_positions(model.positions(q))
    torch.testing.assert_close(z.q, torch.tensor([[[0.5]]]), atol=1e-5, rtol=0)
    a = float(kinetic.inverse_mass().detach())  # 0.25, up to the 1e-4 floor on the Cholesky diagonal
    torch.testing.assert_close(z.p.detach(), torch.tensor([[[0.2 / model.dt / a]]]), atol=1e-4, rtol=1e-5)
    with torch.no_grad():
        potential.net.out.weight.copy_(saved)
        start = PhaseState(torch.tensor([[[0.4]]]), torch.tensor([[[1.5]]]))
        own = model.dynamics.rollout_latent(start, None, 2)
        z = model.state_from_positions(model.positions(own.q))
    torch.testing.assert_close(z.q, own.q[:, -1], atol=1e-4, rtol=0)
    torch.testing.assert_close(z.p, own.p[:, -1], atol=1e-3, rtol=0)


def test_alignment_measures() -> None:
    rng = np.random.default_rng(0)
    a = rng.uniform(-3, 3, 500)
    assert circular_correlation(a, -a + 1.0) == pytest.approx(-1.0)
    assert abs(circular_correlation(a, rng.uniform(-3, 3, 500))) < 0.15
    x = rng.normal(size=(400, 4))
    assert affine_r2(x, x @ rng.normal(size=(4, 4)) + 2.0) == pytest.approx(1.0)
    q = rng.uniform(-2, 2, (100, 1, 1))
    al = Alignment.fit(-q + 0.5, 3 * q, q, q, angular=True)
    qt, pt = al.apply(-q + 0.5, 3 * q)
    np.testing.assert_allclose(np.arctan2(np.sin(qt - q), np.cos(qt - q)), 0, atol=1e-9)
    np.testing.assert_allclose(pt, q, atol=1e-9)


# --- learning ---------------------------------------------------------------------------------------
def _learn(train, test, steps: int) -> tuple[float, float, dict]:
    torch.manual_seed(0)
    model = build_model(config_from_data(train, "hwm-pixels", dissipation="none", input_map="none", residual=False))
    cfg = TrainConfig(steps=steps, batch_size=16, horizon=6, lr=1e-3, val_every=0, device="cpu")
    result = fit(model, train, cfg)
    assert result.status == "completed"
    score = evaluate_pixels(model, test, 12)[0]
    mean_frame = frames_to_float(torch.as_tensor(train.frames)).mean((0, 1)).numpy()
    truth = test.frames[:, 3:15].astype(np.float32) / 255
    return score["pixel_mse"], float(((truth - mean_frame) ** 2).mean()), score


def test_learns_the_pendulum_from_frames() -> None:
    """A small CPU run on the HGN pendulum's frames: held-out prediction error far below the mean
    frame's, and the latent angle is the true angle up to sign and offset."""
    train = dataset("pendulum", 96, 3, steps=6, seed=0)
    test = dataset("pendulum", 16, 3, steps=12, seed=1)
    mse, mean_frame, score = _learn(train, test, 450)
    assert mse < 0.5 * mean_frame, (mse, mean_frame)
    assert score["latent"]["metric"] == "circular_correlation"
    assert score["latent"]["value"] > 0.98


def test_learns_a_damped_pendulum_drawn_by_another_renderer() -> None:
    """Soft blurred bodies of other colours on a pale background, no rod, friction: still learned."""
    style = STYLES["soft"]
    system = get_system("pendulum", m=0.5, g=3.0)
    train = simulate(system, 96, 10, dt=0.125, damping=0.3, frame_size=32, seed=0, style=style)
    test = simulate(system, 16, 15, dt=0.125, damping=0.3, frame_size=32, seed=1, style=style)
    torch.manual_seed(0)
    model = build_model(config_from_data(train, "hwm-pixels"))  # 300 steps: ~0.25 of the mean frame's error
    fit(model, train, TrainConfig(steps=300, batch_size=16, horizon=6, lr=1e-3, val_every=0, device="cpu"))
    score = evaluate_pixels(model, test, 12)[0]
    mean_frame = frames_to_float(torch.as_tensor(train.frames)).mean((0, 1)).numpy()
    truth = test.frames[:, 3:15].astype(np.float32) / 255
    assert score["pixel_mse"] < 0.5 * float(((truth - mean_frame) ** 2).mean())
    assert score["latent"]["value"] > 0.95


def test_a_model_that_draws_nothing_says_so() -> None:
    data = _frames_data("pendulum", n=8, t=8, size=32)
    model = build_model(config_from_data(data, "hwm-pixels"))
    model.prepare_training(torch.as_tensor(data.frames))
    with torch.no_grad():
        model.decoder.sprite[:, 3] = -20.0  # every body transparent: only the background is drawn
    obs = torch.as_tensor(data.frames)
    assert "background" in model.diagnose(obs, None)
    events = []
    fit(model, data, TrainConfig(steps=2, batch_size=4, horizon=2, val_every=1, lr=1e-9, device="cpu"), val=data,
        callbacks=[events.append])  # fmt: skip
    assert any("background" in e.get("warning", "") for e in events if e["event"] == "validation")


# --- input checks, CLI, scene -----------------------------------------------------------------------
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


def test_pixel_models_need_frames_and_a_geometry() -> None:
    data = simulate(get_system("spring"), 2, 5, seed=0)
    with pytest.raises(ValueError, match="no 'frames'"):
        config_from_data(data, "hwm-pixels")
    framed = _frames_data()
    unknown = type(framed)(q=framed.q, p=framed.p, dt=framed.dt, frames=framed.frames,
                           meta={"system": "my_robot", "params": {}, "entities": ["a"]})  # fmt: skip
    with pytest.raises(ValueError, match="--geometry"):
        config_from_data(unknown, "hwm-pixels")
    assert config_from_data(unknown, "hwm-pixels", geometry="linear").geometry == "linear"
    tagged = type(framed)(q=framed.q, p=framed.p, dt=framed.dt, frames=framed.frames,
                          meta={**unknown.meta, "geometry": {"kind": "angular", "anchors": [-1]}})  # fmt: skip
    cfg = config_from_data(tagged, "mlp-pixels")
    assert (cfg.geometry, cfg.anchors, cfg.angular) == ("angular", [-1], True)
    assert set(GEOMETRIES) == {"linear", "angular", "planar"}


def test_cli_simulates_trains_evaluates_and_renders_a_pixel_model(tmp_path, capsys) -> None:
    data_path, test_path, run = tmp_path / "d.npz", tmp_path / "t.npz", tmp_path / "run"
    for path, seed in ((data_path, 0), (test_path, 1)):
        assert main(["simulate", "--system", "pendulum", "--frames", "16", "--trajectories", "6", "--steps", "13",
                     "--dt", "0.1", "--seed", str(seed), "--out", str(path)]) == 0  # fmt: skip
    assert main(["train", "--data", str(data_path), "--model", "hwm-pixels", "--steps", "4",
                 "--batch-size", "4", "--horizon", "3", "--out", str(run)]) == 0  # fmt: skip
    capsys.readouterr()
    pred = tmp_path / "p.npz"
    assert main(["eval", str(run), "--data", str(test_path), "--json", "--predictions", str(pred)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["model"] == "hwm-pixels"
    assert metrics["horizon"] == 10
    assert set(metrics["pixel_mse_at"]) == {"1", "10", "H"}
    assert metrics["pixel_mse"] > 0
    assert metrics["latent"]["metric"] == "circular_correlation"
    # the predictions file is a trajectory file on the test file's time axis
    p = load_trajectories(pred)
    test = load_trajectories(test_path)
    assert p.q.shape == test.q.shape
    assert p.frames.shape == test.frames.shape
    assert p.meta["prediction"]["first_predicted"] == 2
    for name in ("r.gif", "r.mp4"):
        assert main(["render", str(run), "--data", str(test_path), "--scale", "2", "--out",
                     str(tmp_path / name)]) == 0  # fmt: skip
        video = iio.imread(tmp_path / name, index=None)
        assert video.shape[0] == 11  # frame k-1 and 10 predictions
        assert video.shape[1:3] == (32, 3 * 32 + 4)  # truth | decoded | error at 2x, two gaps
    assert main(["render", str(run), "--data", str(test_path), "--out", str(tmp_path / "r.avi")]) == 1
    assert not (tmp_path / "r.avi").exists()
    # --geometry is for pixel models, and a name the project knows
    assert main(["train", "--data", str(data_path), "--model", "hwm", "--geometry", "linear", "--out",
                 str(tmp_path / "x")]) == 1  # fmt: skip
    assert not (tmp_path / "x").exists()


def test_a_scene_feeds_a_pixel_model_the_true_frames_and_lays_its_latent_over_the_truth() -> None:
    from hwm_studio.scene import Scene, SceneSpec

    model = build_model(config_from_data(_frames_data(size=16), "hwm-pixels")).eval()
    scene = Scene(model)
    r = scene.run(SceneSpec("spring", steps=12))
    k = model.config.context_frames
    assert r.reads_frames
    assert r.context == k - 1
    assert r.vpt is None
    # what it read are the system's own drawings of the true states, at the model's frame size
    drawn = get_system("spring").render(torch.as_tensor(r.truth_q), size=16).numpy()
    np.testing.assert_array_equal(r.truth_frames, drawn)
    # and what it shows is exactly its prediction from those frames
    with torch.no_grad():
        out = model.predict_frames(torch.as_tensor(drawn[None, :k]), None, 12 - (k - 1))
    np.testing.assert_array_equal(r.model_frames[k - 1 :], np.round(out.frames[0].numpy() * 255).astype(np.uint8))
    np.testing.assert_allclose(r.latent_q[k - 1 :], out.trajectory.q[0].double().numpy(), rtol=1e-4, atol=1e-5)
    # drawn over the truth through the alignment fitted on its readings
    mq, mp = r.alignment.apply(r.latent_q, r.latent_p)
    np.testing.assert_allclose(r.model_q, mq)
    np.testing.assert_allclose(r.model_p, mp)
    assert np.isnan(r.model_q[: k - 1]).all()
    assert np.isnan(r.error[: k - 1]).all()
    # its bodies are where its decoder draws them, in world units
    extent = get_system("spring").view_extent()
    np.testing.assert_allclose(r.model_positions[k - 1 :, :, :2], out.positions[0].double().numpy() * extent,
                               rtol=1e-5, atol=1e-6)  # fmt: skip
    expected = (((r.model_frames[k:].astype(float) - r.truth_frames[k:]) / 255) ** 2).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(r.error[k:], expected)
    truth_frame, model_frame = scene.frames(r, 5)
    assert truth_frame.shape == model_frame.shape == (16, 16, 3)
    plane = scene.phase_plane(SceneSpec("spring", steps=12), 0, 0, (r.truth_q[0], r.truth_p[0]), (-1, 1, -1, 1))
    assert plane["H"].shape == (48, 48)
    assert np.isfinite(plane["H"]).all()
    with pytest.raises(ValueError, match="reads 3 frames"):
        scene.run(SceneSpec("spring", steps=2))


def test_with_a_sidecar_a_pixel_scene_shows_the_same_and_draws_the_truth_once() -> None:
    """The studio's path (truth and drawing on the second core, the model's k frames drawn here
    meanwhile) gives exactly what the scene gives alone, and scenes sharing a truth draw it once."""
    from hwm_studio.scene import Scene, SceneSpec

    model = build_model(config_from_data(_frames_data(size=16), "hwm-pixels")).eval()
    other = build_model(config_from_data(_frames_data(size=16), "mlp-pixels")).eval()
    alone = Scene(model).run(SceneSpec("pendulum", steps=40, seed=3))
    scene = Scene(model)
    baseline = Scene(other, truth_from=scene)
    spec = SceneSpec("pendulum", steps=40, seed=3)
    r = scene.run(spec, sidecar=lambda: baseline.run(replace(spec, dt=scene.dt(spec))))
    b = r.extras["sidecar"]
    np.testing.assert_array_equal(r.truth_frames, alone.truth_frames)
    for name in ("latent_q", "latent_p", "error", "model_q"):  # a repeated rollout runs the frozen graph: the same
        np.testing.assert_array_equal(getattr(r, name), getattr(alone, name), err_msg=name)
    np.testing.assert_array_equal(b.truth_frames, r.truth_frames)
    assert baseline.rendered(spec, 16) is scene.rendered(spec, 16)  # one drawing, shared


def test_the_reading_script_shows_and_scores_what_a_pixel_asset_reads(tmp_path) -> None:
    """examples/pixel_reading.py, run as a user would on the committed pendulum asset: it reads the
    angle (circular correlation ~1), redraws the frames, and writes the picture (4 columns)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out, script = tmp_path / "reading.png", str(root / "examples" / "pixel_reading.py")
    done = subprocess.run(
        [sys.executable, script, str(root / "assets/models/hgn_pendulum_hwm_pixels"),
         "--task", "pendulum", "--trajectories", "40", "--rows", "3", "--out", str(out)],
        capture_output=True, text=True, timeout=300, cwd=root,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    value = float(done.stdout.split("against the true q:")[1].split()[0])
    assert value > 0.999, done.stdout
    assert float(done.stdout.split("reconstruction MSE x1e-4:")[1].split()[0]) < 1.0
    picture = iio.imread(out)
    assert picture.shape == (3 * 32 * 6, 4 * 32 * 6, 3)
    bad = subprocess.run([sys.executable, script, str(root / "assets/models/pendulum_hwm"), "--task", "pendulum"],
                         capture_output=True, text=True, timeout=300, cwd=root)  # fmt: skip
    assert bad.returncode != 0
    assert "is a hwm model, not a pixel model" in bad.stderr  # a state model: one clear line
    missing = subprocess.run([sys.executable, script, str(tmp_path / "nothing"), "--task", "pendulum"],
                             capture_output=True, text=True, timeout=300, cwd=root)  # fmt: skip
    assert missing.returncode == 2
    assert "no such checkpoint" in missing.stderr
    assert "Traceback" not in missing.stderr
    other = subprocess.run([sys.executable, script, str(root / "assets/models/hgn_pendulum_hwm_pixels"), "--task",
                            "two_body"], capture_output=True, text=True, timeout=300, cwd=root)  # fmt: skip
    assert other.returncode == 2
    assert "reads 1 bodies in 32px frames; the two_body task draws 2" in other.stderr
