"""Checkpoints: exact round trips, no unpickling, clear failures on corrupt or mismatched files."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from hwm_studio.data.simulate import simulate
from hwm_studio.models import STATE_MODELS, build_model, config_from_data
from hwm_studio.systems import get_system
from hwm_studio.training.checkpoint import (
    WEIGHTS,
    CheckpointError,
    load_metrics,
    load_model,
    load_shared,
    read_config,
    save_run,
)


def _model(kind: str = "hwm", system: str = "chain", **options):
    torch.manual_seed(0)
    data = simulate(get_system(system), 3, 10, control="random", seed=0)
    return build_model(config_from_data(data, kind, hidden=16, **options)), data


@pytest.mark.parametrize("kind", list(STATE_MODELS))
def test_round_trip_reproduces_predictions_exactly(tmp_path, kind: str) -> None:
    model, data = _model(kind, kinetic="configuration", dissipation="state")
    for p in model.parameters():  # make every weight non-trivial (some start at zero)
        torch.nn.init.normal_(p, std=0.1)
    save_run(tmp_path / "run", model, metrics={"note": "x"}, train_config={"steps": 1})
    loaded = load_model(tmp_path / "run")
    obs0 = model.coder.observe(torch.as_tensor(data.q[:, 0]).float(), torch.as_tensor(data.p[:, 0]).float())
    u = torch.as_tensor(data.u[:, :5]).float()
    with torch.no_grad():
        assert torch.equal(model.predict(obs0, u, 5)[0], loaded.predict(obs0, u, 5)[0])
    assert read_config(tmp_path / "run") == model.config
    assert load_metrics(tmp_path / "run") == {"note": "x"}
    assert json.loads((tmp_path / "run" / "config.json").read_text())["kind"] == kind


def test_truncated_and_garbage_files_fail_clearly(tmp_path) -> None:
    model, _ = _model()
    run = save_run(tmp_path / "run", model)
    blob = (run / WEIGHTS).read_bytes()
    (run / WEIGHTS).write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_model(run)
    (run / WEIGHTS).write_bytes(b"\x80\x04K\x01." * 10)  # a pickle is never executed
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_model(run)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_model(tmp_path / "nowhere")


def test_foreign_and_mismatched_files_fail_clearly(tmp_path) -> None:
    model, _ = _model()
    save_file({"w": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(CheckpointError, match="not an hwm_studio checkpoint"):
        load_model(tmp_path / "foreign.safetensors")

    run = save_run(tmp_path / "run", model)
    other, _ = _model("hwm", "chain", dissipation="none")
    tensors = {k: v.clone() for k, v in other.state_dict().items()}
    from safetensors import safe_open

    with safe_open(str(run / WEIGHTS), framework="pt") as f:
        meta = f.metadata()
    save_file(tensors, str(run / WEIGHTS), metadata=meta)  # weights of another structure, old config
    with pytest.raises(CheckpointError, match="do not match"):
        load_model(run)

    cfg = json.loads(meta["config"])
    cfg["hidden"] = 8  # same keys, other shapes
    save_file({k: v.clone() for k, v in model.state_dict().items()}, str(run / WEIGHTS),
              metadata={**meta, "config": json.dumps(cfg)})  # fmt: skip
    with pytest.raises(CheckpointError, match="shapes do not match"):
        load_model(run)

    cfg["kind"] = "transformer"
    save_file({"w": torch.zeros(1)}, str(run / WEIGHTS), metadata={**meta, "config": json.dumps(cfg)})
    with pytest.raises(CheckpointError, match="unknown model kind"):  # from the header, before building
        load_model(run)


def test_non_finite_weights_are_refused(tmp_path) -> None:
    model, _ = _model()
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    run = save_run(tmp_path / "run", model)
    with pytest.raises(CheckpointError, match="non-finite"):
        load_model(run)


def test_saving_is_atomic_and_leaves_no_temporaries(tmp_path, monkeypatch) -> None:
    model, _ = _model()
    run = save_run(tmp_path / "run", model)
    before = (run / WEIGHTS).read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("hwm_studio.training.checkpoint.safetensors_bytes", lambda *a, **k: b"x" * 10)
    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(OSError, match="disk full"):
        save_run(run, model)
    monkeypatch.undo()
    assert (run / WEIGHTS).read_bytes() == before
    assert sorted(p.name for p in run.iterdir()) == ["config.json", WEIGHTS]


def test_shared_loads_share_weights_and_graphs_but_not_knobs(tmp_path) -> None:
    """Two callers of one checkpoint (two browser sessions) share its tensors and its traced graphs,
    and each turns its own knobs: each one's rollout equals a private copy's with the same knobs."""
    from hwm_studio.physics.fused import shared_graph_count

    model, data = _model("hwm", dissipation="constant")
    save_run(tmp_path / "run", model)
    a, b = load_shared(tmp_path / "run"), load_shared(tmp_path / "run")
    assert a is not b
    assert all(x is y for x, y in zip(a.parameters(), b.parameters(), strict=True))
    q0, p0 = (torch.as_tensor(x[:1, 0], dtype=torch.float32) for x in (data.q, data.p))
    u = torch.full((1, 40, data.u.shape[2]), 0.3)
    before = shared_graph_count()
    with torch.no_grad():
        qa1 = a.rollout_data(q0, p0, u, 40, fused=True)[0]
        assert shared_graph_count() == before + 1  # a's first rollout traced one graph ...
        b.dissipation_scale = 0.0  # ... b turns its own knob: a keeps 1.0
        qb = b.rollout_data(q0, p0, u, 40, fused=True)[0]
        assert shared_graph_count() == before + 1  # ... and b reused it
        qa2 = a.rollout_data(q0, p0, u, 40, fused=True)[0]
        own = load_model(tmp_path / "run")
        q_own = own.rollout_data(q0, p0, u, 40, fused=True)[0]
        own.dissipation_scale = 0.0
        q_own0 = own.rollout_data(q0, p0, u, 40, fused=True)[0]
    assert a.dissipation_scale == 1.0
    torch.testing.assert_close(qa1, q_own, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(qa2, q_own, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(qb, q_own0, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(qb, qa1)  # the knob mattered, so the equalities above say something
    c = a.own_copy()  # a planner's copy: shares the weights, has its own knobs
    assert next(c.parameters()) is next(a.parameters())
    save_run(tmp_path / "run", model)  # the file rewritten: a new load reads it anew
    d = load_shared(tmp_path / "run")
    assert next(d.parameters()) is not next(a.parameters())
