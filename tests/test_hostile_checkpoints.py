"""Issue 16 item 3: a generated corpus of hostile checkpoints (tests/hostile_checkpoints.py) through
every door that loads one (load_model, the CLI's eval, render and plan, the studio's model list):
each is refused with one clear line naming the file, none escapes as a traceback, no pickle is
ever run, and nothing is built or read that the header alone condemns. And saves killed at random
instants always leave one complete checkpoint, its JSON companions of the same save."""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import hostile_checkpoints as hc

import hwm_studio.training.checkpoint as ckpt
from hwm_studio.cli import main
from hwm_studio.data.simulate import simulate
from hwm_studio.io import STALE_TEMP_S
from hwm_studio.systems import get_system
from hwm_studio.training.checkpoint import WEIGHTS, CheckpointError, load_metrics, load_model, read_config, save_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict[str, Path], dict[str, str]]:
    """(runs folder, name -> run directory, name -> stage), made inside a workspace's runs/."""
    root = tmp_path_factory.mktemp("hostile_ckpt")
    base = hc.make_base(root)
    runs = root / "ws" / "runs"
    return runs, hc.write_corpus(runs, base), hc.stages(runs, base)


def _cli(*args: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(list(args))  # an exception escaping here fails the test: that is a traceback
    return code, err.getvalue()


def test_every_hostile_checkpoint_is_refused_in_one_line_naming_the_file(corpus) -> None:
    runs, paths, stages = corpus
    assert len(paths) >= 60
    assert set(stages.values()) == {"header", "model", "weights"}
    for name, run in paths.items():
        with pytest.raises(CheckpointError) as err:
            load_model(run)
        message = str(err.value)
        assert str(run) in message, name
        assert "\n" not in message, name
        assert len(message) < 800, (name, message[:200])
    assert not hc.unpickled(runs)


def test_what_the_header_condemns_is_refused_before_a_model_is_built_or_a_byte_read(corpus, monkeypatch) -> None:
    """Each stage refuses before the next can allocate: nothing is built for a case the file's
    header condemns, and no tensor byte is read for one its model condemns."""
    _, paths, stages = corpus
    reached: list[str] = []
    build, read = ckpt.build_model, ckpt._load_tensors

    def spy(step: str, real):
        def wrapped(*args, **kwargs):
            reached.append(step)
            return real(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(ckpt, "build_model", spy("build", build))
    monkeypatch.setattr(ckpt, "_load_tensors", spy("read", read))
    for name, run in paths.items():
        reached.clear()
        with pytest.raises(CheckpointError):
            load_model(run)
        allowed = {"header": [], "model": ["build"], "weights": ["build", "read"]}[stages[name]]
        assert reached == allowed, (name, reached)
    for name in [n for n, s in stages.items() if s == "header"]:  # the studio's model list reads headers only
        reached.clear()
        with pytest.raises(CheckpointError):
            read_config(paths[name])
        assert reached == [], name


def test_declared_sizes_are_never_allocated(corpus, monkeypatch) -> None:
    """Headers declaring 200 MB or 2**63 bytes of header, 4 TB tensors, a config asking for
    gigabytes in bounds: Python's peak stays small, torch's budget refuses the big model early,
    and the process's peak memory barely moves."""
    _, paths, _ = corpus
    declared = ["declared 200 MB header", "declared 2**63 header", "actual 17 MB header",
                "shape of 10**12 over a few bytes", "offsets far beyond the file", "config hidden = 10**9",
                "config n_entities = 10**6", "a file over the 2 GB limit",
                "config of a far larger model (in bounds)"]  # fmt: skip
    peaks: list[int] = []

    class Recording(ckpt._AllocationBudget):
        def __exit__(self, *exc):
            peaks.append(self.used)
            return super().__exit__(*exc)

    monkeypatch.setattr(ckpt, "_AllocationBudget", Recording)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux
    for name in declared:
        tracemalloc.start()
        with pytest.raises(CheckpointError):
            load_model(paths[name])
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak < 2 << 20, (name, peak)
    assert len(peaks) == 1, peaks  # only the in-bounds giant reaches a build ...
    assert peaks[0] < 80 << 20, peaks  # ... and is stopped at its budget
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    assert grown < 200_000, f"peak memory grew by {grown} kB"


@pytest.mark.parametrize("command", ["eval", "render", "plan"])
def test_every_cli_door_refuses_every_checkpoint_in_one_line(corpus, tmp_path, command: str) -> None:
    runs, paths, _ = corpus
    data = tmp_path / "test.npz"
    code, err = _cli("simulate", "--system", "pendulum", "--trajectories", "1", "--steps", "8", "--out", str(data))
    assert code == 0, err
    for name, run in paths.items():
        args = {
            "eval": ["eval", str(run), "--data", str(data)],
            "render": ["render", str(run), "--data", str(data), "--out", str(tmp_path / "out.gif")],
            "plan": ["plan", str(run), "--env", "Pendulum-v1", "--episodes", "1", "--steps", "2"],
        }[command]
        code, err = _cli(*args)
        assert code == 1, f"{name}: {command} exited {code}"
        lines = err.strip().splitlines()
        assert len(lines) == 1, f"{name}: {err}"
        assert lines[0].startswith("hwm-studio: error:"), f"{name}: {err}"
        assert str(run) in lines[0], name
    assert not (tmp_path / "out.gif").exists()
    assert not hc.unpickled(runs)


def test_the_studio_lists_what_it_can_read_says_what_it_cannot_and_keeps_working(corpus) -> None:
    pytest.importorskip("panel")
    from hwm_studio.ui.studio import Studio
    from hwm_studio.workspace import Workspace

    runs, paths, stages = corpus
    studio = Studio(workspace=Workspace(runs.parent), show_3d=False)
    session = studio.session
    listed = {o[5:] for o in session.param.model_name.objects if o.startswith("run: ")}
    _, unreadable = session.workspace_runs()
    for name, run in paths.items():  # a header that reads is offered (loading it then says why not) ...
        if stages[name] == "header":  # ... one that does not is named with its reason
            assert run.name not in listed, name
            assert "\n" not in unreadable[run.name], name
            assert unreadable[run.name].startswith(f"runs/{run.name}/"), (name, unreadable[run.name])
        else:
            assert run.name in listed, name
    assert session.notice.startswith(f"**{len(unreadable)} workspace run(s) cannot be read:** `bad000`: runs/bad000/")
    assert session.notice.endswith(f"; and {len(unreadable) - 3} more")
    assert "\n" not in session.notice
    for name in sorted(listed):
        session.model_name = f"run: {name}"
        assert session.status.startswith("**Could not load the model:**"), (name, session.status)
        assert name in session.status
    session.model_name = "hwm"  # still alive: the pretrained model loads and rolls out
    assert session.model is not None
    assert session.result is not None
    assert not hc.unpickled(runs)
    studio.close()


def test_saves_killed_at_random_instants_leave_one_complete_save(tmp_path) -> None:
    counts = hc.kill_saves(tmp_path, kills=50, seed=0)
    assert counts["problems"] == []
    assert counts["kills"] == counts["loadable"] == counts["exact"] == counts["consistent_after_load"] == 50
    assert counts["changed_since_last_kill"] >= 25  # the kills fell during a stream of saves, not before it
    assert counts["seconds"] < 60


def test_a_save_interrupted_after_its_commit_is_rolled_forward(tmp_path, monkeypatch) -> None:
    """The instant between the weights' rename and their companions': the weights are the new
    save's; the next load renames the companions of that save into place (roll forward), and a
    save_metrics meanwhile is never overwritten by an older pending one."""
    a, b = hc.two_models()
    run = save_run(tmp_path / "run", a, metrics={"save": 1})
    real = os.replace
    calls = []

    def interrupted(src, dst):
        calls.append(dst)
        if Path(dst).name in ("config.json", "metrics.json"):
            raise KeyboardInterrupt  # as Ctrl-C would, between the commit and the companions
        return real(src, dst)

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_run(run, b, metrics={"save": 2})
    monkeypatch.undo()
    assert read_config(run) == b.config  # committed
    assert json.loads((run / "config.json").read_text())["kind"] == a.kind  # not yet renamed
    assert len(list(run.glob(".*.pending"))) == 2
    loaded = load_model(run)  # rolls the save forward
    assert loaded.config == b.config
    assert json.loads((run / "config.json").read_text())["kind"] == b.kind
    assert load_metrics(run) == {"save": 2}
    assert not list(run.glob(".*.pending"))

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_run(run, a, metrics={"save": 3})
    monkeypatch.undo()
    ckpt.save_metrics(run, {"save": "newer"})  # rolls forward first, then writes
    load_model(run)
    assert load_metrics(run) == {"save": "newer"}


def test_a_save_that_fails_before_its_commit_changes_nothing_and_stale_temps_go(tmp_path, monkeypatch) -> None:
    a, b = hc.two_models()
    run = save_run(tmp_path / "run", a, metrics={"save": 1})
    before = {p.name: p.read_bytes() for p in run.iterdir()}

    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space"):
        save_run(run, b, metrics={"save": 2})
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before  # nothing half-written, nothing left
    old = time.time() - STALE_TEMP_S - 60
    for litter in (".weights.safetensors.x1.tmp", ".config.json.deadbeef.pending", ".metrics.json.0ff1ce.pending"):
        (run / litter).write_bytes(b"killed mid-write")
        os.utime(run / litter, (old, old))
    (run / ".weights.safetensors.young.tmp").write_bytes(b"a live write's")
    save_run(run, b, metrics={"save": 2})
    assert sorted(p.name for p in run.iterdir()) == [".weights.safetensors.young.tmp", "config.json",
                                                      "metrics.json", WEIGHTS]  # fmt: skip


def test_the_budget_refuses_no_real_model(tmp_path) -> None:
    """Every state kind at the largest hidden size the shipped models use loads under its budget."""
    data = simulate(get_system("chain"), 2, 6, control="random", seed=0)
    from hwm_studio.models import STATE_MODELS, build_model, config_from_data

    for kind in STATE_MODELS:
        model = build_model(config_from_data(data, kind, hidden=128, depth=3))
        save_run(tmp_path / kind, model)
        loaded = load_model(tmp_path / kind)
        assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())


def test_a_hostile_metrics_json_is_refused_in_one_line(tmp_path) -> None:
    a, _ = hc.two_models()
    run = save_run(tmp_path / "run", a, metrics={"save": 1})
    metrics = run / "metrics.json"
    for make, says in [
        (lambda: metrics.write_text("[1, 2]"), "not a JSON object"),
        (lambda: metrics.write_text("{not json"), "not valid JSON"),
        (lambda: metrics.write_bytes(b'{"\xff": 1}'), "not valid JSON"),
        (lambda: metrics.write_text("[" * 100000 + "]" * 100000), "not valid JSON"),
        (lambda: metrics.mkdir(), "not a regular file"),
        (lambda: os.mkfifo(metrics), "not a regular file"),  # reading it would block
    ]:
        if metrics.is_dir():
            metrics.rmdir()
        else:
            metrics.unlink(missing_ok=True)
        make()
        with pytest.raises(CheckpointError, match=says) as err:
            load_metrics(run)
        assert "\n" not in str(err.value)
        assert str(metrics) in str(err.value)
    load_model(run)  # the weights never depended on it
