"""The trajectory .npz format: round trip, every rejection path, atomic saving."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from hwm_studio.data import DataFormatError, TrajectoryData, load_trajectories, save_trajectories, simulate
from hwm_studio.systems import get_system


@pytest.fixture(scope="module")
def sample() -> TrajectoryData:
    return simulate(get_system("pendulum"), n_trajectories=3, n_times=12, control="random", frame_size=16, seed=3)


def _write_raw(path: Path, **arrays: object) -> Path:
    np.savez(path, **arrays)
    return path


def _arrays(data: TrajectoryData) -> dict[str, object]:
    out: dict[str, object] = {"q": data.q, "p": data.p, "dt": np.asarray(data.dt)}
    for k in ("u", "frames", "energy"):
        if getattr(data, k) is not None:
            out[k] = getattr(data, k)
    out["meta"] = np.asarray(json.dumps(data.meta))
    return out


def test_round_trip_keeps_every_array_and_the_meta(tmp_path: Path, sample: TrajectoryData) -> None:
    path = save_trajectories(sample, tmp_path / "traj.npz")
    back = load_trajectories(path)
    for k in ("q", "p", "u", "frames", "energy"):
        np.testing.assert_array_equal(getattr(back, k), getattr(sample, k))
    assert back.dt == sample.dt
    assert back.meta == sample.meta
    assert back.meta["params"] == {"m": 1.0, "l": 1.0, "g": 9.81}


def test_simulated_energy_is_the_true_hamiltonian(sample: TrajectoryData) -> None:
    h = sample.p[..., 0, 0] ** 2 / 2 + 9.81 * (1 - np.cos(sample.q[..., 0, 0]))
    np.testing.assert_allclose(sample.energy, h, rtol=1e-12)


def test_minimal_file_needs_only_q_p_dt(tmp_path: Path) -> None:
    q = np.zeros((2, 5, 1, 2))
    data = load_trajectories(_write_raw(tmp_path / "m.npz", q=q, p=q, dt=0.1))
    assert data.u is None
    assert data.meta is None
    assert data.system_name is None


def _variant(sample: TrajectoryData, **changes: object) -> dict[str, object]:
    arrays = _arrays(sample)
    for k, v in changes.items():
        if v is None:
            arrays.pop(k)
        else:
            arrays[k] = v
    return arrays


BAD_CASES = {
    "missing q": ({"q": None}, "missing required array"),
    "missing dt": ({"dt": None}, r"missing required array\(s\) dt"),
    "q wrong rank": ({"q": np.zeros((3, 12, 1))}, r"'q' must have shape \(N, T, E, D\)"),
    "p shape mismatch": ({"p": np.zeros((3, 12, 2, 1))}, "'p' must have the same shape"),
    "integer q": ({"q": np.zeros((3, 12, 1, 1), dtype=np.int64)}, "'q' must be a float array"),
    "nan in p": ({"p": np.full((3, 12, 1, 1), np.nan)}, "'p' contains 36 NaN"),
    "inf in u": ({"u": np.full((3, 12, 1), np.inf)}, "'u' contains 36 NaN or infinite"),
    "u wrong T": ({"u": np.zeros((3, 11, 1))}, r"'u' must have shape \(N, T, A\) = \(3, 12, A\)"),
    "zero dt": ({"dt": np.asarray(0.0)}, "'dt' must be finite and > 0"),
    "negative dt": ({"dt": np.asarray(-0.1)}, "'dt' must be finite and > 0"),
    "dt array": ({"dt": np.array([0.1, 0.2])}, "'dt' must be one number"),
    "frames float": ({"frames": np.zeros((3, 12, 16, 16, 3))}, "'frames' must be a uint8 array"),
    "frames 4 channels": ({"frames": np.zeros((3, 12, 16, 16, 4), np.uint8)}, r"'frames' must have shape"),
    "energy wrong shape": ({"energy": np.zeros((3, 11))}, r"'energy' must have shape \(N, T\)"),
    "meta not json": ({"meta": np.asarray("{not json")}, "'meta' is not valid JSON"),
    "meta entities wrong": ({"meta": np.asarray(json.dumps({"entities": ["a", "b"]}))}, "must list 1 entity names"),
    "meta wrong system shape": (
        {"meta": np.asarray(json.dumps({"system": "chain", "params": {}, "entities": ["a"]}))},
        "names system 'chain'",
    ),
    "meta bad param": (
        {"meta": np.asarray(json.dumps({"system": "pendulum", "params": {"m": -2}, "entities": ["a"]}))},
        "bad parameters",
    ),
    "one time point": ({"q": np.zeros((3, 1, 1, 1)), "p": np.zeros((3, 1, 1, 1))}, "T >= 2"),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_every_rejection_names_the_file_and_the_problem(tmp_path: Path, sample: TrajectoryData, case: str) -> None:
    changes, message = BAD_CASES[case]
    if case == "one time point":
        arrays = {"q": changes["q"], "p": changes["p"], "dt": np.asarray(0.1)}
    else:
        arrays = _variant(sample, **changes)
    path = _write_raw(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataFormatError, match=message) as err:
        load_trajectories(path)
    assert str(path) in str(err.value)


def test_not_a_zip_truncated_pickled_and_missing_files_are_rejected(tmp_path: Path, sample: TrajectoryData) -> None:
    text = tmp_path / "text.npz"
    text.write_text("hello")
    with pytest.raises(DataFormatError, match=r"not an \.npz archive"):
        load_trajectories(text)
    good = save_trajectories(sample, tmp_path / "good.npz")
    truncated = tmp_path / "trunc.npz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DataFormatError):
        load_trajectories(truncated)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, q=np.array([{"x": 1}], dtype=object), p=sample.p, dt=0.1)
    with pytest.raises(DataFormatError, match="never unpickled"):
        load_trajectories(pickled)
    with pytest.raises(DataFormatError, match="no such file"):
        load_trajectories(tmp_path / "absent.npz")


def test_save_is_atomic_and_keeps_the_old_file_on_failure(tmp_path: Path, sample: TrajectoryData) -> None:
    path = save_trajectories(sample, tmp_path / "keep.npz")
    before = path.read_bytes()

    class Boom(RuntimeError):
        pass

    bad = TrajectoryData(q=sample.q, p=sample.p, dt=sample.dt)
    original = np.savez_compressed

    def exploding(*args: object, **kwargs: object) -> None:
        raise Boom

    np.savez_compressed = exploding  # type: ignore[assignment]
    try:
        with pytest.raises(Boom):
            save_trajectories(bad, path)
    finally:
        np.savez_compressed = original  # type: ignore[assignment]
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.npz"], "no temp file left behind"
    assert zipfile.is_zipfile(path)


def test_constructing_invalid_data_in_memory_fails_too(sample: TrajectoryData) -> None:
    with pytest.raises(DataFormatError, match="'q' contains"):
        TrajectoryData(q=np.full_like(sample.q, np.nan), p=sample.p, dt=0.1)


def test_select_and_window(sample: TrajectoryData) -> None:
    sub = sample.select([0, 2]).window(2, 7)
    assert sub.q.shape == (2, 5, 1, 1)
    assert sub.u.shape == (2, 5, 1)
    assert sub.frames.shape[:2] == (2, 5)
