"""`hwm-studio train` and `eval` as a user runs them: subprocesses, real files, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hwm_studio.data import load_trajectories


@pytest.fixture(scope="module")
def trained(tmp_path_factory, run_cli) -> tuple[Path, Path]:
    """One short HWM run on simulated pendulum data, and a test file with recorded actions."""
    root = tmp_path_factory.mktemp("cli")
    test = root / "test.npz"
    res = run_cli("simulate", "--system", "pendulum", "--trajectories", "3", "--steps", "60",
                  "--control", "random", "--seed", "7", "--out", str(test))  # fmt: skip
    assert res.returncode == 0, res.stderr
    run = root / "run"
    res = run_cli("train", "--system", "pendulum", "--model", "hwm", "--steps", "60", "--horizon", "4",
                  "--trajectories", "16", "--points", "30", "--seed", "1", "--out", str(run))  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "completed: 60 steps" in res.stdout
    assert "train hwm" in res.stderr  # the tqdm bar
    return run, test


def test_train_writes_a_complete_run_directory(trained) -> None:
    run, _ = trained
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "metrics.json", "weights.safetensors"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "completed"
    assert metrics["steps_done"] == 60
    assert metrics["history"]
    assert {"loss", "step", "horizon"} <= set(metrics["history"][-1])
    assert set(metrics["val_eval"]) >= {"rollout_mse", "vpt", "energy_mse", "mse_at", "power"}
    # the CLI's default structure is chosen from held-out data, and the choice and its evidence kept
    structure = json.loads((run / "config.json").read_text())["structure"]
    assert set(structure["kept"]) | set(structure["removed"]) == {"friction", "residual"}
    assert {"mean", "standard_error", "dissipative"} <= set(structure["energy_balance"])


def test_eval_prints_one_json_object_and_saves_predictions(trained, tmp_path, run_cli) -> None:
    run, test = trained
    pred_path = tmp_path / "pred.npz"
    res = run_cli("eval", str(run), "--data", str(test), "--json", "--predictions", str(pred_path))
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["model"] == "hwm"
    assert out["horizon"] == 59
    assert set(out["mse_at"]) == {"1", "10", "H"}  # 100 is not reachable in 59 steps
    assert 0 < out["mse_at"]["1"] < out["mse_at"]["H"]
    assert 0 < out["vpt"] <= 59
    assert out["energy_mse"] is not None
    assert out["rollout_mse"] > 0
    pred = load_trajectories(pred_path)
    data = load_trajectories(test)
    assert pred.q.shape == data.q.shape
    assert pred.dt == data.dt
    np.testing.assert_allclose(pred.q[:, 0], data.q[:, 0], atol=1e-5)  # rolled out from the first state
    # the JSON metrics are those of the saved predictions
    mse = np.mean(np.concatenate([(pred.q - data.q) ** 2, (pred.p - data.p) ** 2], axis=-1)[:, 1:])
    assert out["rollout_mse"] == pytest.approx(float(mse), rel=1e-3)

    res = run_cli("eval", str(run), "--data", str(test), "--json", "--horizon", "10")
    assert json.loads(res.stdout)["horizon"] == 10


def test_eval_of_an_unknown_system_reports_null_energy(trained, tmp_path, run_cli) -> None:
    run, test = trained
    data = load_trajectories(test)
    arrays = {"q": data.q, "p": data.p, "dt": np.float64(data.dt), "u": data.u}
    np.savez(tmp_path / "anon.npz", **arrays)
    res = run_cli("eval", str(run), "--data", str(tmp_path / "anon.npz"), "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["energy_mse"] is None


def _bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    rng = np.random.default_rng(0)
    q, p = rng.normal(size=(4, 20, 1, 1)), rng.normal(size=(4, 20, 1, 1))
    u = rng.normal(size=(4, 20, 1))
    cases = {
        "nan": ({"q": np.where(np.arange(20)[None, :, None, None] == 5, np.nan, q), "p": p, "dt": 0.1}, "NaN"),
        "rank": ({"q": q[..., 0], "p": p[..., 0], "dt": 0.1}, "4"),
        "u_T": ({"q": q, "p": p, "dt": 0.1, "u": u[:, :15]}, "u"),
        "no_dt": ({"q": q, "p": p}, "dt"),
    }
    out = {}
    for name, (arrays, hint) in cases.items():
        path = tmp_path / f"{name}.npz"
        np.savez(path, **arrays)
        out[name] = (path, hint)
    (tmp_path / "not_npz.npz").write_text("hello")
    out["not_npz"] = (tmp_path / "not_npz.npz", "npz")
    return out


def test_bad_training_data_exits_with_one_message_and_loses_nothing(trained, tmp_path, run_cli) -> None:
    run, _ = trained
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    for name, (path, hint) in _bad_files(tmp_path).items():
        res = run_cli("train", "--data", str(path), "--steps", "5", "--out", str(run))
        assert res.returncode == 1, (name, res.stderr)
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1, (name, res.stderr)
        assert lines[0].startswith("hwm-studio: error:"), (name, res.stderr)
        assert hint in lines[0], (name, lines[0])
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_bad_options_and_checkpoints_are_user_errors(trained, tmp_path, run_cli) -> None:
    run, test = trained
    cases = [
        (("train", "--system", "pendulum", "--steps", "0", "--out", str(tmp_path / "r")), "--steps"),
        (("train", "--system", "pendulum", "--device", "cuda:7", "--out", str(tmp_path / "r")), "cuda"),
        (("train", "--system", "pendulum", "--out", str(test)), "not a directory"),
        (
            ("train", "--system", "pendulum", "--model", "mlp", "--structure", "auto", "--out", str(tmp_path / "r")),
            "--structure applies to the hwm",
        ),
        (("eval", str(tmp_path / "missing"), "--data", str(test)), "no such checkpoint"),
        (("eval", str(run), "--data", str(test), "--predictions", str(tmp_path / "x.txt")), ".npz"),
    ]
    for args, hint in cases:
        res = run_cli(*args)
        assert res.returncode == 1, (args, res.stderr)
        assert "hwm-studio: error:" in res.stderr, (args, res.stderr)
        assert hint in res.stderr, (args, res.stderr)
        assert "Traceback" not in res.stderr
    assert not (tmp_path / "r").exists()
    other = tmp_path / "chain.npz"
    run_cli("simulate", "--system", "chain", "--trajectories", "1", "--steps", "5", "--out", str(other))
    res = run_cli("eval", str(run), "--data", str(other))
    assert res.returncode == 1, res.stderr
    assert "hwm-studio: error:" in res.stderr, res.stderr
