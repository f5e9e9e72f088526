"""Playing a model without a browser (hwm_studio/play.py): the loop's pacing, held actions, the
energy ledger under any key sequence, resync, and a recorded episode that trains."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hwm_studio.data.format import load_trajectories, save_trajectories
from hwm_studio.play import Pacer, Player
from hwm_studio.pretrained import run_dir
from hwm_studio.systems import get_system
from hwm_studio.training.checkpoint import load_model


def _player(system: str = "pendulum", kind: str = "hwm", seed: int = 3) -> Player:
    model = load_model(run_dir(system, kind))
    return Player(model, get_system(system, **model.config.system_params), seed=seed)


def test_the_pacer_turns_wall_time_into_steps_and_never_queues() -> None:
    pace = Pacer(dt=0.05)
    assert pace.due(10.0) == 0  # the first tick only starts the clock
    assert pace.due(10.1) == 2
    assert pace.due(10.125) == 0  # half a step carried
    assert pace.due(10.15) == 1
    assert pace.due(20.0) == 4  # a stall of 10 s catches up at most max_steps ...
    assert pace.due(20.05) == 1  # ... and drops the rest
    pace.rtf = 2.0
    assert pace.due(20.1) == 2
    pace.rtf = 1.0
    assert pace.due(20.125) == 0  # half a step carried
    assert pace.borrow() == 1  # a key changed: one step now, ahead of its time ...
    assert pace.borrow() == 0  # ... one at a time
    assert pace.due(20.15) == 0  # ... repaid: the step due here was taken early
    assert pace.due(20.2) == 1
    assert pace.borrow() == 1  # repaid, so another may be borrowed
    pace.pause()
    assert pace.borrow() == 0  # a paused clock lends nothing
    assert pace.due(99.0) == 0
    with pytest.raises(ValueError, match="real-time factor"):
        pace.rtf = 0.0


def test_holding_a_key_pumps_energy_in_and_the_ledger_accounts_for_it() -> None:
    player = _player()
    h0, true0 = player.energy0["total"], player.energy()["true"]
    rng = np.random.default_rng(0)
    for _ in range(30):  # random key presses, a few steps each, as ticks of a live loop
        player.hold([rng.choice([-1.0, 0.0, 1.0])])
        player.advance(int(rng.integers(1, 4)))
    player.hold([1.0])
    player.advance(20)
    led, e = player.ledger, player.energy()
    assert led["control_work"] > 1.0  # the torque did work on the model ...
    assert e["true"] > true0 + 1.0  # ... and on the truth
    change = e["total"] - h0
    balance = change + led["dissipated"] - led["control_work"] - led["residual_work"]
    assert balance == pytest.approx(led["balance_error"], abs=1e-4)  # the ledger's sum is the ledger
    # the discrete-gradient step's ledger is exact: the solver's tolerance and float64 rounding
    assert abs(led["balance_error"]) < 1e-9 * abs(led["control_work"])


def test_the_models_own_leapfrog_leaves_an_integrator_error_the_discrete_gradient_does_not() -> None:
    """The same keys on the same model, stepped by its own leapfrog and by the default scheme."""
    balances = {}
    for own in (True, False):
        model = load_model(run_dir("pendulum", "hwm"))
        player = Player(model, get_system("pendulum"), seed=3, integrator=model.integrator if own else None)
        player.hold([1.0])
        player.advance(200)  # spun far above the training energies
        balances[player.integrator.name] = abs(player.ledger["balance_error"]) / player.ledger["control_work"]
    assert balances["leapfrog"] > 1e-4  # O(dt^2), grown with the energy pumped in
    assert balances["discrete_gradient"] < 1e-9


def test_released_keys_on_a_conservative_model_hold_its_energy() -> None:
    player = _player()
    player.model.dissipation_scale, player.model.residual_scale = 0.0, 0.0
    player.hold([1.0])
    player.advance(10)  # some energy in, then hands off
    player.hold([0.0])
    h = []
    for _ in range(40):
        player.advance(5)
        h.append(player.energy()["total"])
    scale = np.mean(np.abs(h))
    assert np.ptp(h) < 1e-9 * scale  # the discrete-gradient step conserves the model's H itself
    assert player.ledger["dissipated"] == pytest.approx(0.0, abs=1e-9)


def test_the_model_drifts_alone_and_resync_brings_it_back() -> None:
    player = _player("double_pendulum", seed=1)  # chaotic: a model drifts visibly
    assert player.divergence() < 1e-5
    player.advance(200)
    drifted = player.divergence()
    assert drifted > 1e-3
    player.resync()
    assert player.divergence() < 1e-5


def test_a_played_episode_reads_back_and_trains(tmp_path) -> None:
    from hwm_studio.models import build_model, config_from_data
    from hwm_studio.training.fit import TrainConfig, fit

    player = _player()
    player.hold([0.5])
    player.advance(12)
    player.hold([-1.0])
    player.advance(12)
    episode = player.episode()
    assert episode.q.shape == (1, 25, 1, 1)
    assert np.allclose(episode.u[0, :12, 0], 0.5 * player.system.action_bound)
    assert np.allclose(episode.u[0, 12:24, 0], -player.system.action_bound)
    back = load_trajectories(save_trajectories(episode, tmp_path / "played.npz"))
    assert back.meta["played"]["model"] == "hwm"
    assert np.array_equal(back.q, episode.q)
    model = build_model(config_from_data(back, "hwm", hidden=16))
    result = fit(model, back, TrainConfig(steps=5, horizon=4, val_every=0, device="cpu"))
    assert result.status == "completed"
    assert result.steps_done == 5


def test_bad_play_requests_are_refused_clearly() -> None:
    player = _player()
    with pytest.raises(ValueError, match="1 action dim"):
        player.hold([1.0, 0.0])
    with pytest.raises(ValueError, match="finite"):
        player.hold([float("nan")])
    with pytest.raises(ValueError, match="nothing has been played"):
        player.episode()
    with pytest.raises(ValueError, match="coordinates"):
        Player(player.model, get_system("chain"))
    player.hold([5.0])  # fractions beyond one are clipped to the bound
    assert np.allclose(player.action, player.system.action_bound)
    assert torch.isfinite(player.truth.q).all()


def test_a_pixel_model_plays_from_the_frames_it_reads_and_records_them(tmp_path) -> None:
    from hwm_studio.pretrained import pixel_assets

    model = load_model(pixel_assets()["spring"]["hwm-pixels: hgn_mass_spring"])
    system = get_system("spring", **model.config.system_params)
    player = Player(model, system, seed=4)
    k, size = model.config.context_frames, model.config.frame_size
    assert player.divergence_measure == "pixel MSE"
    fresh = player.divergence()
    assert fresh < 1e-3  # just read: its decoded frame is the true one up to the decoder's error
    player.advance(60)
    mq, _ = player.model_state()
    assert mq.shape == (1, 1)
    assert np.isfinite(mq).all()
    drawn_model, drawn_truth = player.frames(128)
    assert drawn_model.shape == drawn_truth.shape == (128, 128, 3)
    assert drawn_model.dtype == np.uint8
    assert abs(player.ledger["balance_error"]) < 1e-2 * max(1.0, abs(player.energy0["total"]))
    player.resync()  # reads the last k true frames again
    assert player.divergence() < 1e-3
    episode = player.episode()  # the context the model read at the start is part of what was played
    assert episode.q.shape[1] == 60 + k
    assert episode.frames.shape == (1, 60 + k, size, size, 3)
    assert np.array_equal(episode.frames[0, -1], system.render(player.truth.q[0], size=size).numpy())
    back = load_trajectories(save_trajectories(episode, tmp_path / "played_pixels.npz"))
    assert np.array_equal(back.frames, episode.frames)
    other = get_system("spring", k=model.config.system_params["k"] * 2)
    with pytest.raises(ValueError, match="play it on that system"):
        Player(model, other)


def _read_video(path) -> np.ndarray:
    import imageio.v3 as iio

    return iio.imread(path, index=None)


def test_a_played_episode_exports_as_mp4_model_beside_truth(tmp_path) -> None:
    from hwm_studio.viz.video import write_video

    player = _player()
    with pytest.raises(ValueError, match="nothing has been played"):
        next(player.video())
    player.hold([1.0])
    player.advance(30)
    player.hold([0.0])
    player.advance(19)
    chunks = list(player.video(size=64, chunk=16))  # drawn a chunk at a time
    assert [len(c) for c in chunks] == [16, 16, 16, 2]  # the start and 49 steps
    path, n = write_video(tmp_path / "played.mp4", iter(chunks), fps=1 / player.dt)
    assert n == 50
    video = _read_video(path)
    assert video.shape == (50, 64, 130, 3)
    left, right = video[..., :64, :].astype(float), video[..., 66:, :].astype(float)
    # the model starts on the true state and then drifts: its half of the frame parts from the truth's
    assert np.abs(left[0] - right[0]).mean() < 4.0  # equal up to H.264's loss
    assert np.abs(left[-1] - right[-1]).mean() > np.abs(left[0] - right[0]).mean()
    assert len(next(player.video(size=32, last=10))) == 10


def test_a_pixel_episode_exports_its_decoded_frames_and_the_true_ones(tmp_path) -> None:
    from hwm_studio.pretrained import pixel_assets
    from hwm_studio.viz.video import write_video

    model = load_model(pixel_assets()["spring"]["hwm-pixels: hgn_mass_spring"])
    player = Player(model, get_system("spring", **model.config.system_params), seed=4)
    player.advance(12)
    player.resync()  # the model's latent at this time is replaced, not added
    player.advance(3)
    frames = np.concatenate(list(player.video(size=64)))
    assert frames.shape == (16, 64, 130, 3)
    model_now, truth_now = player.frames(64)
    assert np.array_equal(frames[-1, :, :64], model_now)
    assert np.array_equal(frames[-1, :, 66:], truth_now)
    _, n = write_video(tmp_path / "played.mp4", frames, fps=10)
    assert n == 16
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "bad.mp4", frames.astype(np.float32))
    assert not (tmp_path / "bad.mp4").exists()  # a failed export leaves nothing behind


def test_the_play_loop_steps_only_when_a_frame_can_show_it(monkeypatch) -> None:
    """A browser behind on its frames (IN_FLIGHT undrawn) gets no steps either: an overloaded
    server spends itself on the frames the player sees, the pacer keeping the time for later (up to
    its catch-up cap), instead of stepping states nobody is shown while acks queue behind them."""
    import hwm_studio.ui.playing as playing

    model = load_model(run_dir("pendulum", "hwm"))
    panel = playing.PlayPanel(lambda: (model, get_system("pendulum", **model.config.system_params)))
    clock = [100.0]
    monkeypatch.setattr(playing.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(playing, "TICK_BUDGET_S", 60.0)  # every due step fits a tick, however slow the machine
    assert panel.start()
    panel.paused = False
    try:
        panel.pacer.due(clock[0])  # the pacer's first reading
        while panel.surface.sent < playing.IN_FLIGHT:  # a step and a frame a tick, none acknowledged
            clock[0] += panel.player.dt
            panel.tick()
        stepped, sent = panel.player.steps, panel.surface.sent
        assert stepped >= 1
        clock[0] += 2 * panel.player.dt  # two steps due, but the browser drew nothing yet
        panel.tick()
        assert (panel.player.steps, panel.surface.sent) == (stepped, sent)
        panel.surface._handle_msg({"drawn": sent})  # the browser caught up
        panel.tick()
        assert panel.player.steps == stepped + 2  # the time kept meanwhile, then one frame
        assert panel.surface.sent == sent + 1
    finally:
        panel.close()


def test_the_traced_live_step_is_the_eager_step_and_its_exact_ledger() -> None:
    """Play's traced discrete-gradient step (physics/fused.py) gives the eager step's states and the
    eager rollout's ledger under changing actions; a step the traced sweeps leave short of the
    tolerance is re-solved eagerly, so the answer is the same either way."""
    import copy

    from hwm_studio.physics.fused import FusedExactStep
    from hwm_studio.physics.integrators import DiscreteGradient
    from hwm_studio.physics.rollout import rollout

    model = load_model(run_dir("pendulum", "hwm"))
    field = copy.deepcopy(model.hamiltonian_field).double()
    true = get_system("pendulum").sample_initial(1, torch.Generator().manual_seed(5))
    z0 = model.latent(true.q.float(), true.p.float()).to(torch.float64)
    u = torch.linspace(-2.0, 2.0, 9, dtype=torch.float64).reshape(1, 9, 1)
    eager = rollout(field, DiscreteGradient(iterations=1, tolerance=1e-13), z0, u, 0.05, 9, record_energy=True)
    for sweeps, resolved in ((6, False), (1, True)):
        live = FusedExactStep(field, DiscreteGradient(iterations=1, tolerance=1e-13), sweeps=sweeps)
        out = live(z0, u, 0.05, 9)
        assert (live.eager_steps == 9) is resolved  # one sweep never meets 1e-13
        torch.testing.assert_close(out.q, eager.q[:, 1:], rtol=0, atol=1e-11)
        torch.testing.assert_close(out.p, eager.p[:, 1:], rtol=0, atol=1e-11)
        for k, v in out.ledger.items():
            torch.testing.assert_close(v, eager.ledger[k][:, -1], rtol=1e-9, atol=1e-11)
        assert abs(float(out.ledger["balance_error"][0])) < 1e-11
        assert float(out.ledger["control_work"][0]) != 0.0


def test_a_live_loop_steps_a_continuous_model_finer_and_only_new_states_become_frames(monkeypatch) -> None:
    """The pendulum HWM (dt 0.05) plays at dt / 2 and the spring pixel model (dt 0.125) at dt / 4, so
    30+ new states a second can be shown; the pixel model still reads its frames dt apart (it
    resyncs as well as at its own dt); a model without an energy keeps its dt (and cannot be told
    otherwise); a tick with no new state sends no frame (frames per second count states shown)."""
    import hwm_studio.ui.playing as playing
    from hwm_studio.play import live_dt
    from hwm_studio.pretrained import pixel_assets

    hwm, mlp = load_model(run_dir("pendulum", "hwm")), load_model(run_dir("pendulum", "mlp"))
    pixel = load_model(pixel_assets()["spring"]["hwm-pixels: hgn_mass_spring"])
    assert live_dt(hwm) == pytest.approx(0.025)
    assert live_dt(mlp) == mlp.dt
    assert live_dt(pixel) == pytest.approx(pixel.dt / 4)
    with pytest.raises(ValueError, match="steps only at its dt"):
        Player(mlp, get_system("pendulum", **mlp.config.system_params), dt=0.025)
    spring = get_system("spring", **pixel.config.system_params)
    with pytest.raises(ValueError, match="an integer"):
        Player(pixel, spring, dt=0.05)
    for dt in (pixel.dt, live_dt(pixel)):
        read = Player(pixel, spring, dt=dt, seed=4)
        assert read.stride * read.dt == pytest.approx(pixel.dt)
        assert read.divergence() < 2e-4, dt  # the frames it read, their dt apart, give back the truth
        read.advance(read.stride * 4)
        assert read.divergence() < 2e-4, dt  # read dt / 4 apart as if dt: 3.6e-3 here
    finer = Player(hwm, get_system("pendulum", **hwm.config.system_params), dt=0.025)
    finer.hold([1.0])
    finer.advance(40)  # a second of held torque at dt / 2: the ledger still balances to the solver
    assert finer.episode().dt == pytest.approx(0.025)
    assert abs(finer.ledger["balance_error"]) < 1e-10 * max(1.0, abs(finer.ledger["control_work"]))

    panel = playing.PlayPanel(lambda: (hwm, get_system("pendulum", **hwm.config.system_params)))
    clock = [100.0]
    monkeypatch.setattr(playing.time, "monotonic", lambda: clock[0])
    assert panel.start()
    panel.paused = False
    try:
        assert panel.player.dt == pytest.approx(0.025)
        sent = panel.surface.sent
        panel.surface._handle_msg({"drawn": sent})
        panel.pacer.due(clock[0])
        clock[0] += 0.01  # less than a step: nothing new to show
        panel.tick()
        assert panel.surface.sent == sent
        clock[0] += 0.02  # a step is due: its state is sent
        panel.tick()
        assert (panel.player.steps, panel.surface.sent) == (1, sent + 1)
    finally:
        panel.close()
