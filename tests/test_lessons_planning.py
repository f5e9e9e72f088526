"""The claims lessons 06, 07, 09 and 10 make, checked with the library directly at a small size
(the notebooks themselves run in test_notebooks.py), and the studio's help on every tab."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from hwm_studio.planning import SystemEnv, model_rollout, run_mpc, sequence_cost, true_rollout
from hwm_studio.planning.costs import cost_values
from hwm_studio.planning.swingup import (
    SwingUpSettings,
    differences,
    energy_ablation,
    imagined_and_achieved,
    small_swing_slope,
)
from hwm_studio.pretrained import RECIPES, run_dir, training_data
from hwm_studio.state import PhaseState
from hwm_studio.systems import get_system
from hwm_studio.training.checkpoint import load_model

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def pendulum_models():
    torch.set_num_threads(1)
    return {kind: load_model(run_dir("pendulum", kind)) for kind in ("hwm", "mlp")}


def _notebook_code(prefix: str) -> str:
    nbformat = pytest.importorskip("nbformat")
    path = next(EXAMPLES.glob(f"{prefix}_*.ipynb"))
    nb = nbformat.read(path, as_version=4)
    return "\n".join(c.source for c in nb.cells if c.cell_type == "code")


def _hanging() -> PhaseState:
    zero = torch.zeros(1, 1, 1, dtype=torch.float64)
    return PhaseState(zero, zero.clone())


def _upright_h(model) -> float:
    q = torch.full((1, 1, 1), math.pi)
    with torch.no_grad():
        return float(model.hamiltonian_field.hamiltonian.energy(model.latent(q, torch.zeros_like(q)))[0])


# --- 06: planning a swing-up --------------------------------------------------------------------------
def test_06_each_comparison_changes_exactly_one_setting() -> None:
    for w_v in (0.01, 0.1):
        shaped, unshaped = energy_ablation(SwingUpSettings(velocity_weight=w_v))
        assert differences(shaped, unshaped) == {"energy_weight": (0.003, 0.0)}
        assert shaped.cost(1.0).needs_energy
        assert not unshaped.cost().needs_energy
    cem = SwingUpSettings(energy_weight=0.0)
    assert differences(cem, SwingUpSettings(energy_weight=0.0, planner="mppi")) == {"planner": ("cem", "mppi")}
    code = _notebook_code("06")
    assert "energy_ablation(" in code  # the notebook builds its pairs with these
    assert "differences(" in code


def test_06_the_small_swing_slope_predicts_a_local_minimum_only_at_the_high_velocity_weight() -> None:
    pendulum = get_system("pendulum")
    slopes = {(w_v, s.energy_weight > 0): small_swing_slope(s, pendulum)
              for w_v in (0.01, 0.1) for s in energy_ablation(SwingUpSettings(velocity_weight=w_v))}  # fmt: skip
    assert slopes[0.1, False] > 0  # w_v 0.1 without the energy term: hanging still is a local minimum
    assert all(v < 0 for k, v in slopes.items() if k != (0.1, False))
    assert slopes[0.1, False] == pytest.approx(0.1 * 9.81 / 2 - 0.25)


def test_06_at_the_high_velocity_weight_the_energy_term_alone_starts_the_swing(pendulum_models) -> None:
    """The ablation at a small size: 3 s of MPC from hanging still, the energy term on and off."""
    model = pendulum_models["hwm"]
    rollout, h_up = model_rollout(model), _upright_h(model)
    largest = {}
    for s in energy_ablation(SwingUpSettings(velocity_weight=0.1, candidates=64, iterations=2)):
        cost = s.cost(h_up if s.energy_weight else None)
        env = SystemEnv(get_system("pendulum"), reward=cost, dt=model.dt, max_steps=60, initial=_hanging())
        ep = run_mpc(env, s.planner_for(2.0), rollout, cost, steps=60, seed=0)
        largest[s.energy_weight > 0] = float(ep.q[:, 0, 0].abs().max())
    assert largest[False] < 0.3, largest  # stuck near hanging
    assert largest[True] > 2 * largest[False], largest


def test_06_the_reported_cost_is_the_chosen_plans(pendulum_models) -> None:
    model = pendulum_models["hwm"]
    rollout = model_rollout(model)
    s = SwingUpSettings(candidates=64, iterations=2)
    cost = s.cost(_upright_h(model))
    start = PhaseState(torch.full((1, 1, 1), 0.5), torch.zeros(1, 1, 1))
    plan = s.planner_for(2.0).plan(rollout, start, cost)
    q, p, energy = rollout(start.q, start.p, plan.actions[None])
    by_hand = float(cost_values(cost, q, p, plan.actions[None], energy)[0])
    assert sequence_cost(rollout, start, plan.actions, cost) == pytest.approx(by_hand, rel=1e-6)
    best_candidate = float(plan.costs[plan.elites[0]])
    assert by_hand != best_candidate  # CEM's chosen plan is the elites' mean, not the best candidate
    assert "sequence_cost(" in _notebook_code("06")


def test_06_the_plan_tab_reports_the_chosen_plans_imagined_cost(tmp_path) -> None:
    pytest.importorskip("panel")
    from hwm_studio.planning.presets import preset_cost
    from hwm_studio.ui import notebook as nb

    studio = nb.studio(workspace=tmp_path / "ws", threads=None)
    try:
        drawn = nb.plan(studio, candidates=32, iterations=2, horizon=15, cost="swing-up")
        assert drawn is not None, studio.planning.status.object
        tab = studio.planning
        ctx = tab._context()
        cost, _ = preset_cost(tab.cost, ctx.system, float(tab.effort), float(tab.target_energy))
        start = PhaseState(*(torch.as_tensor(x, dtype=torch.float32)[None] for x in (ctx.q0, ctx.p0)))
        expected = sequence_cost(model_rollout(ctx.model), start, torch.as_tensor(drawn.actions), cost)
        assert drawn.chosen_cost == pytest.approx(expected, rel=1e-4)
        assert f"the chosen plan's imagined cost {drawn.chosen_cost:.4g}" in tab.status.object
    finally:
        studio.close()


def test_06_the_upright_goal_is_outside_the_pretrained_models_training_data() -> None:
    pendulum = get_system("pendulum")
    data = training_data(RECIPES["pendulum"])
    wrapped = np.abs(np.angle(np.exp(1j * data.q)))
    energy = pendulum.energy(PhaseState(*(torch.as_tensor(x.reshape(-1, 1, 1)) for x in (data.q, data.p))))
    assert wrapped.max() < math.pi - 0.5  # more than 28 degrees short of upright
    assert float(energy.max()) < 0.9 * 2 * 9.81  # below the energy of resting upright


def test_06_the_mlp_over_rates_its_plans_where_the_hwm_does_not(pendulum_models) -> None:
    """Imagined vs achieved return of chosen plans from the training distribution (section 5)."""
    pendulum = get_system("pendulum")
    truth = true_rollout(pendulum, 0.05)
    s = SwingUpSettings(energy_weight=0.0, candidates=64, iterations=2)
    cost = s.cost()
    starts = pendulum.sample_initial(8, torch.Generator().manual_seed(3))
    gaps = {}
    for kind, model in pendulum_models.items():
        rollout, pairs = model_rollout(model), []
        for i in range(8):
            state = PhaseState(starts.q[i : i + 1], starts.p[i : i + 1])
            plan = s.planner_for(2.0).plan(rollout, state.to("cpu", torch.float32), cost)
            pairs.append(imagined_and_achieved(rollout, truth, state, plan.actions, cost))
        gaps[kind] = np.array([imagined - achieved for imagined, achieved in pairs])
    assert gaps["mlp"].mean() > 0.03, gaps["mlp"]
    assert (gaps["mlp"] > 0).mean() >= 0.75, gaps["mlp"]
    assert abs(gaps["hwm"].mean()) < 0.03, gaps["hwm"]
    assert gaps["mlp"].mean() > 3 * abs(gaps["hwm"].mean())
    with pytest.raises(ValueError, match="states only"):  # a learned and a true energy do not compare
        imagined_and_achieved(rollout, truth, state, plan.actions, SwingUpSettings().cost(1.0))
