"""The studio's computation without a UI: fused rollouts equal eager ones; a scene is honest."""

from __future__ import annotations

import types
from dataclasses import replace

import numpy as np
import pytest
import torch

from hwm_studio.data.simulate import simulate
from hwm_studio.models import STATE_MODELS, build_model, config_from_data
from hwm_studio.physics.energy import EnergyTerm
from hwm_studio.physics.fused import FusedRollout, NotFusable
from hwm_studio.physics.integrators import INTEGRATORS, get_integrator
from hwm_studio.physics.rollout import rollout
from hwm_studio.scene import ActionSchedule, Scene, SceneSpec, with_initial
from hwm_studio.state import PhaseState
from hwm_studio.systems import get_system


def _model(kind: str, system: str = "pendulum", **options):
    torch.manual_seed(0)
    data = simulate(get_system(system), 4, 12, control="random", seed=0)
    model = build_model(config_from_data(data, kind, hidden=16, **options)).eval()
    for p in model.parameters():  # non-trivial weights everywhere (some start at zero)
        torch.nn.init.normal_(p, std=0.2)
    return model


@pytest.mark.parametrize("name", list(INTEGRATORS))
@pytest.mark.parametrize("system", ["pendulum", "double_pendulum", "three_body"])
def test_fused_rollout_equals_the_eager_rollout(name: str, system: str) -> None:
    s = get_system(system)
    field = s.field(damping=0.1)
    z0 = s.sample_initial(2, torch.Generator().manual_seed(0))
    u = torch.rand(2, 23, s.action_dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64) - 0.5
    integ = get_integrator(name)
    fused = FusedRollout(field, integ, chunk=5)
    for dt, scale in ((0.01, 1.0), (0.005, 0.0)):  # dt and knobs change without re-tracing
        field.dissipation_scale = scale
        ref = rollout(field, integ, z0, u, dt, 23, record_energy=False)
        q, p = fused(z0, u, dt, 23)
        torch.testing.assert_close(q, ref.q, rtol=0, atol=1e-12)
        torch.testing.assert_close(p, ref.p, rtol=0, atol=1e-12)
    assert len(fused._graphs) == 1


@pytest.mark.parametrize("kind", list(STATE_MODELS))
def test_fused_model_rollout_equals_eager_with_knobs(kind: str) -> None:
    model = _model(kind, "chain")
    q0 = torch.randn(3, 4, 1)
    p0 = torch.randn(3, 4, 1)
    u = torch.randn(3, 40, 1)
    knob_sets = [{}, {"dt": 0.02}] if model.continuous else [{}]
    if "dissipation_scale" in model.knobs():
        knob_sets.append({"dissipation_scale": 3.0, "residual_scale": 0.0})
    with torch.no_grad():
        for knobs in knob_sets:
            model.configure(**knobs)
            eager = model.rollout_data(q0, p0, u, 40, record_energy=model.hamiltonian_field is not None)
            fused = model.rollout_data(q0, p0, u, 40, record_energy=model.hamiltonian_field is not None, fused=True)
            torch.testing.assert_close(fused[0], eager[0], rtol=1e-6, atol=1e-6)
            torch.testing.assert_close(fused[1], eager[1], rtol=1e-6, atol=1e-6)
            for k, v in eager[2].ledger.items():
                torch.testing.assert_close(fused[2].ledger[k], v, rtol=1e-5, atol=1e-6)


def test_frozen_graphs_are_used_for_fixed_weights_and_dropped_when_weights_change() -> None:
    model = _model("hwm", "chain")
    q0, p0, u = torch.randn(1, 4, 1), torch.randn(1, 4, 1), torch.randn(1, 40, 1)
    with torch.no_grad():
        first = model.rollout_data(q0, p0, u, 40, fused=True)  # traced: exactly the eager numbers
        eager = model.rollout_data(q0, p0, u, 40)
        torch.testing.assert_close(first[0], eager[0], rtol=0, atol=0)
        second = model.rollout_data(q0, p0, u, 40, fused=True)  # same weights: frozen graph
        (graph,) = model._fused_cache[model.integrator.name]._graphs.values()
        assert graph.frozen is not None
        torch.testing.assert_close(second[0], eager[0], rtol=0, atol=0)  # folding keeps the eager numerics
        torch.testing.assert_close(second[1], eager[1], rtol=0, atol=0)
        model.field.hamiltonian.terms[1].net.out.weight.mul_(1.5)  # an optimiser step, in place
        changed = model.rollout_data(q0, p0, u, 40, fused=True)
        assert graph.frozen is None  # the stale frozen graph is gone...
        eager_changed = model.rollout_data(q0, p0, u, 40)
        torch.testing.assert_close(changed[0], eager_changed[0], rtol=0, atol=0)  # ...and the new weights act
        assert not torch.allclose(changed[0], first[0])


def test_a_field_that_cannot_be_traced_rolls_out_eagerly() -> None:
    """An energy term whose gradient needs autograd cannot be traced: same numbers, eagerly."""
    model = _model("hwm", "pendulum")
    potential = model.field.hamiltonian.terms[1]
    potential.grad_q = types.MethodType(EnergyTerm.grad_q, potential)  # the autograd default
    q0, p0, u = torch.randn(2, 1, 1), torch.randn(2, 1, 1), torch.randn(2, 30, 1)
    with torch.no_grad():
        fused = model.rollout_data(q0, p0, u, 30, fused=True)
        eager = model.rollout_data(q0, p0, u, 30)
    torch.testing.assert_close(fused[0], eager[0], rtol=0, atol=0)
    with pytest.raises(NotFusable, match="cannot trace"):
        FusedRollout(model.integration_field(), model.integrator)(PhaseState(q0, p0), u, 0.05, 30)


def test_knobs_are_validated() -> None:
    mlp, hwm = _model("mlp"), _model("hwm")
    with pytest.raises(ValueError, match="no 'dt' knob"):
        mlp.configure(dt=0.1)
    with pytest.raises(ValueError, match="dt must be > 0"):
        hwm.configure(dt=0.0)
    with pytest.raises(ValueError, match="no 'colour' knob"):
        hwm.configure(colour=1)
    assert set(hwm.knobs()) == {"dt", "integrator", "dissipation_scale", "residual_scale"}


def test_scene_truth_matches_the_simulator_and_the_model_ledger_balances() -> None:
    model = _model("hwm", "pendulum")
    scene = Scene(model)
    spec = SceneSpec("pendulum", steps=120, seed=3, actions=ActionSchedule("sine", (0.5,), period=1.5))
    r = scene.run(spec)
    # truth: the same integrator and substeps as the data simulator, from the same state
    z0 = scene.initial_state(spec)
    u = spec.actions.values(120, model.dt, 1, get_system("pendulum").action_bound)
    ref = rollout(get_system("pendulum").field(), get_integrator("yoshida4"), z0,
                  torch.as_tensor(u)[None].repeat_interleave(4, 1), model.dt / 4, 480, record_energy=False)  # fmt: skip
    np.testing.assert_allclose(r.truth_q, ref.q[0, ::4].numpy(), atol=1e-4)  # the data simulator's 4 substeps
    assert r.t[-1] == pytest.approx(120 * model.dt)
    assert r.model_q.shape == (121, 1, 1)
    assert r.model_q[0] == pytest.approx(r.truth_q[0], abs=1e-6)
    assert set(r.model_energy) >= {"kinetic", "potential", "total"}
    # the model's books balance: H(t) - H(0) + dissipated - control work - residual work ~ 0
    scale = np.abs(r.model_energy["total"]).max() + np.abs(r.model_ledger["control_work"]).max()
    assert np.abs(r.model_ledger["balance_error"]).max() < 1e-2 * scale
    assert r.model_ledger["dissipated"][-1] > 0
    assert np.abs(r.model_ledger["control_work"]).max() > 0
    assert 0 <= r.vpt <= 120
    assert r.error[0] == pytest.approx(0, abs=1e-5)


def test_scene_caches_the_truth_and_reruns_only_the_model_on_a_knob() -> None:
    scene = Scene(_model("hwm"))
    spec = SceneSpec("pendulum", steps=50)
    a = scene.run(spec)
    truth = scene._truth
    b = scene.run(spec, {"dissipation_scale": 0.0, "residual_scale": 0.0})
    assert scene._truth is truth
    assert not np.allclose(a.model_p, b.model_p)
    assert b.model_ledger["dissipated"][-1] == 0
    c = scene.run(replace(spec, actions=ActionSchedule("constant", (1.0,))))
    assert scene._truth is not truth
    assert not np.allclose(c.truth_q, a.truth_q)


def test_scene_initial_state_phase_plane_and_frames() -> None:
    scene = Scene(_model("hwm"))
    spec = with_initial(SceneSpec("pendulum", steps=20), np.array([1.0]), np.array([-0.5]))
    r = scene.run(spec)
    assert r.truth_q[0, 0, 0] == 1.0
    assert r.truth_p[0, 0, 0] == -0.5
    plane = scene.phase_plane(spec, 0, 0, (r.truth_q[0], r.truth_p[0]), (-3, 3, -4, 4), levels_n=20, arrows_n=7)
    assert plane["H"].shape == (20, 20)
    assert plane["dq"].shape == (49,)
    assert np.isfinite(plane["H"]).all()
    truth, pred = scene.frames(r, 5, size=32)
    assert truth.shape == pred.shape == (32, 32, 3)
    assert truth.dtype == np.uint8
    with pytest.raises(ValueError, match="need 1 values"):
        scene.run(replace(spec, initial=((1.0, 2.0), (0.0, 0.0))))
    with pytest.raises(ValueError, match="fractions of the bound"):
        scene.run(replace(spec, actions=ActionSchedule("constant", (2.0,))))
    with pytest.raises(ValueError, match="expects 1 entities"):
        scene.run(SceneSpec("chain", steps=5))


def test_mlp_scene_has_no_energy_but_true_energy_of_its_states() -> None:
    r = Scene(_model("mlp")).run(SceneSpec("pendulum", steps=30))
    assert r.model_energy is None
    assert r.model_ledger is None
    assert r.model_true_energy.shape == (31,)
    assert np.isfinite(r.model_true_energy[:5]).all()


def test_a_scene_reports_the_models_learned_couplings_on_the_true_states() -> None:
    model = _model("hwm", "chain", per_pair=True)  # each neighbour pair its own embedding and gate
    r = Scene(model).run(SceneSpec("chain", steps=20))
    assert set(r.couplings) == {(0, 1), (1, 2), (2, 3)}
    expected = model.couplings(torch.as_tensor(r.truth_q, dtype=torch.float32))
    assert r.couplings == pytest.approx(expected)
    assert min(r.couplings.values()) > 0
    assert Scene(_model("mlp")).run(SceneSpec("pendulum", steps=5)).couplings is None


@pytest.mark.parametrize("system", ["spring", "nbody", "double_pendulum"])
def test_the_truth_s_head_is_the_truth_s_first_states_bit_for_bit(system: str) -> None:
    """A pixel scene's model starts from the first k true states stepped on its own thread, while
    the whole truth is computed on the other core: the same bits (so the same frames), pushed or not."""
    for actions in (ActionSchedule(), ActionSchedule("sine", (0.7,))):
        spec = SceneSpec(system=system, seed=3, actions=actions)
        scene = Scene()
        _, u, tq, _, _ = scene.truth(spec)
        np.testing.assert_array_equal(scene._truth_head(spec, u, 3), tq[:3])


def test_a_scene_traces_shared_checkpoints_only_and_a_model_still_learning_rolls_out_eagerly() -> None:
    """torch never frees a traced graph: the studio traces weights shared read-only (a bounded set),
    not every model it meets (each training run of each session); eagerly the numbers are the same."""
    from hwm_studio.pretrained import run_dir
    from hwm_studio.training.checkpoint import load_model, load_shared

    spec = SceneSpec("pendulum", steps=60, seed=2, actions=ActionSchedule("constant", (0.4,)))
    private, shared = load_model(run_dir("pendulum", "hwm")), load_shared(run_dir("pendulum", "hwm"))
    assert not private.worth_tracing
    assert shared.worth_tracing
    eager = Scene(private).run(spec)
    traced = Scene(shared).run(spec)
    assert not getattr(private, "_fused_cache", {})  # nothing traced for the private copy
    assert getattr(shared, "_fused_cache", {})
    np.testing.assert_array_equal(eager.model_q, traced.model_q)  # the same numbers either way
    np.testing.assert_array_equal(eager.model_p, traced.model_p)
