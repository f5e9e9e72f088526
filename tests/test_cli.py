"""The hwm-studio command as a user runs it: real subprocesses, real files, exit codes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hwm_studio.data import load_trajectories
from hwm_studio.systems import get_system, system_names


@pytest.mark.parametrize("name", system_names())
def test_simulate_writes_a_valid_file_for_every_system(tmp_path: Path, name: str, run_cli) -> None:
    out = tmp_path / f"{name}.npz"
    res = run_cli(
        "simulate", "--system", name, "--trajectories", "2", "--steps", "20",
        "--control", "random", "--dissipation", "0.05", "--frames", "32", "--seed", "1", "--out", str(out),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    data = load_trajectories(out)
    system = get_system(name)
    assert data.q.shape == (2, 20, system.n_entities, system.dim)
    assert data.u.shape == (2, 20, system.action_dim)
    assert data.frames.shape == (2, 20, 32, 32, 3)
    assert data.meta["system"] == system.name
    assert data.meta["params"] == data.meta["params"]
    assert data.energy.shape == (2, 20)


def test_simulate_is_deterministic_and_honours_options(tmp_path: Path, run_cli) -> None:
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    args = ["simulate", "--system", "spring", "--trajectories", "3", "--steps", "30", "--dt", "0.2",
            "--param", "k=4", "--integrator", "leapfrog", "--seed", "9"]  # fmt: skip
    assert run_cli(*args, "--out", str(a)).returncode == 0
    assert run_cli(*args, "--out", str(b)).returncode == 0
    da, db = load_trajectories(a), load_trajectories(b)
    np.testing.assert_array_equal(da.q, db.q)
    assert da.dt == 0.2
    assert da.meta["params"]["k"] == 4.0
    assert da.u is None
    assert da.frames is None
    # conservative truth: leapfrog's energy error on the oscillator (w = 2, internal h = 0.05) stays
    # within about (w h)^2 / 4 = 2.5e-3 relative, and does not drift
    rel = np.abs(da.energy - da.energy[:, :1]).max(axis=1) / da.energy[:, 0]
    assert rel.max() < 3e-3


def test_inspect_summarises_a_valid_file(tmp_path: Path, run_cli) -> None:
    out = tmp_path / "chain.npz"
    assert (
        run_cli("simulate", "--system", "chain", "--trajectories", "2", "--steps", "10", "--out", str(out)).returncode
        == 0
    )
    res = run_cli("inspect", str(out))
    assert res.returncode == 0, res.stderr
    assert "valid trajectory file" in res.stdout
    assert "system        chain" in res.stdout
    assert "entities      4 x dim 1" in res.stdout
    assert "energy        mean" in res.stdout


def test_inspect_rejects_a_bad_file_with_one_line_and_nonzero_status(tmp_path: Path, run_cli) -> None:
    bad = tmp_path / "bad.npz"
    np.savez(bad, q=np.zeros((2, 5, 1, 1)), p=np.zeros((2, 5, 1, 1)), dt=-1.0)
    res = run_cli("inspect", str(bad))
    assert res.returncode != 0
    assert res.stderr.strip() == f"hwm-studio: error: {bad}: 'dt' must be finite and > 0, got -1.0"
    assert "Traceback" not in res.stderr


def test_simulate_rejects_bad_options_without_a_traceback(tmp_path: Path, run_cli) -> None:
    res = run_cli("simulate", "--system", "pendulum", "--param", "g=-3", "--out", str(tmp_path / "x.npz"))
    assert res.returncode == 1
    assert "parameter 'g'" in res.stderr
    assert "Traceback" not in res.stderr
    res = run_cli("simulate", "--system", "pendulum", "--out", str(tmp_path / "x.txt"))
    assert res.returncode == 1
    assert "must end in .npz" in res.stderr
    res = run_cli("simulate", "--system", "warp_drive", "--out", str(tmp_path / "x.npz"))
    assert res.returncode == 2
    assert "invalid choice" in res.stderr
    assert not list(tmp_path.iterdir())
