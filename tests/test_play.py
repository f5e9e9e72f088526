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
    pace.pause()
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
    assert abs(led["balance_error"]) < 0.02 * abs(led["control_work"])  # integrator-level error only


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
    assert np.ptp(h) < 3e-2 * scale  # leapfrog's bounded oscillation at the model's dt ...
    assert abs(np.mean(h[:20]) - np.mean(h[20:])) < 2e-3 * scale  # ... and no drift
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
