"""Structure selection (training/structure.py): the HWM keeps friction and residual only where
held-out rollouts need them; judged on an ideal spring (noisy, as HNN's) and on a damped one."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from hwm_studio.data.simulate import simulate
from hwm_studio.models import build_model, config_from_data
from hwm_studio.systems import get_system
from hwm_studio.training.fit import TrainConfig
from hwm_studio.training.run import split_trajectories
from hwm_studio.training.structure import energy_balance, fit_structure


def _spring(damping: float, seed: int = 0):
    data = simulate(get_system("spring"), 24, 60, damping=damping, seed=seed)
    noise = np.random.default_rng(seed).normal(0.0, 0.02, size=(2, *data.q.shape))
    return dataclasses.replace(data, q=data.q + noise[0] * data.q.std(), p=data.p + noise[1] * data.p.std())


@pytest.mark.parametrize(("damping", "keeps_friction"), [(0.0, False), (0.3, True)])
def test_auto_structure_is_conservative_on_an_ideal_spring_and_dissipative_on_a_damped_one(
    damping: float, keeps_friction: bool
) -> None:
    train, val = split_trajectories(_spring(damping), 0.25, seed=0)
    torch.manual_seed(0)
    model = build_model(config_from_data(train, "hwm", hidden=32))
    model, result = fit_structure(model, train, TrainConfig(steps=200, horizon=6, val_every=100, device="cpu"), val)
    record = model.config.structure
    assert result.status == "completed"
    assert energy_balance(model, val)["dissipative"] == keeps_friction  # the kept model agrees with itself
    assert ("friction" in record["kept"]) == keeps_friction, record
    assert (model.hamiltonian_field.dissipation is not None) == keeps_friction
    assert "residual" not in record["kept"], record  # a spring's energy explains everything but friction
