"""Integrators tested by their mathematics: order, symplecticity, energy behaviour, reversibility."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch

from hwm_studio.physics import INTEGRATORS, PortHamiltonianField, get_integrator, rollout
from hwm_studio.physics.integrators import RK4, DiscreteGradient, Leapfrog
from hwm_studio.state import PhaseState
from hwm_studio.systems import get_system

SPLITTING = [n for n, c in INTEGRATORS.items() if c.symplectic]
T_END = 1.6  # the order tests integrate to this time


def _final_state(field: PortHamiltonianField, name: str, z0: PhaseState, t_end: float, dt: float, u=None):
    steps = round(t_end / dt)
    actions = None if u is None else u.expand(z0.batch_size, steps, -1)
    integ = get_integrator(name, iterations=40) if name != "rk4" else RK4()
    with torch.no_grad():
        traj = rollout(field, integ, z0, actions=actions, dt=dt, steps=steps, record_energy=False)
    return traj.state(-1)


@functools.cache
def _problem(system_name: str, seed: int, damping: float = 0.0, force: float | None = None) -> tuple:
    """(field, z0, u, reference end state at t = 1.6), built once per problem and shared by the
    schemes' tests. The reference is RK4 at dt = 4e-4: its global error (<= 4e-12 here) is far
    below the smallest error fitted."""
    system = get_system(system_name)
    field = system.field(damping=damping) if damping else system.field()
    z0 = system.sample_initial(4, torch.Generator().manual_seed(seed))
    u = None if force is None else torch.tensor([[[force]]], dtype=torch.float64)
    return field, z0, u, _final_state(field, "rk4", z0, T_END, 4e-4, u)


def _fitted_order(name: str, problem: tuple, dts: list[float]) -> float:
    field, z0, u, ref = problem
    errs = []
    for dt in dts:
        z = _final_state(field, name, z0, T_END, dt, u)
        errs.append(float(torch.sqrt(((z.q - ref.q) ** 2).sum() + ((z.p - ref.p) ** 2).sum())))
    slope = np.polyfit(np.log(dts), np.log(errs), 1)[0]
    return float(slope)


@pytest.mark.parametrize("name", list(INTEGRATORS))
@pytest.mark.parametrize("system_name", ["pendulum", "double_pendulum"])
def test_convergence_order_matches_declared(name: str, system_name: str) -> None:
    """Fitted log-log slope of global error vs dt is within 0.3 of the declared order (float64),
    on a separable (pendulum) and a non-separable (double pendulum) Hamiltonian."""
    # 4th-order schemes reach their asymptotic regime at smaller dt on the stiffer double pendulum
    dts = [0.08, 0.04, 0.02, 0.01] if INTEGRATORS[name].order <= 2 else [0.05, 0.025, 0.0125, 0.00625]
    slope = _fitted_order(name, _problem(system_name, seed=1), dts)
    assert abs(slope - INTEGRATORS[name].order) < 0.3, f"{name} on {system_name}: slope {slope:.3f}"


@pytest.mark.parametrize("name", list(INTEGRATORS))
def test_order_with_damping_and_control_is_at_least_two_or_declared(name: str) -> None:
    """Friction and actions enter by Strang splitting: order min(declared, 2) is kept."""
    expected = min(INTEGRATORS[name].order, 2) if INTEGRATORS[name].symplectic else INTEGRATORS[name].order
    dts = [0.08, 0.04, 0.02, 0.01] if expected <= 2 else [0.2, 0.1, 0.05, 0.025]
    slope = _fitted_order(name, _problem("pendulum", seed=2, damping=0.4, force=0.7), dts)
    assert slope > expected - 0.3, f"{name}: slope {slope:.3f}, expected >= {expected}"


def _step_jacobian(name: str, system_name: str, dt: float) -> torch.Tensor:
    system = get_system(system_name)
    field = system.field()
    integ = get_integrator(name, iterations=60) if name != "rk4" else RK4()
    z0 = system.sample_initial(1, torch.Generator().manual_seed(3))
    e, d = z0.n_entities, z0.dim
    flat0 = torch.cat([z0.q.reshape(-1), z0.p.reshape(-1)])

    def step(flat: torch.Tensor) -> torch.Tensor:
        z = PhaseState(flat[: e * d].reshape(1, e, d), flat[e * d :].reshape(1, e, d))
        out = integ.step(field, z, None, dt)
        return torch.cat([out.q.reshape(-1), out.p.reshape(-1)])

    return torch.autograd.functional.jacobian(step, flat0)


@pytest.mark.parametrize("name", list(INTEGRATORS))
@pytest.mark.parametrize("system_name", ["pendulum", "double_pendulum", "three_body"])
def test_symplectic_schemes_preserve_the_symplectic_form(name: str, system_name: str) -> None:
    """M^T J M = J for the Jacobian M of one step iff the scheme is symplectic (RK4 is not)."""
    m = _step_jacobian(name, system_name, dt=0.1)
    n = m.shape[0] // 2
    eye, zero = torch.eye(n, dtype=m.dtype), torch.zeros(n, n, dtype=m.dtype)
    j = torch.cat([torch.cat([zero, eye], 1), torch.cat([-eye, zero], 1)], 0)
    defect = float((m.T @ j @ m - j).abs().max())
    if INTEGRATORS[name].symplectic:
        assert defect < 1e-12, f"{name} on {system_name}: symplectic defect {defect:.2e}"
    else:  # RK4's defect is O(dt^5) per step: small, but many orders above round-off
        assert defect > 1e-9, f"{name} should not be symplectic, defect {defect:.2e}"


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in INTEGRATORS if n != "discrete_gradient"])  # it conserves H: tested below
def test_energy_error_bounded_for_symplectic_and_drifting_for_rk4(name: str) -> None:
    """2 x 10^4 pendulum steps (~160 periods): a symplectic scheme's energy error stays at its
    initial level; RK4's grows secularly."""
    system = get_system("pendulum")
    z0 = system.sample_initial(8, torch.Generator().manual_seed(4))
    steps = 20_000
    with torch.no_grad():
        traj = rollout(system.field(), get_integrator(name), z0, dt=0.05, steps=steps)
    err = (traj.energy["total"] - traj.energy["total"][:, :1]).abs()  # (B, T+1)
    tenth = steps // 10
    early, late = float(err[:, :tenth].max()), float(err[:, -tenth:].max())
    if INTEGRATORS[name].symplectic:
        assert late <= 1.05 * early + 1e-12, f"{name}: error grew from {early:.3e} to {late:.3e}"
        assert late < 0.1 * float(traj.energy["total"][:, 0].abs().min()) + 1.5
    else:
        assert late > 5 * early, f"rk4 should drift: {early:.3e} -> {late:.3e}"


@pytest.mark.parametrize("system_name", ["pendulum", "double_pendulum"])
def test_leapfrog_is_time_reversible(system_name: str) -> None:
    """N steps forward, flip momenta, N steps, flip back: the start state returns (to round-off)."""
    system = get_system(system_name)
    field = system.field()
    integ = Leapfrog(iterations=60)
    z0 = system.sample_initial(5, torch.Generator().manual_seed(5))
    with torch.no_grad():
        fwd = rollout(field, integ, z0, dt=0.05, steps=200, record_energy=False).state(-1)
        back = rollout(field, integ, PhaseState(fwd.q, -fwd.p), dt=0.05, steps=200, record_energy=False).state(-1)
    assert torch.allclose(back.q, z0.q, atol=1e-9)
    assert torch.allclose(-back.p, z0.p, atol=1e-9)


def test_hamiltons_equations_and_rollout_match_the_analytic_spring() -> None:
    """Spring (m = 2, k = 3): the field is (p/m, -k q) and q(t) = A cos(w t) + (p0 / (m w)) sin(w t)."""
    system = get_system("spring", m=2.0, k=3.0)
    field = system.field()
    z0 = system.sample_initial(6, torch.Generator().manual_seed(6))
    f = field(z0)
    assert torch.allclose(f.q, z0.p / 2.0)
    assert torch.allclose(f.p, -3.0 * z0.q)
    w = math.sqrt(3.0 / 2.0)
    dt, steps = 0.01, 1000
    with torch.no_grad():
        traj = rollout(field, get_integrator("yoshida4"), z0, dt=dt, steps=steps)
    t = torch.arange(steps + 1, dtype=torch.float64) * dt
    q0, p0 = z0.q[:, 0, 0, None], z0.p[:, 0, 0, None]
    q_true = q0 * torch.cos(w * t) + p0 / (2.0 * w) * torch.sin(w * t)
    p_true = 2.0 * (-q0 * w * torch.sin(w * t) + p0 / 2.0 * torch.cos(w * t))
    # Yoshida's global error here is ~ w t (w dt)^4 ~ 1e-8
    assert torch.allclose(traj.q[:, :, 0, 0], q_true, atol=5e-8)
    assert torch.allclose(traj.p[:, :, 0, 0], p_true, atol=5e-8)


def test_unknown_integrator_name_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown integrator 'euler'"):
        get_integrator("euler")


class _CountingHamiltonian(torch.nn.Module):
    """Wraps a Hamiltonian and counts its dH/dq evaluations (every other call passes through)."""

    def __init__(self, inner) -> None:
        super().__init__()
        self.inner, self.force_calls = inner, 0

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.inner, name)

    def grad_q(self, q, p):
        self.force_calls += 1
        return self.inner.grad_q(q, p)


@pytest.mark.parametrize("name", ["leapfrog", "yoshida4"])
@pytest.mark.parametrize("ports", ["none", "friction and action", "residual"])
def test_stepper_reuses_the_closing_force_with_the_same_numbers(name: str, ports: str) -> None:
    """A rollout's steps carry dH/dq from one step to the next when nothing between them moves q:
    the same bits as stepping one by one, one force evaluation less per step; a residual (which
    moves q) gets none carried."""
    system = get_system("chain")
    field = system.field(damping=0.3) if ports != "none" else system.field()
    counting = _CountingHamiltonian(field.hamiltonian)
    field.hamiltonian = counting
    u = torch.full((4, 1), 0.5, dtype=torch.float64) if ports != "none" and field.action_dim else None
    if ports == "residual":

        class Drift(torch.nn.Module):
            def apply(self, state, u):
                return PhaseState(0.01 * state.p, -0.02 * state.q)

        field.residual = Drift()
    integ = get_integrator(name)
    z0 = system.sample_initial(4, torch.Generator().manual_seed(5))
    steps = 6
    one_by_one, calls = z0, []
    for _ in range(steps):
        before = counting.force_calls
        one_by_one = integ.step(field, one_by_one, u, 0.05)
        calls.append(counting.force_calls - before)
    counting.force_calls = 0
    step = integ.stepper(field, 0.05)
    carried = z0
    for _ in range(steps):
        carried = step(carried, u)
    assert torch.equal(carried.q, one_by_one.q)
    assert torch.equal(carried.p, one_by_one.p)
    saved = 0 if ports == "residual" else steps - 1  # every step but the first starts from a carried force
    assert counting.force_calls == sum(calls) - saved


def _random_held_actions(batch: int, steps: int, action_dim: int, bound: float, seed: int) -> torch.Tensor:
    """Keys held for 20 steps at a time: -bound, 0 or +bound per action dim."""
    g = torch.Generator().manual_seed(seed)
    keys = torch.randint(-1, 2, (batch, steps // 20, action_dim), generator=g).double()
    return keys.repeat_interleave(20, dim=1) * bound


@pytest.mark.parametrize(("system_name", "damping"), [("pendulum", 0.3), ("chain", 0.2), ("double_pendulum", 0.5)])
def test_discrete_gradient_ledger_balances_exactly_where_leapfrogs_does_not(system_name: str, damping: float) -> None:
    """Under friction and random held actions, H(t) - H(0) = -dissipated + control work to the
    solver's tolerance with the discrete-gradient step; leapfrog's trapezoid ledger is O(dt^2) off."""
    system = get_system(system_name)
    field = system.field(damping=damping)
    z0 = system.sample_initial(4, torch.Generator().manual_seed(5))
    steps = 400
    actions = _random_held_actions(4, steps, field.action_dim, float(system.action_bound), seed=6)
    errors = {}
    for integ in (get_integrator("leapfrog"), get_integrator("discrete_gradient")):
        with torch.no_grad():
            traj = rollout(field, integ, z0, actions, dt=system.default_dt, steps=steps)
        scale = float(traj.ledger["control_work"].abs().max() + traj.ledger["dissipated"].max())
        errors[integ.name] = float(traj.ledger["balance_error"].abs().max()) / scale
    assert errors["discrete_gradient"] < 1e-10, errors
    assert errors["leapfrog"] > 1e3 * errors["discrete_gradient"], errors


def test_discrete_gradient_conserves_a_non_separable_h_itself() -> None:
    """No ports: the double pendulum's H is constant to round-off (not a nearby modified H, as
    with a symplectic scheme), over 500 steps at a coarse dt."""
    system = get_system("double_pendulum")
    z0 = system.sample_initial(4, torch.Generator().manual_seed(7))
    with torch.no_grad():
        traj = rollout(system.field(), get_integrator("discrete_gradient"), z0, dt=0.02, steps=500)
        leap = rollout(system.field(), get_integrator("leapfrog"), z0, dt=0.02, steps=500)
    drift = (traj.energy["total"] - traj.energy["total"][:, :1]).abs().max()
    leap_drift = (leap.energy["total"] - leap.energy["total"][:, :1]).abs().max()
    assert float(drift) < 1e-10 * float(traj.energy["total"].abs().max())
    assert float(leap_drift) > 1e4 * float(drift)


def test_discrete_gradient_ledger_is_exact_with_learned_ports() -> None:
    """A learned HWM with state-dependent friction, a learned input map and a residual (weights
    made large so every port matters): the ledger of its discrete-gradient rollout balances."""
    from hwm_studio.data.simulate import simulate
    from hwm_studio.models import build_model, config_from_data

    data = simulate(get_system("chain"), 2, 5, control="random", seed=0)
    torch.manual_seed(0)  # the initial weights
    model = build_model(config_from_data(data, "hwm", dissipation="state", residual=True)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, dtype=p.dtype, generator=torch.Generator().manual_seed(p.numel())))
    field = model.hamiltonian_field
    z0 = model.latent(torch.as_tensor(data.q[:, 0]), torch.as_tensor(data.p[:, 0]))
    actions = _random_held_actions(2, 200, field.action_dim, 1.0, seed=8)
    with torch.no_grad():
        traj = rollout(field, DiscreteGradient(tolerance=1e-13), z0, actions, dt=0.03, steps=200)
        fixed = rollout(field, DiscreteGradient(iterations=10), z0, actions, dt=0.03, steps=200)
    led = traj.ledger
    for name in ("dissipated", "control_work", "residual_work"):
        assert float(led[name].abs().max()) > 1e-3, f"{name} did nothing: the test would not test it"
    scale = sum(float(led[k].abs().max()) for k in ("dissipated", "control_work", "residual_work"))
    balance = float(led["balance_error"].abs().max())
    assert balance < 1e-9 * scale
    # ten fixed sweeps do not converge on this stiff field: the ledger shows it
    assert float(fixed.ledger["balance_error"].abs().max()) > 1e3 * balance


def test_anderson_mixing_solves_a_linear_fixed_point_in_a_few_sweeps() -> None:
    """x = A x + b with A a slow contraction (ratio 0.9): plain sweeps need ~270 to reach 1e-12;
    Anderson mixing with memory 2 in 2-D is a secant method on a linear map and needs a handful."""
    from hwm_studio.physics.integrators.discrete_gradient import AndersonMixer

    a = torch.tensor([[0.9, 0.05], [-0.05, 0.6]], dtype=torch.float64)
    b = torch.tensor([1.0, -2.0], dtype=torch.float64)
    exact = torch.linalg.solve(torch.eye(2, dtype=torch.float64) - a, b)

    def sweeps(memory: int) -> int:
        mixer, x = (
            AndersonMixer(memory),
            PhaseState(torch.zeros(1, 1, 1, dtype=torch.float64), torch.zeros(1, 1, 1, dtype=torch.float64)),
        )
        for n in range(1, 1000):
            v = torch.cat([x.q.flatten(), x.p.flatten()])
            g = a @ v + b
            if float((g - exact).norm()) < 1e-12:
                return n
            x = mixer.next_guess(x, PhaseState(g[:1].reshape(1, 1, 1), g[1:].reshape(1, 1, 1)))
        return 1000

    assert sweeps(0) > 200
    assert sweeps(2) <= 5
