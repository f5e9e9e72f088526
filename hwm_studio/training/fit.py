"""fit(): the one training loop every model kind uses.

Loss per step (all in observation units normalised by the model's obs_scale):
    rollout:     the model's window loss (`WorldModel.window_loss`); for state models the mean
                 over t = 0..h of |decode(rollout(encode(o_0)))_t - o_t|^2 (t = 0 is the
                 reconstruction; zero for canonical data); pixel models add their own terms
    derivative:  optional HNN-style |f(z_t, u_t) - dz/dt|^2 against given labels
    residual:    lambda * mean |r(z, u) dt / scale|^2 on the visited states (HWM only)
The horizon h grows linearly from 1 to `horizon` over the first `curriculum` fraction of steps:
one-step targets shape the field quickly, long ones make it stable.

Safety: a non-finite loss or gradient, or a loss far above the best seen, stops training and
restores the last good weights: snapshotted every `snapshot_every` steps (of weights whose loss
was just accepted, before the step moves them: weights an exploding step has just written are
never the "good" ones) and at validations (when the held-out error is finite and not itself
diverged). The result says why (`reason`) and which step's weights it kept (`good_step`).

Data-parallel: started by torchrun as one of N processes (training/distributed.py says how), each
rank takes its share of every step's batch, DDP averages the gradients, and everything that steers
the loop (losses, stop requests, validation) is agreed across ranks: N ranks take the steps one
process takes on the whole batch. In a single process none of this does anything.
"""

from __future__ import annotations

import copy
import functools
import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from hwm_studio.data.format import TrajectoryData
from hwm_studio.models import PIXEL_MODELS
from hwm_studio.models.base import WorldModel
from hwm_studio.training import distributed
from hwm_studio.training.windows import SeriesTensors, sample_windows, to_series

Callback = Callable[[dict[str, Any]], bool | None]


@dataclass
class TrainConfig:
    steps: int = 2000  # optimiser steps
    lr: float = 3e-3  # Adam learning rate (cosine-decayed to lr / 20)
    large_step_lr_scale: float = 10.0  # larger step for what a model names: physical constants, image templates
    batch_size: int = 64  # windows per step
    horizon: int = 8  # final rollout horizon of the curriculum
    curriculum: float = 0.5  # fraction of steps over which the horizon grows from 1
    derivative_weight: float = 0.0  # weight of the derivative loss (needs labels)
    residual_weight: float = 1.0  # lambda of the residual penalty
    grad_clip: float = 1.0  # global gradient-norm clip
    weight_decay: float = 0.0
    val_every: int = 100  # validation rollout every N steps (0: never)
    val_horizon: int | None = None  # None: the whole validation trajectories
    restore_best: bool = True  # end on the weights with the best validation error
    snapshot_every: int = 25  # last-good-weights snapshot period
    divergence_factor: float = 1e4  # stop if loss > factor * best loss at the same horizon
    seed: int = 0
    device: str = "auto"

    def horizon_at(self, step: int) -> int:
        ramp = max(1, int(self.curriculum * self.steps))
        return max(1, min(self.horizon, 1 + (self.horizon - 1) * step // ramp))


@dataclass
class FitResult:
    status: str  # 'completed' | 'diverged' | 'stopped'
    steps_done: int
    best_val: float | None
    history: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""
    seconds: float = 0.0
    reason: str = ""  # why a diverged run stopped, e.g. 'non-finite gradient at step 37'
    good_step: int = 0  # the step whose weights a diverged run restored (0: the initial ones)


# (lr, batch size) the CLI and the studio start a kind from: pixel windows are stacks of frames, and
# the HGN protocol measured its pixel figures at this setting (benchmarks/hgn.py)
STATE_DEFAULTS, PIXEL_DEFAULTS = (3e-3, 64), (1e-3, 32)


def kind_defaults(kind: str) -> tuple[float, int]:
    """The learning rate and batch size a model kind trains with unless told otherwise."""
    return PIXEL_DEFAULTS if kind in PIXEL_MODELS else STATE_DEFAULTS


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def derivative_loss(model: WorldModel, obs: Tensor, actions: Tensor | None, labels: tuple[Tensor, Tensor]) -> Tensor:
    """|f(z, u) - labelled dz/dt|^2 on every window point, normalised like the state."""
    b, t1, e, o = obs.shape
    z = model.encode(obs.reshape(b * t1, e, o))
    u = None
    if actions is not None and model.action_dim:
        u_full = torch.cat([actions, actions[:, -1:]], dim=1)  # label at the last point: same held action
        u = u_full.reshape(b * t1, -1)
    f = model.derivative(z, u)
    if f is None:
        raise ValueError(f"the {model.kind} model is a discrete map: it has no derivative to match")
    qs = model.config.q_scale
    ps = model.config.p_scale
    dq = (f.q - labels[0].reshape(f.q.shape)) / torch.as_tensor(qs, dtype=obs.dtype, device=obs.device)
    dp = (f.p - labels[1].reshape(f.p.shape)) / torch.as_tensor(ps, dtype=obs.dtype, device=obs.device)
    return (dq * dq).mean() + (dp * dp).mean()


@torch.no_grad()
def validation_error(model: WorldModel, series: SeriesTensors, horizon: int | None) -> float:
    """The model's error of full rollouts from each trajectory's start (the first `horizon` steps)."""
    n = series.n_times if horizon is None else min(model.window_length(horizon), series.n_times)
    actions = None if series.actions is None else series.actions[:, : n - 1]
    return model.series_error(series.obs[:, :n], actions)


def _validate(model: WorldModel, series: SeriesTensors, horizon: int | None) -> tuple[float, str | None]:
    model.eval()
    try:
        return validation_error(model, series, horizon), diagnosis(model, series, horizon)
    finally:
        model.train()


@torch.no_grad()
def diagnosis(model: WorldModel, series: SeriesTensors, horizon: int | None) -> str | None:
    """The model's own warning about its training (e.g. a pixel model drawing no bodies), or None."""
    n = series.n_times if horizon is None else min(model.window_length(horizon), series.n_times)
    actions = None if series.actions is None else series.actions[:, : n - 1]
    return model.diagnose(series.obs[:, :n], actions)


def _param_groups(model: WorldModel, cfg: TrainConfig) -> list[dict[str, Any]]:
    physical = {id(p) for p in model.large_step_parameters()}
    rest = [p for p in model.parameters() if id(p) not in physical and p.requires_grad]
    groups: list[dict[str, Any]] = [{"params": rest, "lr": cfg.lr, "base_lr": cfg.lr}]
    phys = [p for p in model.parameters() if id(p) in physical]
    if phys:
        lr = cfg.lr * cfg.large_step_lr_scale
        groups.append({"params": phys, "lr": lr, "base_lr": lr, "weight_decay": 0.0})
    return groups


class StepLoss(torch.nn.Module):
    """A step's loss on a batch of windows, as a module's forward: what DDP wraps (it averages the
    gradients of what its module's forward computed). Returns (loss, rollout loss, penalty)."""

    def __init__(self, model: WorldModel, cfg: TrainConfig) -> None:
        super().__init__()
        self.model, self.cfg = model, cfg

    def forward(
        self, obs: Tensor, actions: Tensor | None, labels: tuple[Tensor, Tensor] | None, h: int, progress: float
    ) -> tuple[Tensor, Tensor, Tensor]:
        loss_roll, penalty = self.model.window_loss(obs, actions, h, progress=progress)
        loss = loss_roll + self.cfg.residual_weight * penalty
        if self.cfg.derivative_weight > 0 and labels is not None:
            loss = loss + self.cfg.derivative_weight * derivative_loss(self.model, obs, actions, labels)
        return loss, loss_roll, penalty


def make_optimizer(model: WorldModel, cfg: TrainConfig) -> torch.optim.Adam:
    """Adam over the model's parameter groups, fused into one kernel per group where the device has
    one (cpu, cuda): a structured model has many small tensors, and the per-tensor loop cost 0.67 ms
    per step against 0.14 ms fused on the wall chain's HWM."""
    fused = {p.device.type for p in model.parameters()} <= {"cpu", "cuda"}
    return torch.optim.Adam(_param_groups(model, cfg), weight_decay=cfg.weight_decay, fused=fused)


def fit(
    model: WorldModel,
    train: TrajectoryData,
    config: TrainConfig | None = None,
    val: TrajectoryData | None = None,
    callbacks: list[Callback] | None = None,
    stop: threading.Event | None = None,
    derivatives: tuple[np.ndarray, np.ndarray] | None = None,
) -> FitResult:
    """Train `model` in place on `train` (validated TrajectoryData); returns what happened.

    Callbacks receive event dicts ({'event': 'step' | 'validation' | 'end', ...}); one returning
    False stops training (status 'stopped'), as does setting `stop`. Data-parallel, every rank's
    callbacks receive the same events, and a stop asked for on any rank stops them all.
    """
    cfg = config or TrainConfig()
    callbacks = callbacks or []
    device = distributed.local_device(cfg.device)
    seed_everything(cfg.seed)
    if cfg.derivative_weight > 0 and derivatives is None:
        raise ValueError("derivative_weight > 0 needs derivative labels")
    if train.n_times < 2:
        raise ValueError("training trajectories need at least 2 time points")
    if model.action_dim and train.u is None:
        raise ValueError(f"the model takes {model.action_dim} action dims but the data has no 'u'")
    if model.sees_pixels and distributed.active():
        raise ValueError(f"the {model.kind} model cannot train on several processes: it calibrates its image "
                         "geometry from one batch, at a step each process would choose by itself")  # fmt: skip
    rows = distributed.shard(cfg.batch_size)  # this rank's windows of each step's batch (None: all)
    model.to(device)
    series = to_series(model, train, device, derivatives=derivatives)
    model.prepare_training(series.obs)
    val_series = to_series(model, val, device) if val is not None else None
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = make_optimizer(model, cfg)
    step_loss = distributed.data_parallel(StepLoss(model, cfg))
    max_h = cfg.horizon
    while max_h > 1 and model.window_length(max_h) > train.n_times:
        max_h -= 1
    if model.window_length(max_h) > train.n_times:
        raise ValueError(f"training trajectories of {train.n_times} points are too short for this model")

    def emit(event: dict[str, Any]) -> bool:
        keep = True
        for cb in callbacks:
            if cb(event) is False:
                keep = False
        return keep

    good_state, good_step = copy.deepcopy(model.state_dict()), 0
    best_state, best_val = None, math.inf
    best_loss: dict[int, float] = {}  # per horizon: the curriculum legitimately raises the loss
    history: list[dict[str, Any]] = []
    status, message, reason = "completed", "", ""
    t_start = time.perf_counter()
    step = 0
    model.train()
    asked_before = distributed.any_rank(stop is not None and stop.is_set())[0]  # later: after each step
    if asked_before:
        status, message = "stopped", "stopped on request"
    for step in range(1, 1 if asked_before else cfg.steps + 1):
        lr_factor = 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * (step - 1) / cfg.steps))
        for g in opt.param_groups:
            g["lr"] = g["base_lr"] * lr_factor
        h = min(cfg.horizon_at(step), max_h)
        obs, actions, labels = sample_windows(series, model.window_length(h) - 1, cfg.batch_size, gen, rows)
        loss, loss_roll, penalty = step_loss(obs, actions, labels, h, (step - 1) / cfg.steps)
        terms = dict(model.last_loss_terms)
        # the whole batch's: each rank's mean over its windows, averaged (non-finite anywhere: everywhere)
        loss_value, roll_value, penalty_value, *term_values = distributed.mean_over_ranks(
            [float(loss.detach()), float(loss_roll.detach()), float(penalty.detach()), *terms.values()]
        )
        ref = best_loss.get(h, math.inf)
        if not math.isfinite(loss_value) or loss_value > cfg.divergence_factor * max(ref, 1e-12):
            status, reason = "diverged", f"loss became {loss_value:.3g} at step {step}"
            break
        if step % cfg.snapshot_every == 0:  # these weights' loss was just accepted: they are good
            good_state, good_step = copy.deepcopy(model.state_dict()), step - 1
        opt.zero_grad(set_to_none=True)
        loss.backward()
        # data-parallel, DDP has averaged the gradients: non-finite on one rank, non-finite on all
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip))
        if not math.isfinite(grad_norm):
            status, reason = "diverged", f"non-finite gradient at step {step}"
            break
        opt.step()
        best_loss[h] = min(ref, loss_value)
        record = {
            "event": "step",
            "step": step,
            "loss": loss_value,
            "rollout_loss": roll_value,
            "residual_penalty": penalty_value,
            "horizon": h,
            "lr": opt.param_groups[0]["lr"],
            "grad_norm": grad_norm,
        }
        if terms:
            record["terms"] = dict(zip(terms, term_values, strict=True))
        keep = emit(record)
        if val_series is not None and cfg.val_every and (step % cfg.val_every == 0 or step == cfg.steps):
            # on rank 0, for every rank: the best and last good weights are chosen alike everywhere
            v, warning = distributed.on_writer(functools.partial(_validate, model, val_series, cfg.val_horizon))
            record["val_rollout_mse"] = v
            event = {"event": "validation", "step": step, "val_rollout_mse": v}
            if warning:
                record["warning"] = event["warning"] = warning
            keep = emit(event) and keep
            if math.isfinite(v) and (best_val == math.inf or v <= cfg.divergence_factor * best_val):
                good_state, good_step = copy.deepcopy(model.state_dict()), step
                if v < best_val:
                    best_val, best_state = v, copy.deepcopy(model.state_dict())
        history.append(record)
        stopped_by_callback, stop_asked = distributed.any_rank(not keep, stop is not None and stop.is_set())
        if stopped_by_callback:
            status, message = "stopped", "stopped by a callback"
            break
        if stop_asked and step < cfg.steps:
            status, message = "stopped", "stopped on request"
            break
    if status == "diverged":
        model.load_state_dict(good_state)
        message = f"{reason}; restored the last good weights (step {good_step})"
    elif cfg.restore_best and best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    result = FitResult(
        status=status,
        steps_done=step if status != "diverged" else step - 1,
        best_val=best_val if math.isfinite(best_val) else None,
        history=history,
        message=message,
        seconds=time.perf_counter() - t_start,
        reason=reason,
        good_step=good_step,
    )
    emit({"event": "end", "status": status, "message": message, "steps_done": result.steps_done})
    return result


def train_config_dict(cfg: TrainConfig) -> dict[str, Any]:
    return asdict(cfg)
