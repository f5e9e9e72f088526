"""The one definition of the state metrics (hwm_studio/metrics.py), and that its users agree."""

from __future__ import annotations

import numpy as np
import torch

from hwm_studio.metrics import VPT_THRESHOLD, normalised_error, scale, valid_steps
from hwm_studio.models import build_model, config_from_data
from hwm_studio.scene import Scene, SceneSpec
from hwm_studio.training.evaluate import evaluate


def test_valid_steps_counts_steps_before_the_first_exceedance() -> None:
    e = np.array([[0.0, 0.01, 0.05, 0.2, 0.01], [0.0, 0.01, 0.02, 0.03, 0.04], [0.0, np.nan, 0.0, 0.0, 0.0]])
    assert valid_steps(e).tolist() == [2, 4, 0]  # a non-finite error is never valid
    assert valid_steps(e[1]) == 4


def test_normalised_error_wraps_angles_and_floors_still_coordinates() -> None:
    q = np.zeros((5, 1, 2))
    q[:, 0, 0] = np.linspace(0, 1, 5)  # the second coordinate never moves
    sigma = scale(q, (0,))
    assert sigma[0, 1] > 0
    assert sigma[0, 1] < 1e-2 * sigma[0, 0]
    near = q + 2 * np.pi
    assert np.allclose(normalised_error(near, q, q, q, sigma, sigma, angular=True), 0, atol=1e-12)
    assert (normalised_error(near, q, q, q, sigma, sigma, angular=False) > VPT_THRESHOLD).all()


def test_scene_and_evaluation_give_the_same_vpt_for_one_trajectory() -> None:
    """Both call the one definition: on a single test trajectory (so both scale by its own spread)
    the studio's VPT and `hwm-studio eval`'s agree to the step, on an untrained model that drifts."""
    from hwm_studio.data.format import TrajectoryData
    from hwm_studio.data.simulate import simulate
    from hwm_studio.systems import get_system

    system = get_system("pendulum")
    torch.manual_seed(0)
    model = build_model(config_from_data(simulate(system, 4, 20, seed=0), "hwm", hidden=16))
    spec = SceneSpec(system="pendulum", steps=150, seed=4)
    result = Scene(model).run(spec)
    data = TrajectoryData(q=result.truth_q[None], p=result.truth_p[None], dt=result.dt, meta=system.meta())
    metrics, _, _ = evaluate(model, data)
    assert 0 < result.vpt < spec.steps  # the comparison means something: the model leaves the truth
    assert metrics["vpt"] == result.vpt
