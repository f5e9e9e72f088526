"""The port-Hamiltonian field: energy balance, PSD dissipation, the ledger, input validation."""

from __future__ import annotations

import pytest
import torch

from hwm_studio.physics import (
    Hamiltonian,
    MomentumDamping,
    PortHamiltonianField,
    Residual,
    get_integrator,
    rollout,
)
from hwm_studio.physics.terms import CosinePotential, QuadraticKinetic
from hwm_studio.state import PhaseState
from hwm_studio.systems import get_system, system_names


class _SmallResidual(Residual):
    """A deterministic, state- and action-dependent residual, to exercise residual power."""

    def apply(self, state: PhaseState, u: torch.Tensor | None) -> PhaseState:
        extra = 0.0 if u is None else u.sum(-1)[:, None, None]
        return PhaseState(0.1 * torch.sin(state.p), 0.05 * state.q * state.p + 0.02 * extra)


def _dh_dt_by_autograd(field: PortHamiltonianField, z: PhaseState, u: torch.Tensor | None) -> torch.Tensor:
    """dH/dt = grad H . f(z, u), with grad H taken by autograd on the total energy."""
    q = z.q.detach().requires_grad_(True)
    p = z.p.detach().requires_grad_(True)
    h = field.hamiltonian.energy(PhaseState(q, p)).sum()
    gq, gp = torch.autograd.grad(h, (q, p))
    f = field(z, u)
    return (gq * f.q).sum((1, 2)) + (gp * f.p).sum((1, 2))


@pytest.mark.parametrize("name", system_names())
def test_energy_balance_identity_on_random_states(name: str) -> None:
    """dH/dt == -dissipated power + control power + residual power, pointwise."""
    system = get_system(name)
    field = system.field(damping=0.3)
    field.residual = _SmallResidual()
    gen = torch.Generator().manual_seed(10)
    z = system.sample_initial(16, gen)
    u = torch.randn(16, system.action_dim, dtype=torch.float64, generator=gen)
    pw = field.powers(z, u)
    lhs = _dh_dt_by_autograd(field, z, u)
    rhs = -pw["dissipated"] + pw["control"] + pw["residual"]
    assert torch.allclose(lhs, rhs, atol=1e-10, rtol=1e-10)
    assert (pw["dissipated"] >= 0).all(), "R is PSD, so dissipated power is never negative"


def test_scales_switch_terms_off_and_keep_the_field_conservative() -> None:
    system = get_system("pendulum")
    field = system.field(damping=0.5)
    field.residual = _SmallResidual()
    z = system.sample_initial(4, torch.Generator().manual_seed(11))
    assert not field.is_conservative(None)
    field.dissipation_scale = 0.0
    field.residual_scale = 0.0
    assert field.is_conservative(None)
    assert not field.is_conservative(torch.zeros(4, 1, dtype=torch.float64))
    f, c = field(z), field.conservative(z)
    assert torch.equal(f.q, c.q)
    assert torch.equal(f.p, c.p)


def test_negative_damping_is_rejected_because_r_must_be_psd() -> None:
    with pytest.raises(ValueError, match="PSD"):
        MomentumDamping(-0.1)


def test_ledger_balances_under_friction_and_control() -> None:
    """The cumulative ledger closes: H(t) - H(0) + dissipated - control work - residual work ~ 0."""
    system = get_system("pendulum")
    field = system.field(damping=0.2)
    field.residual = _SmallResidual()
    gen = torch.Generator().manual_seed(12)
    z0 = system.sample_initial(4, gen)
    u = torch.randn(4, 400, 1, dtype=torch.float64, generator=gen)
    with torch.no_grad():
        traj = rollout(field, get_integrator("yoshida4"), z0, actions=u, dt=0.01)
    led = traj.ledger
    assert led["dissipated"][:, -1].min() > 0.01, "friction must have taken energy out"
    assert (led["dissipated"].diff(dim=1) >= -1e-12).all(), "dissipated energy only grows"
    swing = float((traj.energy["total"] - traj.energy["total"][:, :1]).abs().max())
    assert float(led["balance_error"].abs().max()) < 1e-3 * max(swing, 1.0)


def test_rollout_validates_actions_and_dt() -> None:
    system = get_system("pendulum")
    field, integ = system.field(), get_integrator("leapfrog")
    z0 = system.sample_initial(2)
    with pytest.raises(ValueError, match=r"actions must have shape \(batch, steps, 1\)"):
        rollout(field, integ, z0, actions=torch.zeros(2, 10, 3, dtype=torch.float64), dt=0.1)
    with pytest.raises(ValueError, match="dt must be a finite positive number"):
        rollout(field, integ, z0, dt=float("nan"), steps=3)
    with pytest.raises(ValueError, match="only 10 actions"):
        rollout(field, integ, z0, actions=torch.zeros(2, 10, 1, dtype=torch.float64), dt=0.1, steps=11)
    with pytest.raises(ValueError, match="give `steps`"):
        rollout(field, integ, z0, dt=0.1)


def test_batch_one_state_broadcasts_over_many_action_sequences() -> None:
    system = get_system("pendulum")
    z0 = system.sample_initial(1)
    u = torch.linspace(-1, 1, 5, dtype=torch.float64).reshape(5, 1, 1).expand(5, 20, 1)
    with torch.no_grad():
        traj = rollout(system.field(), get_integrator("leapfrog"), z0, actions=u, dt=0.05)
    assert traj.q.shape == (5, 21, 1, 1)
    assert torch.allclose(traj.q[:, 0], z0.q.expand(5, 1, 1))
    assert len(set(traj.q[:, -1, 0, 0].tolist())) == 5


def test_phase_state_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="same shape"):
        PhaseState(torch.zeros(2, 1, 1), torch.zeros(2, 2, 1))
    with pytest.raises(ValueError, match=r"\(batch, entities, dim\)"):
        PhaseState(torch.zeros(2, 1), torch.zeros(2, 1))


def test_autograd_gradient_used_when_a_term_has_no_analytic_form() -> None:
    """A term without analytic gradients falls back to autograd and agrees with the analytic one."""

    class AutogradCosine(CosinePotential):
        grad_q = CosinePotential.__mro__[1].grad_q  # the EnergyTerm default: autograd

    analytic = Hamiltonian([QuadraticKinetic(1.0), CosinePotential(3.0)])
    auto = Hamiltonian([QuadraticKinetic(1.0), AutogradCosine(3.0)])
    z = get_system("pendulum").sample_initial(8)
    assert torch.allclose(analytic.grad(z).q, auto.grad(z).q, atol=1e-12)
    with torch.no_grad():
        assert torch.allclose(analytic.grad(z).q, auto.grad(z).q, atol=1e-12)
