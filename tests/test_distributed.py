"""Data-parallel training (training/distributed.py) as users start it: torchrun, 2 CPU processes, gloo.

N processes on a batch of B take the steps of one process on the same B (each keeps its B/N of
the same draw), so the 2-process run is compared with a single one step by step; and one process
going wrong stops both at the same step, on the same last good weights, written once by rank 0.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hwm_studio.cli import build_parser, main
from hwm_studio.training.checkpoint import load_metrics, load_model

WORKER = Path(__file__).with_name("distributed_worker.py")
TRAIN = ["train", "--system", "pendulum", "--trajectories", "10", "--points", "30", "--steps", "30",
         "--batch-size", "16", "--horizon", "4", "--device", "cpu", "--seed", "2"]  # fmt: skip


def _torchrun(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=240)


def test_python_m_hwm_studio_is_the_command() -> None:
    res = subprocess.run([sys.executable, "-m", "hwm_studio", "--help"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("usage: hwm-studio")


def test_torchrun_passes_every_train_option_on() -> None:
    """torchrun parses the command it runs with its own parser first: an option of ours that is an
    ambiguous prefix of one of its own (as --nproc is of --nproc-per-node) would be refused."""
    from torch.distributed.run import get_args_parser

    train = build_parser()._subparsers._group_actions[0].choices["train"]
    options = [s for action in train._actions for s in action.option_strings if s.startswith("--")]
    assert "--processes" in options
    for option in options:
        args = get_args_parser().parse_args(["--standalone", "-m", "hwm_studio", "train", option, "1"])
        assert args.training_script_args == ["train", option, "1"], option


def test_what_cannot_train_on_several_processes_is_refused_before_any_starts(tmp_path, capsys) -> None:
    out = str(tmp_path / "run")
    cases = {
        ("--model", "hwm-pixels", "--frame-size", "8"): "hwm-pixels trains in one process",
        ("--batch-size", "15"): "does not split evenly over 2 processes",
        ("--processes", "0"): "--processes must be >= 1",
    }
    for extra, message in cases.items():
        args = ["train", "--system", "pendulum", "--steps", "1", "--processes", "2", *extra, "--out", out]
        assert main(args) == 1
        assert message in capsys.readouterr().err
    assert not Path(out).exists()


@pytest.mark.slow
def test_two_processes_take_the_steps_of_one_on_the_whole_batch(tmp_path, capsys) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    assert main([*TRAIN, "--out", str(one)]) == 0  # structure 'auto': prunes, rebuilds and trains on
    # --processes 2 runs `python -m torch.distributed.run --standalone --nproc-per-node=2 -m hwm_studio ...`
    cmd = [sys.executable, "-m", "hwm_studio", *TRAIN, "--processes", "2", "--out", str(two)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("completed: 30 steps") == 1  # rank 0 alone reports
    assert res.stderr.count("train hwm:   0%") == 1  # and shows progress
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())

    m1, m2 = load_metrics(one), load_metrics(two)
    loss1, loss2 = (np.array([r["loss"] for r in m["history"]]) for m in (m1, m2))
    assert len(loss1) == len(loss2) == 30
    np.testing.assert_allclose(loss2, loss1, rtol=1e-5)  # float summation order only
    assert m2["best_val_rollout_mse"] == pytest.approx(m1["best_val_rollout_mse"], rel=1e-5)
    w1, w2 = load_model(one), load_model(two)
    assert w2.config.structure["removed"] == w1.config.structure["removed"] == ["friction", "residual"]
    for k, v in w1.state_dict().items():
        torch.testing.assert_close(w2.state_dict()[k], v, rtol=1e-4, atol=1e-6)
    config = json.loads((two / "config.json").read_text())
    assert config["structure"]["refine_steps"] == 6


@pytest.mark.slow
def test_one_rank_going_wrong_stops_every_rank_on_the_same_good_weights(tmp_path) -> None:
    res = _torchrun(str(WORKER), str(tmp_path))
    assert res.returncode == 0, res.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    expected = {  # rank 1's NaN weights make its loss at step 31 NaN; its NaN gradient at step 12
        "loss": ("loss became nan at step 31", 30, 24, "good"),
        "grad": ("non-finite gradient at step 12", 11, 9, "good_grad"),
    }
    for case, (reason, steps_done, good_step, snapshot) in expected.items():
        for seen in ranks:
            got = seen[case]
            assert (got["status"], got["reason"], got["steps_done"], got["good_step"]) == (
                "diverged", reason, steps_done, good_step
            ), case  # fmt: skip
            for k, v in ranks[0][snapshot].items():  # the weights of step good_step, on every rank
                assert torch.equal(got["weights"][k], v), (case, k)
        on_disk = load_model(tmp_path / case)  # one checkpoint, the last good weights
        for k, v in on_disk.state_dict().items():
            assert torch.equal(v, ranks[0][snapshot][k]), (case, k)
        assert load_metrics(tmp_path / case)["status"] == "diverged"
    assert ranks[0]["saves"] == [str(tmp_path / "loss"), str(tmp_path / "grad")]  # rank 0 saved each run once
    assert ranks[1]["saves"] == []  # rank 1 never wrote
