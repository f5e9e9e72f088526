"""The published protocols, reproduced exactly: data, start points, scoring, with tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hwm_studio.protocols import hnn, real_pendulum, symoden
from hwm_studio.protocols.runs import PROTOCOLS

SHARED = Path(__file__).resolve().parents[2] / "shared"
STARTS = SHARED / "protocols" / "hnn_eval_starts.json"
REAL = real_pendulum.default_path()


@pytest.mark.skipif(not STARTS.exists(), reason=f"{STARTS} is provided beside the project, not in it")
@pytest.mark.parametrize("task", [hnn.SPRING, hnn.PENDULUM])
def test_hnn_start_points_match_the_published_ones(task) -> None:
    published = json.loads(STARTS.read_text())[{"spring": "spring", "pendulum": "pend"}[task.name]]
    ours = hnn.eval_starts(task)
    assert len(ours) == len(published) == 15
    np.testing.assert_allclose(np.stack(ours), np.array([s["x0"] for s in published]), rtol=0, atol=1e-12)


def test_hnn_data_follows_the_protocol() -> None:
    ds, _ = hnn.make_dataset(hnn.SPRING)
    assert ds.x.shape == (50, 30, 2)
    assert ds.n_train == 25
    assert ds.dt == pytest.approx(3 / 29)
    radius = np.sqrt((ds.x**2).sum(-1))  # U(0.1, 1) radii plus N(0, 0.1) noise on q and p
    assert 0.3 < radius.mean() < 0.8
    assert radius.max() < 1.0 + 0.6
    pend, _ = hnn.make_dataset(hnn.PENDULUM)
    assert pend.x.shape == (50, 45, 2)


def test_hnn_scoring_of_the_true_dynamics_is_exact() -> None:
    """The true field scores ~0 on both definitions; a biased field scores worse on both."""
    exact = hnn.energy_scores(hnn.PENDULUM, hnn.integrator(hnn.PENDULUM.field, 1e-10))
    assert exact.honest < 1e-12
    slow = hnn.energy_scores(hnn.PENDULUM, hnn.integrator(lambda y: 0.9 * hnn.PENDULUM.field(y) - 0.02 * y))
    assert slow.honest > 1e-4
    assert slow.original > exact.original


def test_symoden_data_is_seeded_and_follows_the_equations() -> None:
    a = symoden.sample(1.0, 3, 4)
    np.testing.assert_array_equal(a, symoden.sample(1.0, 3, 4))  # one seeded env per control value
    assert not np.allclose(a, symoden.sample(-1.0, 3, 4))
    rng = symoden.gym014_random_state(0)
    first = rng.uniform(low=[-np.pi, -1.0], high=[np.pi, 1.0])
    assert -np.pi <= first[0] <= np.pi
    assert -1 <= first[1] <= 1
    # q'' = 15 sin q + 3 u: from rest at q = pi/2 under u = 1, theta_dot after dt ~ 18 dt
    s = symoden._rhs(0.0, np.array([np.pi / 2, 0.0]), 1.0)
    assert s[1] == pytest.approx(18.0)
    data = symoden.training_data(timesteps=5, samples=4)
    assert data.q.shape == (5 * 2, 5, 1, 1)
    assert sorted(set(data.u[:, 0, 0])) == sorted(symoden.CONTROLS)
    err = symoden.prediction_error(a, symoden.observe(a))
    assert err == 0.0


@pytest.mark.skipif(not REAL.exists(), reason=f"{REAL} is provided beside the project, not in it")
def test_real_pendulum_split_is_by_time() -> None:
    rp = real_pendulum.load()
    t, x = rp.test()
    assert x.shape == (110, 2)
    assert t[0] == 0
    segments = rp.train_segments()
    assert sum(len(s) for s in segments) <= 444
    windows = rp.training_windows()
    assert windows.q.shape[1:] == (12, 1, 1)
    # no training window reaches into the test rows
    test_rows = {tuple(r) for r in rp.x[real_pendulum.TEST_START : real_pendulum.TEST_STOP]}
    train_rows = {tuple(r) for r in np.stack([windows.q[..., 0, 0], windows.p[..., 0, 0]], -1).reshape(-1, 2)}
    assert len(train_rows) > 300
    if STARTS.exists():  # the published start point and evaluation times of this protocol
        published = json.loads(STARTS.read_text())["real"]
        np.testing.assert_allclose(x[0], published["x0"], atol=1e-12)
        np.testing.assert_allclose(t, published["t_eval"], atol=1e-9)
    assert not (test_rows & train_rows)


def test_real_pendulum_bad_path_is_a_clear_error(tmp_path) -> None:
    from hwm_studio.data.format import DataFormatError

    with pytest.raises(DataFormatError, match="no such file"):
        real_pendulum.load(tmp_path / "missing.txt")
    (tmp_path / "bad.txt").write_text("% o v\n1 2 x 4\n")
    with pytest.raises(DataFormatError, match="numeric table"):
        real_pendulum.load(tmp_path / "bad.txt")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "kinds", "extra"),
    [
        ("hnn_spring", ["hwm"], {"n_starts": 2}),  # RK45 on a learned field, four HWM rows
        ("real_pendulum", ["mlp"], {}),  # a discrete map scored by interpolation
        ("long_horizon_pendulum", ["hwm", "mlp"], {"horizon": 50}),
    ],
)
def test_protocols_run_end_to_end_with_a_tiny_budget(name: str, kinds: list[str], extra: dict) -> None:
    """The benchmark's code path at 20 steps: every row carries a finite score and its training time."""
    if name == "real_pendulum" and not REAL.exists():
        pytest.skip(f"{REAL} is provided beside the project, not in it")
    rows = PROTOCOLS[name](kinds=kinds, steps=20, **extra)
    assert {r["model"] for r in rows} >= set(kinds)
    for r in rows:
        assert r["train_seconds"] > 0
        scores = [v for k, v in r.items() if k.startswith(("energy_mse", "prediction_error"))]
        assert scores, r
        assert all(np.isfinite(s) for s in scores), r


def test_the_protocols_script_reports_each_row_over_its_seeds(tmp_path) -> None:
    """Two seeds of a tiny run: every row carries its seed, the table shows mean (min–max), and the
    summary the README pastes is rendered from the same rows."""
    import json
    import subprocess
    import sys

    args = ["--only", "hnn_spring", "--kinds", "mlp", "--steps", "3", "--seeds", "0", "1", "--out", str(tmp_path)]
    res = subprocess.run([sys.executable, "benchmarks/protocols.py", *args], capture_output=True, text=True,
                         timeout=600)  # fmt: skip
    assert res.returncode == 0, res.stderr
    rows = json.loads((tmp_path / "protocols.json").read_text())["rows"]
    assert sorted(r["seed"] for r in rows) == [0, 1]
    table = (tmp_path / "protocols.md").read_text()
    assert "seeds 0, 1: mean (min–max)" in table
    assert "| protocol (lower is better) |" in table  # the summary

    def fmt(x: float) -> str:
        return f"{x:.3g}" if 1e-2 <= abs(x) < 1e4 else f"{x:.2e}"

    lo, hi = sorted(r["energy_mse_original"] for r in rows)
    assert f"| mlp | {fmt((lo + hi) / 2)} ({fmt(lo)}–{fmt(hi)}) |" in table
