"""Issue 16 item 4: training faults. NaN gradients injected at step k (a backward hook on one
parameter), an exploding learning rate (from the start, or multiplied mid-run through the
optimiser fit builds), the data file removed mid-run, and a run directory that cannot be written
mid-run. Each run stops (or, for the data file already in memory, finishes), keeps its last good
weights in memory and on disk (bit for bit the snapshot fit's own rule calls last good, all
finite), and says why: as `train_run`'s result, in `hwm-studio train` (exit 3 and one line; a save
failure one error line, exit 1) and in the studio's Train tab."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

import hwm_studio.training.fit as fit_module
import hwm_studio.training.run as run_module
from hwm_studio.cli import main
from hwm_studio.data.format import save_trajectories
from hwm_studio.data.simulate import simulate
from hwm_studio.systems import get_system
from hwm_studio.training.checkpoint import RunSaveError, load_metrics, load_model
from hwm_studio.training.fit import TrainConfig
from hwm_studio.training.run import train_run


def _copy(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _finite(state: dict[str, torch.Tensor]) -> bool:
    return all(bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point())


class Fault:
    """Injects a fault and follows fit's rule for its last good snapshot, to compare with what a
    diverged run keeps: weights whose loss was accepted, every `snapshot_every` steps (taken before
    the step moves them), and weights after a validation whose error is finite and within
    `divergence_factor` of the best.

    nan_at:   a backward hook on one parameter returns NaN in the backward of that step
    boost_at: the learning rate is multiplied by `boost` from that step on (fit's optimiser, captured)
    then:     called with the step number on every step event (remove a file, break a directory)
    """

    def __init__(self, nan_at: int | None = None, boost_at: int | None = None, boost: float = 1e6,
                 then: Any = None, cfg: TrainConfig | None = None) -> None:  # fmt: skip
        cfg = cfg or TrainConfig()
        self.nan_at, self.boost_at, self.boost, self.then = nan_at, boost_at, boost, then
        self.every, self.factor = cfg.snapshot_every, cfg.divergence_factor
        self.model: torch.nn.Module | None = None
        self.armed, self.best, self.optimizers, self.hooked = False, math.inf, [], 0

    def attach(self, model: torch.nn.Module) -> torch.nn.Module:
        self.model = model
        self.good, self.prev = (0, _copy(model)), _copy(model)
        param = next(p for p in model.parameters() if p.requires_grad)
        param.register_hook(self._hook)
        return model

    def _hook(self, grad: torch.Tensor) -> torch.Tensor:
        if not self.armed:
            return grad
        self.hooked += 1
        return torch.full_like(grad, float("nan"))

    def optimizer(self, real: Any) -> Any:
        def make(model, cfg):
            opt = real(model, cfg)
            self.optimizers.append(opt)
            return opt

        return make

    def callback(self, event: dict[str, Any]) -> None:
        if event["event"] == "step":
            step = event["step"]
            if self.model is not None:
                if step % self.every == 0:
                    self.good = (step - 1, self.prev)
                self.prev = _copy(self.model)
            if self.nan_at is not None and step == self.nan_at - 1:
                self.armed = True
            if self.boost_at is not None and step == self.boost_at - 1:
                for group in self.optimizers[-1].param_groups:
                    group["base_lr"] *= self.boost
            if self.then is not None:
                self.then(step)
        elif event["event"] == "validation" and self.model is not None:
            v = event["val_rollout_mse"]
            if math.isfinite(v) and (self.best == math.inf or v <= self.factor * self.best):
                self.good = (event["step"], _copy(self.model))
                self.best = min(self.best, v)


@pytest.fixture(scope="module")
def data():
    return simulate(get_system("pendulum"), 12, 20, control="random", seed=0)


def _patch(monkeypatch, fault: Fault, where: Any = run_module) -> None:
    """Every model `where` builds gets the fault's hook; fit's optimiser is captured."""
    real = where.build_model
    monkeypatch.setattr(where, "build_model", lambda config: fault.attach(real(config)))
    monkeypatch.setattr(fit_module, "make_optimizer", fault.optimizer(fit_module.make_optimizer))


def _run(data, out: Path, kind: str, cfg: TrainConfig, fault: Fault, monkeypatch):
    _patch(monkeypatch, fault)
    return train_run(data, out, kind, cfg, model_options={"hidden": 16}, callbacks=[fault.callback], structure="full")


def _kept_the_last_good(out: Path, model: torch.nn.Module, fault: Fault, result: Any) -> None:
    good_step, good = fault.good
    assert result.good_step == good_step
    assert _finite(good)
    assert _equal(_copy(model), good)  # in memory
    assert _equal(_copy(load_model(out)), good)  # and on disk, bit for bit
    metrics = load_metrics(out)
    assert metrics["status"] == "diverged"
    assert result.reason in metrics["message"]


# --- train_run -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("kind", "val_every", "good_step"), [("mlp", 10, 30), ("mlp", 0, 24), ("hwm", 10, 30)])
def test_a_nan_gradient_stops_the_run_on_its_last_good_weights(data, tmp_path, monkeypatch, kind, val_every,
                                                               good_step) -> None:  # fmt: skip
    cfg = TrainConfig(steps=60, horizon=4, val_every=val_every, device="cpu")
    fault = Fault(nan_at=37, cfg=cfg)
    model, result, _ = _run(data, tmp_path / "run", kind, cfg, fault, monkeypatch)
    assert fault.hooked == 1
    assert result.status == "diverged"
    assert result.reason == "non-finite gradient at step 37"
    assert result.steps_done == 36
    assert result.good_step == good_step
    _kept_the_last_good(tmp_path / "run", model, fault, result)


@pytest.mark.parametrize("kind", ["mlp", "hwm"])
def test_an_exploding_learning_rate_from_the_start_keeps_the_initial_weights(data, tmp_path, monkeypatch, kind) -> None:
    cfg = TrainConfig(steps=40, lr=1e6, horizon=4, val_every=10, device="cpu")
    fault = Fault(cfg=cfg)
    model, result, _ = _run(data, tmp_path / "run", kind, cfg, fault, monkeypatch)
    assert result.status == "diverged"
    assert result.reason.startswith("loss became ")
    assert result.reason.endswith(" at step 2")
    assert result.good_step == 0
    _kept_the_last_good(tmp_path / "run", model, fault, result)


@pytest.mark.parametrize(("kind", "boost_at"), [("mlp", 33), ("mlp", 50), ("hwm", 50)])
def test_a_learning_rate_multiplied_mid_run_keeps_the_last_good_weights(data, tmp_path, monkeypatch, kind,
                                                                       boost_at) -> None:  # fmt: skip
    """Regression (step 50): the snapshot every 25 steps was taken after the step it follows, so an
    explosion at a snapshot step saved the exploded weights as the 'last good' ones (|w| ~ 700)."""
    cfg = TrainConfig(steps=80, horizon=4, val_every=10, device="cpu")
    fault = Fault(boost_at=boost_at, cfg=cfg)
    model, result, _ = _run(data, tmp_path / "run", kind, cfg, fault, monkeypatch)
    assert result.status == "diverged"
    assert result.reason.startswith("loss became ")
    assert boost_at < result.steps_done + 1 <= boost_at + 3  # caught within a few steps
    _kept_the_last_good(tmp_path / "run", model, fault, result)
    assert fault.good[0] < boost_at
    assert max(float(v.abs().max()) for v in fault.good[1].values()) < 10


def test_a_data_file_removed_mid_run_the_run_finishes_from_memory(data, tmp_path) -> None:
    """The whole file is read before training starts (nothing is read lazily), so a demanding user
    gets a finished run: its checkpoint is the model it returned."""
    from hwm_studio.data.format import load_trajectories

    path = save_trajectories(data, tmp_path / "data.npz")
    loaded = load_trajectories(path)

    def remove(event: dict[str, Any]) -> None:
        if event["event"] == "step" and event["step"] == 5:
            path.unlink()

    cfg = TrainConfig(steps=30, horizon=4, val_every=10, device="cpu")
    model, result, _ = train_run(loaded, tmp_path / "run", "mlp", cfg, callbacks=[remove])
    assert not path.exists()
    assert result.status == "completed"
    assert result.steps_done == 30
    assert _finite(_copy(model))
    assert _equal(_copy(load_model(tmp_path / "run")), _copy(model))


def _save_fails_at(step: int, how: str, out: Path, monkeypatch):
    def then(s: int) -> None:
        if s != step:
            return
        if how == "replaced by a file":
            shutil.rmtree(out)
            out.write_text("not a directory any more")
        elif how == "disk full":

            def full(fd: int) -> None:
                raise OSError(28, "No space left on device")

            monkeypatch.setattr(os, "fsync", full)
        elif how == "read-only":
            out.chmod(0o500)
        elif how == "removed":
            shutil.rmtree(out)

    return then


@pytest.mark.parametrize("how", ["replaced by a file", "disk full", "read-only"])
def test_a_run_directory_that_cannot_be_written_stops_the_run_and_keeps_the_model(data, tmp_path, monkeypatch,
                                                                                  how) -> None:  # fmt: skip
    if how == "read-only" and os.geteuid() == 0:
        pytest.skip("root writes into read-only directories")
    out = tmp_path / "run"
    cfg = TrainConfig(steps=60, horizon=4, val_every=10, device="cpu")
    saved: dict[str, Any] = {}

    def then(step: int) -> None:
        if step == 15:
            saved.update(_copy(load_model(out)))  # the checkpoint of step 10, before the fault
        _save_fails_at(15, how, out, monkeypatch)(step)

    fault = Fault(then=then, cfg=cfg)
    with pytest.raises(RunSaveError) as err:
        _run(data, out, "mlp", cfg, fault, monkeypatch)
    monkeypatch.undo()
    message = str(err.value)
    assert message.startswith(f"could not save the run to {out} (")
    stopped = int(re.search(r"training stopped at step (\d+),", message).group(1))
    assert stopped in (20, 30, 40, 50, 60)  # the first checkpoint after the fault, the first that failed
    assert "the last checkpoint saved is of step 10" in message
    assert err.value.result.status == "stopped"
    assert _finite(_copy(err.value.model))  # the model is not lost: its best validated weights
    if how == "disk full":
        assert _equal(_copy(load_model(out)), saved)  # and the disk still holds the step-10 checkpoint
        assert not list(out.glob(".*.pending"))
    if how == "read-only":
        out.chmod(0o700)


def test_a_run_directory_removed_mid_run_is_made_again(data, tmp_path, monkeypatch) -> None:
    out = tmp_path / "run"
    cfg = TrainConfig(steps=40, horizon=4, val_every=10, device="cpu")
    fault = Fault(then=_save_fails_at(15, "removed", out, monkeypatch), cfg=cfg)
    model, result, _ = _run(data, out, "mlp", cfg, fault, monkeypatch)
    assert result.status == "completed"
    assert _equal(_copy(load_model(out)), _copy(model))


# --- hwm-studio train ----------------------------------------------------------------------------
def _cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = main(list(args))  # an exception escaping here fails the test: that is a traceback
    return code, out.getvalue(), err.getvalue()


def _said(err: str) -> list[str]:
    """What the command said on stderr, less its progress bar."""
    return [line for line in err.splitlines() if line.startswith("hwm-studio")]


TRAIN = ["train", "--system", "pendulum", "--trajectories", "12", "--points", "20", "--horizon", "4", "--model"]


def test_cli_a_nan_gradient_exits_3_saying_why_in_one_line(tmp_path, monkeypatch) -> None:
    out = tmp_path / "run"
    fault = Fault(nan_at=37)
    _patch(monkeypatch, fault)
    real = run_module.train_run

    def with_fault(*args, **kwargs):
        args = list(args)
        args[6] = [*args[6], fault.callback]  # the CLI's callbacks: its progress bar
        return real(*args, **kwargs)

    monkeypatch.setattr(run_module, "train_run", with_fault)
    code, stdout, stderr = _cli(*TRAIN, "mlp", "--steps", "60", "--out", str(out))
    assert code == 3
    assert _said(stderr) == [
        f"hwm-studio: diverged: non-finite gradient at step 37; kept the last good weights (step 24) in {out}"
    ]
    assert "Traceback" not in stderr
    assert stdout.startswith("diverged: 36 steps")
    assert _equal(_copy(load_model(out)), fault.good[1])


def test_cli_an_exploding_learning_rate_exits_3_and_keeps_a_loadable_checkpoint(tmp_path) -> None:
    out = tmp_path / "run"
    code, _, stderr = _cli(*TRAIN, "mlp", "--steps", "30", "--lr", "1e6", "--out", str(out))
    assert code == 3
    (line,) = _said(stderr)
    assert line.startswith("hwm-studio: diverged: loss became ")
    assert line.endswith(f" at step 2; kept the last good weights (step 0) in {out}")
    assert _finite(_copy(load_model(out)))
    assert json.loads((out / "metrics.json").read_text())["status"] == "diverged"


def test_cli_a_full_disk_mid_run_is_one_error_line(tmp_path, monkeypatch) -> None:
    out = tmp_path / "run"
    fault = Fault(then=_save_fails_at(105, "disk full", out, monkeypatch))  # the CLI validates every 100 steps
    real = run_module.train_run

    def with_fault(*args, **kwargs):
        args = list(args)
        args[6] = [*args[6], fault.callback]
        return real(*args, **kwargs)

    monkeypatch.setattr(run_module, "train_run", with_fault)
    code, _, stderr = _cli(*TRAIN, "mlp", "--steps", "120", "--out", str(out))
    monkeypatch.undo()
    assert code == 1
    (line,) = _said(stderr)
    assert line.startswith(f"hwm-studio: error: could not save the run to {out} ([Errno 28] No space left")
    assert "training stopped at step 120" in line
    assert line.endswith("the last checkpoint saved is of step 100")
    assert "Traceback" not in stderr
    assert load_metrics(out) == {"status": "training", "steps_done": 100,
                                 "best_val_rollout_mse": load_metrics(out)["best_val_rollout_mse"]}  # fmt: skip
    assert _finite(_copy(load_model(out)))  # the step-100 checkpoint is intact


def test_cli_a_data_file_removed_mid_run_finishes(tmp_path, data, monkeypatch) -> None:
    path = save_trajectories(data, tmp_path / "data.npz")
    real = run_module.train_run

    def remove(event: dict[str, Any]) -> None:  # (a callback returning False would stop the run)
        if event["event"] == "step" and event["step"] == 5:
            path.unlink()

    def with_removal(*args, **kwargs):
        args = list(args)
        args[6] = [*args[6], remove]
        return real(*args, **kwargs)

    monkeypatch.setattr(run_module, "train_run", with_removal)
    code, stdout, stderr = _cli("train", "--data", str(path), "--model", "mlp", "--steps", "30", "--horizon", "4",
                                "--out", str(tmp_path / "run"))  # fmt: skip
    assert code == 0, stderr
    assert not path.exists()
    assert stdout.startswith("completed: 30 steps")
    load_model(tmp_path / "run")


# --- the studio's Train tab ----------------------------------------------------------------------
@pytest.fixture
def panel(tmp_path):
    pytest.importorskip("panel")
    from hwm_studio.ui.train import TrainPanel, TrainSource
    from hwm_studio.workspace import Workspace

    p = TrainPanel(lambda: TrainSource("pendulum", 0), Workspace(tmp_path / "ws"))
    yield p
    p.close()


def _studio_run(panel, monkeypatch, fault: Fault, steps: int, kind: str = "mlp") -> None:
    import hwm_studio.training.job as job_module

    _patch(monkeypatch, fault, job_module)
    real = job_module.fit

    def fit(*args, callbacks, **kwargs):
        return real(*args, callbacks=[*callbacks, fault.callback], **kwargs)

    monkeypatch.setattr(job_module, "fit", fit)
    panel.kind.value, panel.steps.value = kind, steps
    panel.start()
    assert panel.job is not None, panel.status.object
    panel.wait(120)


def test_studio_a_nan_gradient_says_why_and_keeps_the_last_good_weights(panel, monkeypatch) -> None:
    fault = Fault(nan_at=37)
    _studio_run(panel, monkeypatch, fault, 80)
    assert panel.status.object.startswith("Training diverged after 36 steps.")
    assert "non-finite gradient at step 37; restored the last good weights (step 24)" in panel.status.object
    _, weights = panel.job.latest_weights()
    assert _equal(weights, fault.good[1])
    panel.save_name.value = "kept"
    panel.save()
    assert "runs/kept" in panel.status.object
    assert _equal(_copy(load_model(panel.workspace.run_path("kept"))), fault.good[1])


def test_studio_an_exploding_learning_rate_says_why(panel, monkeypatch) -> None:
    fault = Fault(boost_at=30)
    _studio_run(panel, monkeypatch, fault, 80)
    assert panel.status.object.startswith("Training diverged after ")
    assert "loss became " in panel.status.object
    _, weights = panel.job.latest_weights()
    assert _equal(weights, fault.good[1])
    assert _finite(weights)


def test_studio_a_data_file_removed_mid_run_finishes_and_then_says_it_is_gone(panel, data, monkeypatch) -> None:
    path = save_trajectories(data, panel.workspace.root / "pend.npz")
    panel.refresh_sources("pend.npz")

    def remove(step: int) -> None:
        if step == 5:
            path.unlink()

    _studio_run(panel, monkeypatch, Fault(then=remove), 30)
    assert panel.status.object.startswith("Training completed after 30 steps")
    panel.start()  # the file is still offered until the list refreshes: a clear message, no run
    assert "Cannot train on this data" in panel.status.object
    assert "no such file" in panel.status.object


@pytest.mark.parametrize("how", ["replaced by a file", "disk full"])
def test_studio_a_save_that_fails_says_why_and_keeps_the_model(panel, monkeypatch, how) -> None:
    fault = Fault()
    _studio_run(panel, monkeypatch, fault, 30)
    _, before = panel.job.latest_weights()
    target = panel.workspace.run_path("mine")
    if how == "replaced by a file":
        target.write_text("not a directory")
    else:

        def full(fd: int) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "fsync", full)
    panel.save_name.value = "mine"
    panel.save()
    assert panel.status.object.startswith("**Cannot save:**")
    assert ("exists and is not a directory" if how == "replaced by a file" else "No space left") in panel.status.object
    monkeypatch.undo()
    _, after = panel.job.latest_weights()
    assert _equal(before, after)  # the model is not lost: save it elsewhere
    panel.save_name.value = "elsewhere"
    panel.save()
    assert "runs/elsewhere" in panel.status.object
    assert _equal(_copy(load_model(panel.workspace.run_path("elsewhere"))), before)
