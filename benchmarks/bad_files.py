"""Bad files, counted (issue 16): every hostile data file and checkpoint through every door, and saves
killed at random instants.

    python benchmarks/bad_files.py               # everything, 50 kills (~2 min on 2 cores)
    python benchmarks/bad_files.py --kills 200

Data files (tests/hostile.py) go through the CLI's `inspect`, `train --data`, `eval RUN --data` and
`render RUN --data` (in process, as `main()`), and the studio's Train tab (its file picker, and
its upload: refused with a message, nothing left in the workspace).
Checkpoints (tests/hostile_checkpoints.py, made from a real small run) go through `load_model`,
the CLI's `eval`, `render` and `plan`, and the studio's model list (a workspace whose runs/ holds
the corpus: each run is either not offered with its reason in the notice, or offered and refused
with a status message when picked).

Per door: `tried`; `refused_cleanly` (the CLI: exit 1 and exactly one `hwm-studio: error:` line;
load_model: a CheckpointError naming the file, on one line; the studio: its message); `accepted`
(must be 0); `tracebacks` (an exception escaping main(), or anything but CheckpointError from
load_model; must be 0); `unpickled` (whether any payload's marker file appeared; must be 0). For
load_model also `refused_before_building` / `refused_before_reading`: of the cases the header
alone condemns, how many were refused before a model was built, and of those its model condemns,
before a tensor byte was read. The kill count: a child saving two models alternately is SIGKILLed
after random (seeded) delays; after each kill, whether `load_model` loads it, bit for bit one of
the two, and whether config.json and metrics.json describe the same save (before the load: the
kill fell between renames, the load rolls them forward).
Writes benchmarks/results/bad_files.json.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import hostile
import hostile_checkpoints

from hwm_studio.cli import main
from hwm_studio.io import atomic_write_text

OUT = Path(__file__).resolve().parent / "results" / "bad_files.json"


def _door() -> dict[str, int]:
    return {"tried": 0, "refused_cleanly": 0, "accepted": 0, "tracebacks": 0, "unclear": 0}


def cli(args: list[str]) -> tuple[str, str]:
    """('refused' | 'accepted' | 'traceback' | 'unclear', what it said) for one `hwm-studio ARGS`."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(args)
    except BaseException as exc:  # anything escaping main is a traceback for a user
        return "traceback", f"{type(exc).__name__}: {exc}"
    said = [line for line in err.getvalue().splitlines() if line.startswith("hwm-studio")]
    if code == 0:
        return "accepted", ""
    if code == 1 and len(said) == 1 and said[0].startswith("hwm-studio: error:"):
        return "refused", said[0]
    return "unclear", f"exit {code}: {err.getvalue()[-300:]}"


def count(door: dict[str, int], outcome: str, name: str, said: str, examples: dict[str, str]) -> None:
    door["tried"] += 1
    key = {"refused": "refused_cleanly", "accepted": "accepted", "traceback": "tracebacks"}.get(outcome, "unclear")
    door[key] += 1
    if key != "refused_cleanly":
        examples[name] = f"{outcome}: {said}"


def data_files(root: Path) -> dict[str, Any]:
    from hwm_studio.pretrained import run_dir

    folder = root / "data"
    paths = hostile.write_corpus(folder)
    run = str(run_dir("pendulum", "hwm"))
    doors: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for door, make in {
        "inspect": lambda p: ["inspect", str(p)],
        "train": lambda p: ["train", "--data", str(p), "--steps", "1", "--out", str(root / "never")],
        "eval": lambda p: ["eval", run, "--data", str(p)],
        "render": lambda p: ["render", run, "--data", str(p), "--out", str(root / "never.gif")],
    }.items():
        doors[door] = _door()
        for name, path in paths.items():
            outcome, said = cli(make(path))
            count(doors[door], outcome, f"{door}: {name}", said, problems)
    doors["studio train tab"] = _studio_picker(root, paths, problems)
    doors["studio upload"] = _studio_upload(root, paths, problems)
    written = (root / "never").exists() or (root / "never.gif").exists()
    return {"files": len(paths), "doors": doors, "unpickled": int(hostile.unpickled(folder)),
            "anything_written": written, "problems": problems}  # fmt: skip


def _studio_upload(root: Path, paths: dict[str, Path], problems: dict[str, str]) -> dict[str, int]:
    """Each file uploaded through the Train tab's file input: refused with a message, nothing left."""
    from hwm_studio.ui.train import TrainPanel, TrainSource
    from hwm_studio.workspace import Workspace

    ws = Workspace(root / "ws_upload")
    panel = TrainPanel(lambda: TrainSource("pendulum", 0), ws)
    door = _door()
    for name, path in paths.items():
        try:
            panel.upload.param.update(filename=f"up_{path.name}", value=path.read_bytes() or b"\0")
        except Exception as exc:
            count(door, "traceback", f"upload: {name}", f"{type(exc).__name__}: {exc}", problems)
            continue
        left = sorted(p.name for p in ws.root.iterdir() if p.name != "runs")
        ok = panel.status.object.startswith("**Upload refused:**") and not left
        count(door, "refused" if ok else "accepted", f"upload: {name}", f"{panel.status.object} {left}", problems)
    panel.close()
    return door


def _studio_picker(root: Path, paths: dict[str, Path], problems: dict[str, str]) -> dict[str, int]:
    import shutil

    from hwm_studio.ui.train import TrainPanel, TrainSource
    from hwm_studio.workspace import Workspace

    ws = Workspace(root / "ws_data")
    for path in paths.values():
        shutil.copy(path, ws.root / path.name)
    panel = TrainPanel(lambda: TrainSource("pendulum", 0), ws)
    panel.refresh_sources()
    door = _door()
    for name, path in paths.items():
        panel.data.value = path.name
        try:
            panel.start()
        except Exception as exc:
            count(door, "traceback", f"studio: {name}", f"{type(exc).__name__}: {exc}", problems)
            continue
        ok = panel.job is None and panel.status.object.startswith("**Cannot train on this data:**")
        count(door, "refused" if ok else "accepted", f"studio: {name}", panel.status.object, problems)
        panel.job = None
    panel.close()
    return door


def checkpoints(root: Path) -> dict[str, Any]:
    import hwm_studio.training.checkpoint as ckpt
    from hwm_studio.training.checkpoint import CheckpointError, load_model

    base = hostile_checkpoints.make_base(root)
    runs = root / "ws" / "runs"
    paths = hostile_checkpoints.write_corpus(runs, base)
    stages = hostile_checkpoints.stages(runs, base)
    doors: dict[str, Any] = {}
    problems: dict[str, str] = {}

    # load_model, watching how early each refusal came
    door = _door()
    early = {"header_cases": 0, "refused_before_building": 0, "model_cases": 0, "refused_before_reading": 0}
    reached: list[str] = []
    real_build, real_read = ckpt.build_model, ckpt._load_tensors

    def spy(step: str, real: Callable) -> Callable:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            reached.append(step)
            return real(*args, **kwargs)

        return wrapped

    ckpt.build_model, ckpt._load_tensors = spy("build", real_build), spy("read", real_read)
    try:
        for name, run in paths.items():
            reached.clear()
            try:
                load_model(run)
                outcome, said = "accepted", ""
            except CheckpointError as exc:
                clear = str(run) in str(exc) and "\n" not in str(exc)
                outcome, said = ("refused" if clear else "unclear"), str(exc)
            except BaseException as exc:  # a traceback for a user
                outcome, said = "traceback", f"{type(exc).__name__}: {exc}"
            count(door, outcome, f"load_model: {name}", said, problems)
            if stages[name] == "header":
                early["header_cases"] += 1
                early["refused_before_building"] += outcome == "refused" and not reached
            elif stages[name] == "model":
                early["model_cases"] += 1
                early["refused_before_reading"] += outcome == "refused" and "read" not in reached
    finally:
        ckpt.build_model, ckpt._load_tensors = real_build, real_read
    doors["load_model"] = {**door, **early}

    data = root / "test.npz"
    made = cli(["simulate", "--system", "pendulum", "--trajectories", "1", "--steps", "8", "--out", str(data)])
    assert made[0] == "accepted", made
    for name_, make in {
        "eval": lambda r: ["eval", str(r), "--data", str(data)],
        "render": lambda r: ["render", str(r), "--data", str(data), "--out", str(root / "never.gif")],
        "plan": lambda r: ["plan", str(r), "--env", "Pendulum-v1", "--episodes", "1", "--steps", "2"],
    }.items():
        doors[name_] = _door()
        for name, run in paths.items():
            outcome, said = cli(make(run))
            if outcome == "refused" and str(run) not in said:
                outcome = "unclear"
            count(doors[name_], outcome, f"{name_}: {name}", said, problems)
    doors["studio model list"] = _studio_models(runs, paths, problems)
    by_stage = {s: list(stages.values()).count(s) for s in sorted(set(stages.values()))}
    return {"checkpoints": len(paths), "stages": by_stage, "doors": doors,
            "unpickled": int(hostile_checkpoints.unpickled(runs)), "problems": problems}  # fmt: skip


def _studio_models(runs: Path, paths: dict[str, Path], problems: dict[str, str]) -> dict[str, int]:
    from hwm_studio.ui.studio import Studio
    from hwm_studio.workspace import Workspace

    door = _door()
    studio = Studio(workspace=Workspace(runs.parent), show_3d=False)
    session = studio.session
    listed = {o[5:] for o in session.param.model_name.objects if o.startswith("run: ")}
    _, unreadable = session.workspace_runs()
    for name, run in paths.items():
        if run.name in unreadable:  # not offered; the notice gives its reason
            ok = "\n" not in unreadable[run.name] and run.name in unreadable[run.name]
            count(door, "refused" if ok else "unclear", f"studio: {name}", unreadable[run.name], problems)
        elif run.name in listed:
            try:
                session.model_name = f"run: {run.name}"
            except Exception as exc:
                count(door, "traceback", f"studio: {name}", f"{type(exc).__name__}: {exc}", problems)
                continue
            ok = session.status.startswith("**Could not load the model:**") and run.name in session.status
            count(door, "refused" if ok else "accepted", f"studio: {name}", session.status, problems)
        else:
            count(door, "unclear", f"studio: {name}", "neither offered nor named in the notice", problems)
    studio.close()
    return door


def main_(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT)
    a = parser.parse_args(argv)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        result = {"data_files": data_files(root / "d"), "checkpoints": checkpoints(root / "c"),
                  "killed_saves": hostile_checkpoints.kill_saves(root / "k", kills=a.kills, seed=a.seed)}  # fmt: skip
    doors = [*result["data_files"]["doors"].values(), *result["checkpoints"]["doors"].values()]
    kills = result["killed_saves"]
    result["totals"] = {
        "tried": sum(d["tried"] for d in doors),
        "refused_cleanly": sum(d["refused_cleanly"] for d in doors),
        "accepted": sum(d["accepted"] for d in doors),
        "tracebacks": sum(d["tracebacks"] for d in doors),
        "unclear": sum(d["unclear"] for d in doors),
        "unpickled": result["data_files"]["unpickled"] + result["checkpoints"]["unpickled"],
        "killed_saves": kills["kills"],
        "left_a_loadable_checkpoint": kills["loadable"],
        "bit_exact": kills["exact"],
        "json_consistent_after_load": kills["consistent_after_load"],
    }
    result["seconds"] = round(time.perf_counter() - start, 1)
    result["machine"] = {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(a.out, json.dumps(result, indent=2) + "\n")
    _print(result)
    return result


def _print(result: dict[str, Any]) -> None:
    for part in ("data_files", "checkpoints"):
        r = result[part]
        print(f"{part}: {r.get('files', r.get('checkpoints'))} cases, unpickled {r['unpickled']}")
        for door, d in r["doors"].items():
            extra = ""
            if "header_cases" in d:
                extra = (f"; header cases refused before building {d['refused_before_building']}/{d['header_cases']}, "
                         f"model cases before reading {d['refused_before_reading']}/{d['model_cases']}")  # fmt: skip
            print(f"  {door:18s} tried {d['tried']:3d}  refused cleanly {d['refused_cleanly']:3d}  accepted "
                  f"{d['accepted']}  tracebacks {d['tracebacks']}  unclear {d['unclear']}{extra}")  # fmt: skip
        for name, what in list(r["problems"].items())[:10]:
            print(f"  PROBLEM {name}: {what[:200]}")
    k = result["killed_saves"]
    print(f"killed saves: {k['kills']} kills, {k['loadable']} loadable, {k['exact']} bit-exact, JSON consistent "
          f"{k['consistent_before_load']} before the load + {k['rolled_forward']} rolled forward by it = "
          f"{k['consistent_after_load']}; checkpoint changed between kills {k['changed_since_last_kill']}; "
          f"temp files left {k['temp_files_left']}; {k['seconds']} s")  # fmt: skip
    t = result["totals"]
    print(f"total: tried {t['tried']}, refused cleanly {t['refused_cleanly']}, accepted {t['accepted']}, "
          f"tracebacks {t['tracebacks']}, unclear {t['unclear']}, unpickled {t['unpickled']}; killed saves "
          f"{t['killed_saves']}, left a loadable checkpoint {t['left_a_loadable_checkpoint']} "
          f"({result['seconds']} s)")  # fmt: skip


if __name__ == "__main__":
    main_()
