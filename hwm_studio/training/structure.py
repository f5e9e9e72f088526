"""Structure selection: which of the HWM's non-conservative parts its data needs, judged on held-out data.

An HWM starts with every part: friction R, the action's map G, the residual r. On data from an
ideal system R and r learn to explain noise, and the long-horizon energy drifts (the HNN spring
protocol measured 0.397 energy MSE as trained, 3.6e-4 with R and r switched off by hand). The
held-out rollout error cannot tell: noisy starts sit on higher energy shells on average, so a
little friction lowers it on noisy held-out data too. So each part is judged by what it is for:
  - first the energy balance on the held-out trajectories: under the learned H, the energy change
    of each trajectory minus the work its actions did (through the learned G). The data are
    dissipative when that change is negative beyond noise: mean below -3 standard errors over
    trajectories and below -1% of the data's energy spread. If they are not, friction and the
    residual both go (a residual kept there learns to drain energy just as friction does: on the
    HNN spring it kept 0.227 energy MSE where the conservative model has 3.7e-4);
  - if they are, friction stays, and the residual is judged by the held-out rollout error (whole
    validation trajectories, as validation scores them): kept when switching it off makes that
    more than `TOLERANCE` worse.
The model is then rebuilt without the removed parts (its other weights kept), trained a little
further in that form, and the choice and its evidence are recorded in its config. G is never
removed: whether actions act is a fact of the data, not a fit. Data-parallel, rank 0 judges and
every rank takes its verdict (each rank rebuilds the same model; fit wraps it in DDP anew).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from hwm_studio.data.format import TrajectoryData
from hwm_studio.models import build_model
from hwm_studio.models.base import WorldModel
from hwm_studio.training import distributed
from hwm_studio.training.fit import Callback, FitResult, TrainConfig, fit, validation_error
from hwm_studio.training.windows import to_series

TOLERANCE = 0.05  # a part stays only if removing it makes held-out rollouts more than 5% worse
REFINE_FRACTION = 0.2  # further steps in the chosen form, as a share of the training steps
STRUCTURES = ("auto", "full", "conservative")


def _parts(model: WorldModel) -> list[str]:
    field = model.hamiltonian_field
    parts = []
    if field is not None and field.dissipation is not None:
        parts.append("friction")
    if field is not None and field.residual is not None:
        parts.append("residual")
    return parts


def _score_without(model: WorldModel, removed: tuple[str, ...], val_series: Any) -> float:
    knobs = {"friction": "dissipation_scale", "residual": "residual_scale"}
    saved = {knobs[p]: getattr(model, knobs[p]) for p in _parts(model)}
    try:
        for p in removed:
            setattr(model, knobs[p], 0.0)
        return validation_error(model, val_series, None)
    finally:
        for k, v in saved.items():
            setattr(model, k, v)


@torch.no_grad()
def energy_balance(model: WorldModel, val: TrajectoryData) -> dict[str, float]:
    """Per held-out trajectory, the learned energy's change minus the actions' work, per unit time,
    in units of the energy's spread over the data: its mean, standard error and the verdict."""
    field = model.hamiltonian_field
    device = next(model.parameters()).device
    n, t = val.n_trajectories, val.n_times
    q = torch.as_tensor(val.q.reshape(n * t, val.n_entities, val.dim), dtype=torch.float32, device=device)
    p = torch.as_tensor(val.p.reshape(n * t, val.n_entities, val.dim), dtype=torch.float32, device=device)
    z = model.encode(model.coder.observe(q, p))
    energy = field.hamiltonian.energy(z).reshape(n, t).double()
    work = torch.zeros(n, dtype=torch.float64, device=device)
    if val.u is not None and field.input_map is not None:
        u = torch.as_tensor(val.u.reshape(n * t, -1), dtype=torch.float32, device=device)
        power = field.powers(z, u)["control"].reshape(n, t).double()  # grad H . G u
        work = 0.5 * (power[:, :-1] + power[:, 1:]).sum(1) * val.dt  # trapezoid over each trajectory
    spread = float(energy.std()) + 1e-12
    change = ((energy[:, -1] - energy[:, 0] - work) / ((t - 1) * val.dt * spread)).cpu().numpy()
    mean = float(change.mean())
    se = float(change.std(ddof=1) / np.sqrt(n)) if n > 1 else float("inf")
    return {"mean": mean, "standard_error": se, "dissipative": bool(mean < -3 * se and mean < -0.01)}


def without(model: WorldModel, removed: tuple[str, ...]) -> WorldModel:
    """The same model rebuilt without `removed` parts, every other weight carried over."""
    changes: dict[str, Any] = {}
    if "friction" in removed:
        changes["dissipation"] = "none"
    if "residual" in removed:
        changes["residual"] = False
    pruned = build_model(dataclasses.replace(model.config, **changes)).to(next(model.parameters()).device)
    missing, _unexpected = pruned.load_state_dict(model.state_dict(), strict=False)
    assert not missing, f"pruning lost weights it should keep: {missing}"
    pruned.set_integrator(model.integrator.name)
    return pruned


def _choose(model: WorldModel, val: TrajectoryData) -> tuple[tuple[str, ...], dict[str, Any], float]:
    """The parts to remove, the evidence, and the held-out error of the model without them."""
    parts = _parts(model)
    removed_list: list[str] = []
    record: dict[str, Any] = {}
    balance = energy_balance(model, val)
    record["energy_balance"] = balance
    if not balance["dissipative"]:  # the held-out data keep their energy: nothing may drain it
        removed_list += parts
    series = to_series(model, val, next(model.parameters()).device)  # the pruned model observes data alike
    if balance["dissipative"] and "residual" in parts:
        with_r, without_r = _score_without(model, (), series), _score_without(model, ("residual",), series)
        record["rollout_error"] = {"with residual": with_r, "without": without_r}
        if without_r <= (1 + TOLERANCE) * with_r:
            removed_list.append("residual")
    removed = tuple(removed_list)
    record.update(removed=list(removed), kept=[p for p in parts if p not in removed])
    return removed, record, _score_without(model, removed, series)


def _held_out_error(model: WorldModel, val: TrajectoryData) -> float:
    return validation_error(model.eval(), to_series(model, val, next(model.parameters()).device), None)


def fit_structure(
    model: WorldModel,
    train: TrajectoryData,
    config: TrainConfig,
    val: TrajectoryData | None,
    structure: str = "auto",
    callbacks: list[Callback] | None = None,
    stop: threading.Event | None = None,
    rebuilt: Callable[[WorldModel], None] | None = None,
    derivatives: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[WorldModel, FitResult]:
    """fit(), then (structure 'auto', an HWM with removable parts, held-out data) the selection
    above; returns the model to keep (a new object when parts were removed) and the fit result.
    `rebuilt` is told of the new model before it trains further (the caller's checkpoints save it);
    `derivatives`: labels for fit's derivative loss, used in both phases."""
    if structure not in STRUCTURES:
        raise ValueError(f"structure must be one of {', '.join(STRUCTURES)}, got {structure!r}")
    if structure == "conservative":
        if _parts(model):
            model = without(model, tuple(_parts(model)))
        model.config.structure = {"chosen": "conservative", "by": "request"}
    result = fit(model, train, config, val=val, callbacks=callbacks, stop=stop, derivatives=derivatives)
    if structure != "auto" or val is None or not _parts(model) or result.status != "completed":
        return model, result
    removed, record, score_before = distributed.on_writer(functools.partial(_choose, model, val))
    if removed:
        model = without(model, removed)
        if rebuilt is not None:
            rebuilt(model)
        before = copy.deepcopy(model.state_dict())
        refine = dataclasses.replace(config, steps=max(1, round(REFINE_FRACTION * config.steps)),
                                     lr=0.3 * config.lr, curriculum=0.0)  # fmt: skip
        more = fit(model, train, refine, val=val, callbacks=callbacks, stop=stop, derivatives=derivatives)
        best_val = more.best_val if more.best_val is not None else result.best_val
        result = dataclasses.replace(result, seconds=result.seconds + more.seconds, best_val=best_val)
        record["refine_steps"] = more.steps_done
        if distributed.on_writer(functools.partial(_held_out_error, model, val)) > score_before:
            model.load_state_dict(before)  # the further steps did not help: keep the pruned weights
            record["refine_kept"] = False
    model.config.structure = record
    return model, result
