"""Systems nobody here wrote (hwm_studio/data/foreign.py): their physics by its invariants, their
files as a user's, and what the HWM learns of their couplings."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hwm_studio.data.foreign import FOREIGN_SYSTEMS, two_dimers, wall_chain
from hwm_studio.models import build_model, config_from_data
from hwm_studio.systems import system_names
from hwm_studio.training.fit import TrainConfig, fit


@pytest.mark.parametrize("name", [n for n in FOREIGN_SYSTEMS if FOREIGN_SYSTEMS[n]().conservative])
def test_conservative_foreign_systems_keep_their_energy(name: str) -> None:
    data = FOREIGN_SYSTEMS[name]().simulate(4, 60, seed=3, substeps=4)
    drift = np.abs(data.energy - data.energy[:, :1]).max() / np.abs(data.energy).mean()
    assert drift < 1e-6
    assert np.ptp(data.q, axis=1).max() > 0.1  # and something moves


def test_the_damped_chain_loses_energy_when_nobody_pushes() -> None:
    system = wall_chain()
    free = type(system)(**{**system.__dict__, "forced": ()})  # the same chain, unforced
    e = free.simulate(4, 80, seed=1, substeps=4).energy
    assert (np.diff(e, axis=1) <= 1e-9).all()
    assert (e[:, -1] < 0.9 * e[:, 0]).all()


def test_foreign_files_look_like_a_users() -> None:
    """No known name, no parameters: every model must configure itself from the states alone."""
    for make in FOREIGN_SYSTEMS.values():
        system = make()
        data = system.simulate(2, 5, seed=0, substeps=1)
        assert data.system_name not in system_names()
        assert data.meta["params"] == {}
        cfg = config_from_data(data, "hwm")
        assert cfg.pairs is None
        assert not cfg.angular
        assert cfg.per_pair == (system.n_entities > 1)  # a user's entities are not assumed identical
        assert (data.u is not None) == bool(system.forced)


@pytest.mark.parametrize("pair_features", ["even", "symmetrised"])
@pytest.mark.parametrize("angular", [False, True])
def test_per_pair_interaction_gradient_matches_autograd(pair_features: str, angular: bool) -> None:
    from hwm_studio.models.energies import LearnedInteraction, PositionFeatures

    features = PositionFeatures([0.7, 1.3], angular)
    pairs = [(0, 1), (0, 2), (1, 3), (2, 3)]
    torch.manual_seed(0)
    term = LearnedInteraction(features, 4, pairs, 16, 2, "tanh", per_pair=True, pair_features=pair_features).double()
    with torch.no_grad():
        term.gate.copy_(torch.linspace(-0.5, 1.5, len(term.pairs)))  # gates that differ per pair
    q = torch.randn(7, 4, 2, dtype=torch.float64, requires_grad=True)
    p = torch.zeros(7, 4, 2, dtype=torch.float64)
    (auto,) = torch.autograd.grad(term.energy(q, p).sum(), q)
    assert torch.allclose(term.grad_q(q, p), auto, atol=1e-10)
    # each pair's energy is symmetric in its two bodies: swapping every pair's order changes nothing
    swapped = LearnedInteraction(features, 4, [(j, i) for i, j in pairs], 16, 2, "tanh", per_pair=True,
                                 pair_features=pair_features).double()  # fmt: skip
    swapped.load_state_dict(term.state_dict(), strict=False)
    assert torch.allclose(swapped.energy(q, p), term.energy(q, p), atol=1e-10)
    assert term.energy(q, p).std() > 1e-3  # and the energy is alive


def test_new_models_take_even_pair_features_and_a_force_residual() -> None:
    """One network evaluation per pair, and a residual that leaves dq/dt = dH/dp: what makes a
    rollout carry its force from step to step. Models saved before keep what they were trained with."""
    from hwm_studio.models.config import ModelConfig

    cfg = config_from_data(two_dimers().simulate(2, 5, seed=0, substeps=1), "hwm")
    assert (cfg.pair_features, cfg.residual_on) == ("even", "momenta")
    model = build_model(cfg)
    assert model.field.residual.momentum_only
    assert not model.field.moves_positions(None)
    legacy = {k: v for k, v in json.loads(cfg.to_json()).items() if k not in ("pair_features", "residual_on")}
    old = ModelConfig.from_dict(legacy)
    assert (old.pair_features, old.residual_on) == ("symmetrised", "state")
    assert build_model(old).field.moves_positions(None)


def test_the_hwm_learns_that_the_chain_ends_do_not_interact() -> None:
    """Only neighbours are coupled in the wall chain: the learned force of the end pair (0, 2) must
    come out far below those of the two real springs, on held-out states."""
    system = wall_chain()
    train, test = system.simulate(32, 80, seed=0, substeps=4), system.simulate(8, 80, seed=9, substeps=4)
    torch.manual_seed(0)
    model = build_model(config_from_data(train, "hwm"))
    fit(model, train, TrainConfig(steps=250, horizon=4, val_every=0, device="cpu"))
    c = model.couplings(torch.as_tensor(test.q.reshape(-1, 3, 1), dtype=torch.float32))
    assert c[(0, 2)] < 0.1 * min(c[(0, 1)], c[(1, 2)]), c


def test_the_unseen_systems_benchmark_runs_end_to_end_at_a_tiny_size(tmp_path) -> None:
    import json
    import subprocess
    import sys

    out = tmp_path / "unseen.json"
    args = ["--systems", "wall_chain", "--kinds", "hwm", "mlp", "hwm-shared", "--steps", "15", "--train", "6",
            "--points", "20", "--threads", "1", "--out", str(out)]  # fmt: skip
    res = subprocess.run([sys.executable, "benchmarks/unseen_systems.py", *args], capture_output=True, text=True,
                         timeout=600)  # fmt: skip
    assert res.returncode == 0, res.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [r["model"] for r in rows] == ["hwm", "mlp", "hwm-shared"]
    assert set(rows[0]["couplings"]) == {"0-1", "0-2", "1-2"}
    assert "| wall_chain | hwm |" in res.stdout


def test_the_training_speed_benchmark_times_every_form(tmp_path) -> None:
    import json
    import subprocess
    import sys

    out = tmp_path / "speed.json"
    args = ["--systems", "polynomial_particle", "--steps", "2", "--out", str(out)]
    res = subprocess.run([sys.executable, "benchmarks/training_speed.py", *args], capture_output=True, text=True,
                         timeout=600)  # fmt: skip
    assert res.returncode == 0, res.stderr
    (row,) = json.loads(out.read_text())["ms_per_step"]
    forms = ("mlp", "hwm, full", "hwm, friction only", "hwm, conservative")
    assert all(row[f] > 0 for f in forms), row
    assert row["hwm, full / mlp"] == round(row["hwm, full"] / row["mlp"], 1)
    assert "| polynomial_particle |" in res.stdout
