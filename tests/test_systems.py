"""Ground-truth systems: exact physics against independent formulas, parameters, rendering."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hwm_studio.physics import get_integrator, rollout
from hwm_studio.state import PhaseState
from hwm_studio.systems import SYSTEMS, get_system, system_names
from hwm_studio.systems.render import PALETTE


def test_every_system_declares_what_the_studio_needs() -> None:
    for name in system_names():
        s = get_system(name)
        z = s.sample_initial(3, torch.Generator().manual_seed(0))
        assert z.q.shape == (3, s.n_entities, s.dim)
        assert z.q.dtype == torch.float64
        assert s.energy(z).shape == (3,)
        assert s.positions(z.q).shape == (3, s.n_entities, 3)
        assert len(s.entity_names()) == s.n_entities
        assert s.action_dim >= 1
        assert s.action_bound > 0
        meta = s.meta()
        assert get_system(meta["system"], **meta["params"]).params == s.params


def test_sampler_is_deterministic_for_a_seed() -> None:
    for name in system_names():
        a = get_system(name).sample_initial(4, torch.Generator().manual_seed(7))
        b = get_system(name).sample_initial(4, torch.Generator().manual_seed(7))
        assert torch.equal(a.q, b.q)
        assert torch.equal(a.p, b.p)


def test_spring_and_pendulum_hamiltonians_are_the_textbook_ones() -> None:
    q = torch.tensor([[[0.3]], [[-1.2]]], dtype=torch.float64)
    p = torch.tensor([[[0.5]], [[2.0]]], dtype=torch.float64)
    z = PhaseState(q, p)
    spring = get_system("spring", m=2.0, k=5.0)
    assert torch.allclose(spring.energy(z), p[:, 0, 0] ** 2 / 4.0 + 5.0 * q[:, 0, 0] ** 2 / 2)
    pend = get_system("pendulum", m=1.5, l=0.7, g=9.81)
    expected = p[:, 0, 0] ** 2 / (2 * 1.5 * 0.49) + 1.5 * 9.81 * 0.7 * (1 - torch.cos(q[:, 0, 0]))
    assert torch.allclose(pend.energy(z), expected)


def test_double_pendulum_matches_the_lagrangian_equations_of_motion() -> None:
    """Hamilton's equations of our H give the accelerations of the standard Lagrangian form."""
    m1, m2, l1, l2, g = 1.3, 0.8, 1.1, 0.7, 9.81
    s = get_system("double_pendulum", m1=m1, m2=m2, l1=l1, l2=l2, g=g)
    z = s.sample_initial(6, torch.Generator().manual_seed(1))
    qdot = torch.linalg.solve(s.mass_matrix(z.q), z.p)  # (B, 2, 1)
    f = s.field()(z)
    assert torch.allclose(f.q, qdot, atol=1e-12), "dq/dt = M(q)^-1 p, not p"
    # accelerations from dq/dt and dp/dt: M qdd = dp/dt - dM/dt qdot
    a1, a2 = z.q[:, 0, 0], z.q[:, 1, 0]
    w1, w2 = qdot[:, 0, 0], qdot[:, 1, 0]
    d = a1 - a2
    den = 2 * m1 + m2 - m2 * torch.cos(2 * d)
    acc1 = (
        -g * (2 * m1 + m2) * torch.sin(a1)
        - m2 * g * torch.sin(a1 - 2 * a2)
        - 2 * torch.sin(d) * m2 * (w2**2 * l2 + w1**2 * l1 * torch.cos(d))
    ) / (l1 * den)
    acc2 = (
        2 * torch.sin(d) * (w1**2 * l1 * (m1 + m2) + g * (m1 + m2) * torch.cos(a1) + w2**2 * l2 * m2 * torch.cos(d))
    ) / (l2 * den)
    eps = 1e-6  # differentiate qdot(t) along the flow numerically
    z2 = z.axpy(eps, f)
    qdot2 = torch.linalg.solve(s.mass_matrix(z2.q), z2.p)
    acc = (qdot2 - qdot)[..., 0] / eps
    assert torch.allclose(acc[:, 0], acc1, atol=1e-4)
    assert torch.allclose(acc[:, 1], acc2, atol=1e-4)


def test_gym_pendulum_field_matches_the_environment_equation() -> None:
    """theta'' = 3 g / (2 l) sin(theta) + 3 u / (m l^2), theta = 0 upright (Pendulum-v1)."""
    s = get_system("gym_pendulum")
    z = s.sample_initial(8, torch.Generator().manual_seed(2))
    u = torch.linspace(-2, 2, 8, dtype=torch.float64)[:, None]
    f = s.field()(z, u)
    theta_dd = f.p[:, 0, 0] / s.inertia
    assert torch.allclose(theta_dd, 3 * 10.0 / 2 * torch.sin(z.q[:, 0, 0]) + 3.0 * u[:, 0])
    th, thd = s.env_step(z.q[:, 0, 0], z.p[:, 0, 0] / s.inertia, u[:, 0])
    gym_dot = z.p[:, 0, 0] / s.inertia + (15.0 * torch.sin(z.q[:, 0, 0]) + 3.0 * u[:, 0]) * 0.05
    assert torch.allclose(thd, gym_dot.clamp(-8, 8))
    assert torch.allclose(th, z.q[:, 0, 0] + thd * 0.05)


def test_nbody_conserves_momentum_and_angular_momentum() -> None:
    s = get_system("three_body")
    z0 = s.sample_initial(4, torch.Generator().manual_seed(3))
    with torch.no_grad():
        traj = rollout(s.field(), get_integrator("leapfrog"), z0, dt=0.01, steps=500)
    mom = traj.p.sum(dim=2)  # (B, T, 2)
    ang = (traj.q[..., 0] * traj.p[..., 1] - traj.q[..., 1] * traj.p[..., 0]).sum(dim=2)
    assert torch.allclose(mom, mom[:, :1].expand_as(mom), atol=1e-12)
    assert torch.allclose(ang, ang[:, :1].expand_as(ang), atol=1e-10)


def test_chain_coupling_is_an_interaction_between_neighbours_only() -> None:
    s = get_system("chain", n=5, k=2.0, k0=0.3)
    parts = s.hamiltonian.decompose(s.sample_initial(2))
    assert (parts["interaction"] > 0).all()
    assert (parts["potential"] > 0).all()
    assert s.interaction_pairs() == [(0, 1), (1, 2), (2, 3), (3, 4)]
    q = torch.zeros(1, 5, 1, dtype=torch.float64)
    q[0, 0, 0] = 1.0  # displace the first mass only: only its neighbour feels the coupling
    f = s.field()(PhaseState(q, torch.zeros_like(q)))
    assert f.p[0, 1, 0] == pytest.approx(2.0)
    assert torch.all(f.p[0, 2:, 0] == 0)


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("pendulum", {"m": -1.0}, "outside"),
        ("pendulum", {"mass": 1.0}, "has no parameter"),
        ("chain", {"n": 2.5}, "integer"),
        ("spring", {"k": float("nan")}, "finite"),
        ("nbody", {"G": "big"}, "must be a number"),
    ],
)
def test_bad_parameters_are_rejected_clearly(name: str, params: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        get_system(name, **params)


def test_unknown_system_lists_the_choices() -> None:
    with pytest.raises(ValueError, match="choose one of spring, pendulum"):
        get_system("pendulumm")


@pytest.mark.parametrize("name", system_names())
@pytest.mark.parametrize("size", [64, 32])
def test_renderer_shapes_and_determinism(name: str, size: int) -> None:
    s = get_system(name)
    z = s.sample_initial(5, torch.Generator().manual_seed(4))
    frames = s.render(z.q, size=size)
    assert frames.shape == (5, size, size, 3)
    assert frames.dtype == torch.uint8
    assert torch.equal(frames, s.render(z.q.clone(), size=size)), "same state, same bytes"
    series = s.render(torch.stack([z.q, z.q], dim=1), size=size)  # (B, T, E, D) input
    assert series.shape == (5, 2, size, size, 3)
    # every entity is visible: its colour appears in the frame
    assert (frames.float().std(dim=(1, 2)) > 1).all(), "a frame must not be blank"


def test_renderer_puts_the_pendulum_bob_where_the_physics_says() -> None:
    s = get_system("pendulum")
    q = torch.tensor([[[0.0]], [[math.pi / 2]]], dtype=torch.float64)  # hanging down; to the right
    frames = s.render(q, size=64).numpy().astype(float)
    for frame, (ex, ey) in zip(frames, [(0.0, -1.0), (1.0, 0.0)], strict=True):
        bob = np.abs(frame - 255 * np.array(PALETTE[0])).sum(-1) < 30  # pixels of the bob's colour
        ys, xs = np.nonzero(bob)
        extent = s.view_extent()
        cx = (xs.mean() + 0.5) / 64 * 2 * extent - extent
        cy = extent - (ys.mean() + 0.5) / 64 * 2 * extent
        assert abs(cx - ex) < 0.1
        assert abs(cy - ey) < 0.1


def test_registry_covers_the_required_systems() -> None:
    assert {"spring", "pendulum", "double_pendulum", "chain", "nbody", "gym_pendulum"} <= set(SYSTEMS)


def test_data_of_a_base_system_is_known_by_the_preset_its_parameters_fix() -> None:
    from hwm_studio.systems import known_as

    three = get_system("three_body")
    assert known_as(three.name, three.params) == "three_body"
    two = get_system("two_body")
    assert known_as(two.name, two.params) == "two_body"
    assert known_as("nbody", {"n": 4}) == "nbody"  # no preset fixes four bodies
    assert known_as("pendulum", {"g": 3.0}) == "pendulum"
    assert known_as(None) is None
