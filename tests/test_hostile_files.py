"""Issue 16: a generated corpus of broken and hostile files through every door a user has (the CLI's
inspect, train, eval and render, and the studio's file picker): each is refused with one clear
line, none escapes as a traceback, no payload is ever unpickled, nothing is allocated that a file
merely declares; and a file whose meta names only its system is fine."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import hostile

from hwm_studio.cli import main
from hwm_studio.data.format import DataFormatError, load_trajectories, save_trajectories
from hwm_studio.pretrained import run_dir

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    folder = tmp_path_factory.mktemp("hostile")
    return folder, hostile.write_corpus(folder)


def _cli(*args: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(list(args))  # an exception escaping here fails the test: that is a traceback
    return code, err.getvalue()


def test_the_corpus_is_large_and_every_file_is_refused_by_the_reader(corpus) -> None:
    folder, paths = corpus
    assert len(paths) >= 50
    for name, path in paths.items():
        with pytest.raises(DataFormatError) as err:
            load_trajectories(path)
        assert str(path) in str(err.value), name
    assert not hostile.unpickled(folder)


@pytest.mark.parametrize("command", ["inspect", "train", "eval", "render"])
def test_every_cli_door_refuses_every_file_in_one_line(corpus, tmp_path, command: str) -> None:
    folder, paths = corpus
    run = str(run_dir("pendulum", "hwm"))
    for name, path in paths.items():
        args = {
            "inspect": ["inspect", str(path)],
            "train": ["train", "--data", str(path), "--steps", "1", "--out", str(tmp_path / "run")],
            "eval": ["eval", run, "--data", str(path)],
            "render": ["render", run, "--data", str(path), "--out", str(tmp_path / "out.gif")],
        }[command]
        code, err = _cli(*args)
        assert code != 0, f"{name}: accepted by {command}"
        lines = err.strip().splitlines()
        assert lines, f"{name}: no message"
        assert lines[-1].startswith("hwm-studio: error:"), f"{name}: {err}"
        assert "Traceback" not in err, name
    assert not (tmp_path / "run").exists()  # nothing half-written
    assert not hostile.unpickled(folder)


def test_the_studios_file_picker_refuses_every_file_and_keeps_working(corpus, tmp_path) -> None:
    pytest.importorskip("panel")
    from hwm_studio.ui.train import TrainPanel, TrainSource
    from hwm_studio.workspace import Workspace

    folder, paths = corpus
    ws = Workspace(tmp_path / "ws")
    for path in paths.values():
        shutil.copy(path, ws.root / path.name)
    panel = TrainPanel(lambda: TrainSource("pendulum", 0), ws)
    panel.refresh_sources()
    offered = set(panel.sources())
    for name, path in paths.items():
        assert path.name in offered, name
        panel.data.value = path.name
        panel.start()
        assert panel.job is None, f"{name}: a run started"
        assert "Cannot train on this data" in panel.status.object, name
    assert not hostile.unpickled(folder)
    panel.close()


def test_meta_keys_are_all_optional_and_extra_keys_are_kept(tmp_path) -> None:
    """A user's own system needs no parameters or entity names (issue 16); extra keys survive."""
    q = np.random.default_rng(0).normal(size=(2, 5, 3, 2))
    path = tmp_path / "robot.npz"
    np.savez(path, q=q, p=q, dt=np.asarray(0.05), meta=np.asarray(json.dumps({"system": "my_robot", "lab": "b12"})))
    data = load_trajectories(path)
    assert data.system_name == "my_robot"
    assert data.system_params == {}
    assert data.meta["lab"] == "b12"
    save_trajectories(data, tmp_path / "again.npz")
    assert load_trajectories(tmp_path / "again.npz").meta == {"system": "my_robot", "lab": "b12"}
    np.savez(tmp_path / "bare.npz", q=q, p=q, dt=np.asarray(0.05), meta=np.asarray("{}"))
    assert load_trajectories(tmp_path / "bare.npz").system_name is None
    code, err = _cli("inspect", str(path))
    assert code == 0, err


def test_a_declared_size_is_checked_before_anything_is_allocated(tmp_path, monkeypatch) -> None:
    """A header claiming 80 TB is refused from its few hundred bytes, and a real array over the
    limit is refused from its zip entry's size, before numpy reads it."""
    import hwm_studio.data.format as fmt

    folder = tmp_path / "c"
    blob = hostile.cases(folder)["huge declared shape in q"]
    path = tmp_path / "huge.npz"
    path.write_bytes(blob)
    monkeypatch.setattr(np, "load", lambda *a, **k: pytest.fail("np.load reached"))
    with pytest.raises(DataFormatError, match="declares shape"):
        load_trajectories(path)
    monkeypatch.undo()
    q = np.zeros((4, 100, 2, 2))
    np.savez(tmp_path / "big.npz", q=q, p=q, dt=np.asarray(0.1))
    monkeypatch.setattr(fmt, "MAX_DATA_BYTES", q.nbytes)
    with pytest.raises(DataFormatError, match="limit"):
        load_trajectories(tmp_path / "big.npz")
