"""Planning: planners against closed-form optima, bounds, MPC swing-up, costs, the Gymnasium adapter, CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from hwm_studio.data.simulate import simulate
from hwm_studio.models import build_model, config_from_data
from hwm_studio.planning import (
    CEM,
    MPPI,
    ActionEffort,
    CostError,
    EnergyShaping,
    PendulumV1Reward,
    SwingUp,
    SystemEnv,
    TargetState,
    cost_values,
    get_task,
    model_rollout,
    run_mpc,
    system_rollout,
    wrap_angle,
)
from hwm_studio.planning.collect import episodes_to_data, random_episodes
from hwm_studio.planning.pendulum_v1 import make_env, observation_to_state, state_to_observation
from hwm_studio.state import PhaseState
from hwm_studio.systems import get_system
from hwm_studio.training.checkpoint import save_run

torch.set_num_threads(1)  # tiny batched ops: threads only add overhead (and the CI box has two cores)

DT = 0.5


def double_integrator(q: torch.Tensor, p: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symplectic Euler on q'' = u: p1 = p0 + dt u, q1 = q0 + dt p1; (N, 1, 1) states, (N, 1) actions."""
    p1 = p + DT * u[:, :, None]
    return q + DT * p1, p1


def double_integrator_optimum(q0: float, p0: float, horizon: int, wq: float, wp: float, lam: float) -> torch.Tensor:
    """argmin_u sum_t wq (q_t - 1)^2 + wp p_t^2 + lam u_t^2, in closed form (t = 1..T).

    p_t = p0 + dt sum_{k<t} u_k and q_t = q0 + t dt p0 + dt^2 sum_{k<t} (t - k) u_k are linear in u,
    so the cost is a quadratic |W^1/2 (a + M u - r)|^2 + lam |u|^2 with minimiser
    u* = (M^T W M + lam I)^-1 M^T W (r - a).
    """
    t = torch.arange(1, horizon + 1, dtype=torch.float64)[:, None]  # (T, 1)
    k = torch.arange(horizon, dtype=torch.float64)[None]  # (1, T)
    mq = torch.where(k < t, DT * DT * (t - k), 0.0)
    mp = torch.where(k < t, DT, 0.0)
    m = torch.cat([mq, mp])  # (2T, T)
    a = torch.cat([q0 + t[:, 0] * DT * p0, torch.full((horizon,), p0, dtype=torch.float64)])
    r = torch.cat([torch.ones(horizon, dtype=torch.float64), torch.zeros(horizon, dtype=torch.float64)])
    w = torch.cat([torch.full((horizon,), wq), torch.full((horizon,), wp)]).to(torch.float64)
    lhs = m.T @ (w[:, None] * m) + lam * torch.eye(horizon, dtype=torch.float64)
    return torch.linalg.solve(lhs, m.T @ (w * (r - a)))  # (T,)


def start(q: float, p: float) -> PhaseState:
    return PhaseState(torch.tensor([[[q]]], dtype=torch.float64), torch.tensor([[[p]]], dtype=torch.float64))


@pytest.mark.parametrize(
    ("planner", "tol"),
    [
        (CEM(-3, 3, horizon=6), 0.01),  # PlaNet's defaults
        # TD-MPC2's defaults but 20 iterations and a lower std floor: with 6 its std starts at 2 (in units of
        # half the range), and on this ill-conditioned quadratic it stops about 0.7 from the optimum
        (MPPI(-3, 3, horizon=6, iterations=20, min_std=0.01), 0.1),
    ],
)
def test_planners_find_the_closed_form_optimum_of_a_quadratic_cost_on_a_linear_system(planner, tol) -> None:
    wq, wp, lam = 1.0, 0.5, 0.1
    cost = TargetState(q=1.0, p=0.0, q_weight=wq, p_weight=wp) + ActionEffort(lam)
    u_star = double_integrator_optimum(0.0, 0.5, 6, wq, wp, lam)
    assert u_star.abs().max() < 2.5  # the optimum is inside the bounds: a fair test of the search
    rollout = system_rollout(double_integrator)
    result = planner.plan(rollout, start(0.0, 0.5), cost)
    assert result.actions.shape == (6, 1)
    assert torch.allclose(result.actions[:, 0], u_star, atol=tol), (result.actions[:, 0], u_star)

    def total(u: torch.Tensor) -> float:
        q, p, e = rollout(start(0.0, 0.5).q, start(0.0, 0.5).p, u.reshape(1, 6, 1))
        return float(cost(q, p, u.reshape(1, 6, 1), e)[0])

    c_star = total(u_star)
    assert c_star <= total(result.actions[:, 0]) <= c_star * (1 + 10 * tol**2) + 1e-9
    assert result.candidates.shape == (planner.candidates, 6, 1)
    assert result.q.shape == (planner.candidates, 7, 1, 1)
    assert result.costs.shape == (planner.candidates,)
    costs = result.costs[result.elites]
    assert (costs[1:] >= costs[:-1]).all()
    assert costs[0] == result.costs.min()


@pytest.mark.parametrize("kind", [CEM, MPPI])
def test_planners_respect_action_bounds_and_saturate_at_them(kind) -> None:
    """x1 = x0 + u with the unconstrained optimum far outside the box: the answer is the box's corner."""

    def shift(q: torch.Tensor, p: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return q + u[:, None, :], p  # (N, 1, 2) states, (N, 2) actions

    low, high = [-1.0, 0.0], [1.0, 0.5]
    planner = kind(low, high, horizon=1, seed=3)
    state = PhaseState(torch.zeros(1, 1, 2, dtype=torch.float64), torch.zeros(1, 1, 2, dtype=torch.float64))
    cost = TargetState(q=[[5.0, -5.0]], p=None)
    result = planner.plan(system_rollout(shift), state, cost)
    lo, hi = torch.tensor(low, dtype=torch.float64), torch.tensor(high, dtype=torch.float64)
    assert ((result.candidates >= lo) & (result.candidates <= hi)).all()
    assert ((result.actions >= lo) & (result.actions <= hi)).all()
    assert torch.allclose(result.actions[0], torch.tensor([1.0, 0.0], dtype=torch.float64), atol=0.05)
    with pytest.raises(ValueError, match="low < high"):
        kind([1.0], [1.0])


def test_planners_are_reproducible_and_reset_forgets_the_warm_start() -> None:
    cost = SwingUp(q_up=0.0, inertia=1 / 3) + ActionEffort(1e-3)
    rollout = get_task("Pendulum-v1").make_true_rollout()
    s0, s1 = start(math.pi - 0.1, 0.0), start(math.pi - 0.2, -0.1)
    a = CEM(-2, 2, horizon=15, candidates=64, elites=8, iterations=2, seed=5)
    b = CEM(-2, 2, horizon=15, candidates=64, elites=8, iterations=2, seed=5)
    first = a.plan(rollout, s0, cost)
    assert torch.equal(first.candidates, b.plan(rollout, s0, cost).candidates)  # same seed, same plans
    a.plan(rollout, s1, cost)  # warm-started from the first plan
    a.reset(seed=5)
    again = a.plan(rollout, s0, cost)
    assert torch.equal(again.actions, first.actions)  # as if new
    other = CEM(-2, 2, horizon=15, candidates=64, elites=8, iterations=2, seed=6).plan(rollout, s0, cost)
    assert not torch.equal(other.candidates, first.candidates)


def test_mpc_with_true_dynamics_swings_the_gym_pendulum_up_from_hanging_still() -> None:
    system = get_system("gym_pendulum")
    env = SystemEnv(system, max_steps=100, initial=start(math.pi, 0.0))  # down at rest: it must pump (2 < 5)
    planner = CEM(-2, 2, horizon=30, candidates=100, elites=10, iterations=3, init_std=1.5, seed=0)
    rollout = get_task("Pendulum-v1").make_true_rollout()
    seen = []

    def callback(step) -> None:
        seen.append((step.t, step.plan.candidates.shape[0], step.episode_return))

    ep = run_mpc(env, planner, rollout, PendulumV1Reward(system.inertia), seed=0, callback=callback)
    assert ep.steps == 100
    assert [s[:2] for s in seen] == [(t, 100) for t in range(100)]
    assert seen[-1][2] == pytest.approx(ep.total_return)
    assert float(ep.q[0, 0, 0]) == math.pi
    angle = wrap_angle(ep.q[-20:, 0, 0]).abs()
    assert angle.max() < 0.1, angle  # upright for the last second
    assert (ep.p[-1, 0, 0] / system.inertia).abs() < 0.5
    assert ep.rewards[-1] > -0.01
    assert ep.actions.abs().max() <= 2.0


def test_bad_costs_give_clear_errors() -> None:
    rollout = system_rollout(double_integrator)
    planner = CEM(-1, 1, horizon=3, candidates=16, elites=4, iterations=2)
    s = start(0.0, 0.0)
    with pytest.raises(CostError, match="must be callable"):
        planner.plan(rollout, s, 3.0)  # type: ignore[arg-type]
    with pytest.raises(CostError, match=r"returned shape \(16, 4\), expected \(16,\)"):
        planner.plan(rollout, s, lambda q, p, u, e: q[..., 0, 0])
    with pytest.raises(CostError, match="returned float, expected a tensor"):
        planner.plan(rollout, s, lambda q, p, u, e: 1.0)
    with pytest.raises(CostError, match="NaN or infinite"):
        planner.plan(rollout, s, lambda q, p, u, e: q[:, -1, 0, 0] * float("nan"))
    with pytest.raises(CostError, match="NaN or infinite"):
        planner.plan(rollout, s, TargetState() + (lambda q, p, u, e: torch.full_like(q[:, 0, 0, 0], math.inf)))
    with pytest.raises(CostError, match="needs energies"):
        planner.plan(rollout, s, 0.5 * EnergyShaping(target=1.0))
    with pytest.raises(CostError, match="finite number"):
        _ = TargetState() * float("nan")
    q = torch.zeros(2, 3, 1, 1)
    with pytest.raises(CostError, match="2 non-finite value"):
        cost_values(lambda q, p, u, e: torch.tensor([math.nan, math.inf]), q, q, torch.zeros(2, 2, 1), None)


def test_a_diverging_candidate_loses_instead_of_breaking_the_plan() -> None:
    def explode(q: torch.Tensor, p: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q1 = torch.where(u[:, :, None] > 0.9, torch.full_like(q, math.nan), q + u[:, :, None])
        return q1, p

    result = CEM(-1, 1, horizon=2, candidates=64, elites=8, iterations=1).plan(
        system_rollout(explode), start(0.0, 0.0), TargetState(q=2.0, p=None)
    )
    assert torch.isinf(result.costs).any()  # some candidates blew up and were ranked last
    assert torch.isfinite(result.costs[result.elites]).all()
    assert result.actions.max() <= 0.9  # the plan is made of the survivors


def test_costs_compose_and_match_their_formulas() -> None:
    g = torch.Generator().manual_seed(0)
    q, p = torch.randn(5, 4, 1, 1, generator=g), torch.randn(5, 4, 1, 1, generator=g)
    u = torch.randn(5, 3, 1, generator=g)
    energy = torch.randn(5, 4, generator=g)
    swing, effort, shaping = SwingUp(velocity_weight=0.2, inertia=0.5), ActionEffort(0.3), EnergyShaping(2.0)
    both = swing + 2 * effort + 0.5 * shaping + (lambda q, p, u, e: q[:, -1, 0, 0])
    assert both.needs_energy
    expect = (
        ((1 - torch.cos(q[:, 1:])) + 0.2 * (p[:, 1:] / 0.5) ** 2).sum(dim=(1, 2, 3))
        + 2 * 0.3 * (u**2).sum(dim=(1, 2))
        + 0.5 * ((energy[:, 1:] - 2.0) ** 2).sum(dim=1)
        + q[:, -1, 0, 0]
    )
    assert torch.allclose(both(q, p, u, energy), expect)
    assert sum([swing, effort]) is not None  # sum() starts from 0
    # a target one full turn away is reached when angular
    qq = torch.full((1, 2, 1, 1), 2 * math.pi)
    assert float(TargetState(q=0.0, p=None, angular=True)(qq, qq * 0, u[:1, :1], None)) < 1e-10
    assert float(TargetState(q=0.0, p=None)(qq, qq * 0, u[:1, :1], None)) > 39


def test_gymnasium_pendulum_adapter_round_trips_observations_and_steps_like_env_step() -> None:
    env = make_env()
    system = env.system
    obs, _ = env.env.reset(seed=3)
    state = observation_to_state(obs, system.inertia)
    assert state.q.shape == (1, 1, 1)
    assert -math.pi <= float(state.q) <= math.pi
    np.testing.assert_allclose(state_to_observation(state, system.inertia), obs, atol=1e-6)
    assert env.low.tolist() == [-2.0]
    assert env.high.tolist() == [2.0]
    assert env.max_steps == 200
    assert env.dt == 0.05
    th, thdot = env.env.unwrapped.state
    twin = SystemEnv(system, initial=start(float(th), system.inertia * float(thdot)))  # same dynamics, same state
    twin.reset()
    g = torch.Generator().manual_seed(0)
    for _ in range(40):
        before = torch.tensor(env.env.unwrapped.state, dtype=torch.float64)
        a = 5 * torch.rand(1, generator=g, dtype=torch.float64) - 2.5  # beyond the bounds too: both clip
        a = a.float().double()  # the Box space is float32: the env computes with the rounded action
        s, reward, done = env.step(a)
        after = env.env.unwrapped.state
        th1, thdot1 = system.env_step(before[:1], before[1:], a.clamp(-2, 2))
        # equal up to float32 rounding: numpy 2 keeps gymnasium's 3 u / (m l^2) in the action's float32
        np.testing.assert_allclose([float(th1), float(thdot1)], after, rtol=0, atol=1e-7)
        np.testing.assert_allclose(float(s.p) / system.inertia, float(np.float32(after[1])), rtol=0, atol=1e-12)
        assert abs(math.remainder(float(s.q) - after[0], 2 * math.pi)) < 1e-6
        s2, reward2, _ = twin.step(a)
        assert reward2 == pytest.approx(reward, abs=1e-6)  # PendulumV1Reward is the env's reward
        assert float(s2.q) == pytest.approx(after[0], abs=1e-6)
        assert not done
    env.close()


def test_model_rollout_is_batched_fused_and_gives_the_models_energy() -> None:
    data = simulate(get_system("gym_pendulum"), 4, 12, control="random", seed=0)
    model = build_model(config_from_data(data, "hwm"))
    rollout = model_rollout(model)
    g = torch.Generator().manual_seed(1)
    q0, p0 = torch.randn(8, 1, 1, generator=g, dtype=torch.float64), torch.randn(8, 1, 1, generator=g)
    u = torch.rand(8, 12, 1, generator=g) * 4 - 2
    q, p, energy = rollout(q0, p0, u)
    assert q.shape == p.shape == (8, 13, 1, 1)
    assert q.dtype == torch.float32
    assert energy is not None
    assert energy.shape == (8, 13)
    with torch.no_grad():
        q_ref, p_ref, traj = model.rollout_data(q0.float(), p0.float(), u.float(), 12, fused=False)
        h_ref = model.hamiltonian_field.hamiltonian.energy(PhaseState(traj.q[:, 5], traj.p[:, 5]))
    assert torch.allclose(q, q_ref, atol=1e-5)
    assert torch.allclose(p, p_ref, atol=1e-5)
    assert torch.allclose(energy[:, 5], h_ref, atol=1e-5)
    result = MPPI(-2, 2, horizon=12, candidates=32, elites=4, iterations=2).plan(
        rollout, start(0.1, 0.0), EnergyShaping(target=10.0)
    )
    assert result.energy is not None
    assert result.energy.shape == (32, 13)


def test_episodes_are_unwrapped_and_cut_into_windows_that_count_every_step() -> None:
    task = get_task("Pendulum-v1")
    env = task.make_env()
    episodes = random_episodes(env, 250, seed=0)
    env.close()
    assert [e.steps for e in episodes] == [200, 50]
    data = episodes_to_data(episodes, 41, task, env_steps=250)
    assert data.q.shape == (6, 41, 1, 1)
    assert data.u.shape == (6, 41, 1)
    assert data.meta["system"] == "gym_pendulum"
    assert data.meta["collection"]["env_steps"] == 250
    assert np.abs(np.diff(data.q, axis=1)).max() < 8 * 0.05 + 1e-6  # no 2 pi jumps inside a window
    np.testing.assert_array_equal(data.q[1, 0], data.q[0, -1])  # consecutive windows share an end point
    np.testing.assert_allclose(data.u[0, :40, 0], episodes[0].actions[:40, 0].numpy())
    assert np.abs(data.u).max() <= 2.0


# --- CLI ------------------------------------------------------------------------------------------
@pytest.fixture
def one_thread(monkeypatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # subprocesses: see torch.set_num_threads above


def test_cli_plan_true_dynamics_prints_the_documented_json(run_cli, one_thread) -> None:
    res = run_cli("plan", "--env", "Pendulum-v1", "--true-dynamics", "--episodes", "1", "--steps", "5",
                  "--candidates", "50", "--elites", "5", "--iterations", "2", "--seed", "4", "--json")  # fmt: skip
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert {"returns", "mean_return", "env_steps", "planner", "ms_per_step"} <= set(out)
    assert out["planner"] == "cem"
    assert out["model"] == "true dynamics"
    assert out["env_steps"] is None
    assert len(out["returns"]) == 1
    assert out["steps"] == [5]
    assert out["horizon"] == 30
    assert out["mean_return"] == out["returns"][0] < 0
    assert out["ms_per_step"] > 0


def test_cli_plan_rejects_unknown_envs_missing_models_and_models_that_do_not_fit(
    tmp_path: Path, run_cli, one_thread
) -> None:
    res = run_cli("plan", "--env", "CartPole-v9", "--true-dynamics")
    assert res.returncode == 1
    assert "unknown environment 'CartPole-v9'; planning supports: Pendulum-v1" in res.stderr
    res = run_cli("plan", str(tmp_path), "--env", "Pendulum-v1")
    assert res.returncode == 1
    assert "no such checkpoint" in res.stderr
    res = run_cli("plan", "--env", "Pendulum-v1")
    assert res.returncode == 1
    assert "give a run directory" in res.stderr
    data = simulate(get_system("gym_pendulum"), 2, 5, control="random")
    save_run(tmp_path / "two", build_model(config_from_data(data, "hwm", action_dim=2)))
    res = run_cli("plan", str(tmp_path / "two"), "--env", "Pendulum-v1", "--episodes", "1", "--steps", "2")
    assert res.returncode == 1
    assert "takes 2 action dim(s); Pendulum-v1 takes 1" in res.stderr
    assert "Traceback" not in res.stderr


def test_cli_train_env_collects_trains_and_plan_reports_its_env_steps(tmp_path: Path, run_cli, one_thread) -> None:
    run = tmp_path / "run"
    res = run_cli("train", "--env", "Pendulum-v1", "--env-steps", "120", "--random-steps", "80", "--rounds", "1",
                  "--steps", "20", "--horizon", "4", "--out", str(run))  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "collected 120 environment steps in Pendulum-v1" in res.stdout
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["env_steps"] == 120
    assert metrics["env"] == "Pendulum-v1"
    res = run_cli("plan", str(run), "--env", "Pendulum-v1", "--planner", "mppi", "--episodes", "2", "--steps", "3",
                  "--candidates", "32", "--elites", "4", "--iterations", "2", "--json")  # fmt: skip
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["env_steps"] == 120
    assert out["planner"] == "mppi"
    assert out["model"] == "hwm"
    assert len(out["returns"]) == 2
    res = run_cli("train", "--system", "pendulum", "--rounds", "2", "--out", str(tmp_path / "x"))
    assert res.returncode == 1
    assert "only apply with --env" in res.stderr


def test_a_systems_own_reward_is_the_default_and_a_system_without_one_is_refused_clearly() -> None:
    pendulum = get_system("pendulum")
    with pytest.raises(ValueError, match="defines no reward: pass reward="):
        SystemEnv(pendulum)

    class UprightPendulum(type(pendulum)):  # a user's system: its reward lives on it, nowhere else
        def default_reward(self):
            return SwingUp(q_up=math.pi)

    env = SystemEnv(UprightPendulum(), max_steps=3)
    env.reset(seed=0)
    s = env.step(torch.zeros(1))
    assert isinstance(env.reward_cost, SwingUp)
    assert s.reward < 0  # minus a cost that is positive away from upright
