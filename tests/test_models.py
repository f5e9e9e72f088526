"""World models by their structure: shapes, invariants of the learned energy, the studio's knobs."""

from __future__ import annotations

import pytest
import torch

from hwm_studio.data.simulate import simulate
from hwm_studio.models import STATE_MODELS, build_model, config_from_data
from hwm_studio.models.mlp import ScalarMLP
from hwm_studio.physics.rollout import rollout
from hwm_studio.state import PhaseState
from hwm_studio.systems import get_system

torch.set_default_dtype(torch.float32)


def _data(system: str = "chain", control: str = "random", n: int = 4, t: int = 12):
    return simulate(get_system(system), n, t, control=control, seed=0)


def _model(kind: str, system: str = "chain", **options):
    torch.manual_seed(0)
    return build_model(config_from_data(_data(system), kind, hidden=16, **options))


def _random_state(model, batch: int = 5, seed: int = 1) -> PhaseState:
    g = torch.Generator().manual_seed(seed)
    e, d = model.config.n_entities, model.config.dim
    q = torch.randn(batch, e, d, generator=g, dtype=torch.float64)
    p = torch.randn(batch, e, d, generator=g, dtype=torch.float64)
    return PhaseState(q, p)


@pytest.mark.parametrize("kind", list(STATE_MODELS))
@pytest.mark.parametrize("system", ["pendulum", "chain", "nbody"])
def test_predict_shapes_for_every_kind_and_entity_count(kind: str, system: str) -> None:
    data = _data(system)
    model = _model(kind, system)
    obs0 = model.coder.observe(torch.as_tensor(data.q[:, 0]).float(), torch.as_tensor(data.p[:, 0]).float())
    actions = torch.as_tensor(data.u[:, :7], dtype=torch.float32)
    pred, traj = model.predict(obs0, actions, 7)
    assert pred.shape == (4, 8, data.n_entities, model.coder.obs_dim)
    assert traj.q.shape == (4, 8, data.n_entities, data.dim)
    assert torch.isfinite(pred).all()
    assert torch.allclose(pred[:, 0], obs0, atol=1e-5)  # encode/decode round trip at t = 0


def test_wrong_action_shape_is_rejected() -> None:
    model = _model("hwm")
    obs0 = torch.zeros(2, model.config.n_entities, 2)
    with pytest.raises(ValueError, match="actions must be"):
        model.predict(obs0, torch.zeros(2, 3, model.action_dim + 1), 3)


def test_analytic_energy_gradient_matches_autograd() -> None:
    torch.manual_seed(0)
    net = ScalarMLP(3, hidden=8, depth=2).double()
    x = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    value, grad = net.value_and_grad(x)
    (auto,) = torch.autograd.grad(net(x).sum(), x)
    assert torch.allclose(grad, auto, atol=1e-10)
    assert torch.allclose(value.reshape(-1), net(x).reshape(-1).detach(), atol=1e-12)


def test_learned_hamiltonian_gradient_matches_autograd() -> None:
    model = _model("hwm", "chain", kinetic="configuration").double()
    h = model.hamiltonian_field.hamiltonian
    z = _random_state(model)
    g = h.grad(z)
    q = z.q.clone().requires_grad_(True)
    p = z.p.clone().requires_grad_(True)
    gq, gp = torch.autograd.grad(h.energy(PhaseState(q, p)).sum(), (q, p))
    assert torch.allclose(g.q, gq, atol=1e-9)
    assert torch.allclose(g.p, gp, atol=1e-9)


def test_configuration_kinetic_gradients_match_autograd_with_live_weights() -> None:
    """dT/dq of T = 1/2 p^T L(q) L(q)^T p is written out by hand (it must trace): check it."""
    model = _model("hwm", "double_pendulum", kinetic="configuration").double()
    kinetic = model.hamiltonian_field.hamiltonian.terms[0]
    torch.manual_seed(3)
    for w in kinetic.parameters():  # the MLP's last layer starts at zero: make every path live
        torch.nn.init.normal_(w, std=0.5)
    q = (3 * torch.randn(16, 2, 1, dtype=torch.float64)).requires_grad_(True)
    p = torch.randn(16, 2, 1, dtype=torch.float64).requires_grad_(True)
    gq, gp = kinetic.grad_qp(q, p)
    auto_q, auto_p = torch.autograd.grad(kinetic.energy(q, p).sum(), (q, p))
    assert auto_q.abs().max() > 1e-3  # q really matters
    assert torch.allclose(gq, auto_q, atol=1e-10)
    assert torch.allclose(gp, auto_p, atol=1e-10)
    assert torch.allclose(kinetic.grad_q(q, p), auto_q, atol=1e-10)


def test_interaction_is_symmetric_under_permuting_identical_entities() -> None:
    model = _model("hwm", "nbody").double()
    h = model.hamiltonian_field.hamiltonian
    z = _random_state(model)
    perm = torch.tensor([2, 0, 1])
    zp = PhaseState(z.q[:, perm], z.p[:, perm])
    parts, parts_p = h.decompose(z), h.decompose(zp)
    assert parts["interaction"].abs().max() > 1e-6  # the term is alive, not identically zero
    for k in ("kinetic", "potential", "interaction", "total"):
        assert torch.allclose(parts[k], parts_p[k], atol=1e-10), k
    # the vector field is equivariant: permuting entities permutes dz/dt
    f, fp = h.hamilton_field(z), h.hamilton_field(zp)
    assert torch.allclose(f.q[:, perm], fp.q, atol=1e-10)
    assert torch.allclose(f.p[:, perm], fp.p, atol=1e-10)


def test_learned_mass_matrix_is_positive_definite() -> None:
    model = _model("hwm", "double_pendulum", kinetic="configuration").double()
    kinetic = model.hamiltonian_field.hamiltonian.terms[0]
    q = torch.randn(64, 2, 1, dtype=torch.float64) * 3
    m_inv = kinetic.inverse_mass(q)
    eig = torch.linalg.eigvalsh(0.5 * (m_inv + m_inv.transpose(-1, -2)))
    assert (eig > 0).all()
    p = torch.randn(64, 2, 1, dtype=torch.float64)
    assert (kinetic.energy(q, p) > 0).all()


@pytest.mark.parametrize("dissipation", ["constant", "state"])
def test_learned_field_obeys_the_energy_balance(dissipation: str) -> None:
    """dH/dt = -grad H^T R grad H + grad H^T G u + grad H^T r, with the dissipated power >= 0."""
    model = _model("hwm", "chain", dissipation=dissipation, input_map="state").double()
    field = model.hamiltonian_field
    torch.nn.init.normal_(field.residual.net.out.weight, std=0.1)  # live residual and input map
    torch.nn.init.normal_(field.input_map.g0, std=0.5)
    torch.nn.init.normal_(field.input_map.net.out.weight, std=0.1)
    z = _random_state(model, batch=16)
    u = torch.randn(16, model.action_dim, dtype=torch.float64)
    q = z.q.clone().requires_grad_(True)
    p = z.p.clone().requires_grad_(True)
    (gq, gp) = torch.autograd.grad(field.hamiltonian.energy(PhaseState(q, p)).sum(), (q, p))
    f = field(z, u)
    dh_dt = (gq * f.q).sum((1, 2)) + (gp * f.p).sum((1, 2))
    pw = field.powers(z, u)
    assert (pw["dissipated"] >= -1e-12).all()
    assert pw["residual"].abs().max() > 1e-6
    assert pw["control"].abs().max() > 1e-6
    assert torch.allclose(dh_dt, -pw["dissipated"] + pw["control"] + pw["residual"], atol=1e-9)
    # the input map's force is its matrix G(q) applied to u (one definition of G, shown and used)
    force = field.input_map.momentum_part(z, u).reshape(16, -1)
    assert torch.allclose(force, (field.input_map.matrix(z.q) @ u[..., None])[..., 0], atol=1e-12)


def test_knobs_off_give_a_conservative_symplectic_rollout() -> None:
    """Dissipation 0 and residual 0: leapfrog on the learned H keeps it to a bounded O(dt^2) error, no drift."""
    model = _model("hwm", "chain").double()
    torch.nn.init.normal_(model.hamiltonian_field.residual.net.out.weight, std=0.1)
    z = _random_state(model, batch=4)
    full = rollout(model.hamiltonian_field, model.integrator, z, None, model.dt, 1000, record_energy=True)
    model.dissipation_scale, model.residual_scale = 0.0, 0.0
    off = rollout(model.hamiltonian_field, model.integrator, z, None, model.dt, 1000, record_energy=True)
    err = (off.energy["total"] - off.energy["total"][:, :1]).abs()
    assert err.max() < 1e-2 * off.energy["total"].abs().mean()  # bounded O(dt^2) oscillation ...
    assert err[:, -250:].mean() < 2 * err[:, 250:500].mean() + 1e-9  # ... with no secular drift
    assert (full.ledger["dissipated"][:, -1] > 0).all()  # with the knob on, energy is dissipated
    assert full.ledger["balance_error"].abs().max() < 1e-2 * full.ledger["dissipated"].abs().max()
    with pytest.raises(ValueError, match=">= 0"):
        model.dissipation_scale = -1.0


@pytest.mark.parametrize("kind", list(STATE_MODELS))
def test_integrator_knob(kind: str) -> None:
    model = _model(kind)
    if not model.continuous:
        with pytest.raises(ValueError, match="discrete map"):
            model.set_integrator("rk4")
    elif model.hamiltonian_field is None:
        with pytest.raises(ValueError, match="needs a Hamiltonian"):
            model.set_integrator("leapfrog")
    else:
        model.set_integrator("yoshida4")
        assert model.describe()["integrator"] == "yoshida4"


def test_weights_held_over_a_rollout_change_neither_numbers_nor_gradients() -> None:
    """A rollout builds the inverse mass once (physics/held.py) instead of once per call; its
    states and the gradients of a loss on them equal those of stepping one call at a time."""
    from hwm_studio.data.foreign import wall_chain

    torch.manual_seed(0)
    model = build_model(config_from_data(wall_chain().simulate(2, 6, seed=0, substeps=1), "hwm", hidden=16)).double()
    kinetic = model.field.hamiltonian.terms[0]
    with torch.no_grad():
        model.field.residual.net.out.weight.normal_(std=0.1)  # every port alive
        model.field.input_map.g0.normal_()
    z0 = _random_state(model, batch=3)
    actions = torch.randn(3, 5, model.config.action_dim, dtype=torch.float64)
    params = list(model.parameters())
    calls = []
    compute = kinetic._inverse_mass
    kinetic._inverse_mass = lambda: calls.append(1) or compute()
    traj = model.rollout_latent(z0, actions, 5)
    assert len(calls) == 1
    held_grads = torch.autograd.grad(traj.q.square().sum() + traj.p.square().sum(), params, allow_unused=True)
    state, qs, ps = z0, [z0.q], [z0.p]
    for t in range(5):
        state = model.integrator.step(model.field, state, actions[:, t], model.dt)
        qs.append(state.q)
        ps.append(state.p)
    assert len(calls) > 5
    assert torch.equal(torch.stack(qs, 1), traj.q)
    assert torch.equal(torch.stack(ps, 1), traj.p)
    loss = torch.stack(qs, 1).square().sum() + torch.stack(ps, 1).square().sum()
    step_grads = torch.autograd.grad(loss, params, allow_unused=True)
    assert sum(g is not None for g in held_grads) > 10
    for a, b in zip(held_grads, step_grads, strict=True):
        assert (a is None and b is None) or torch.allclose(a, b, rtol=1e-12, atol=1e-12)
