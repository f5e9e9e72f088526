"""One rank of tests/test_distributed.py's divergence test, run by torchrun: `torchrun ... distributed_worker.py DIR`.

Two short train_run calls in which rank 1 alone goes wrong, through fit's ordinary callbacks (no
hook in the library): first its weights become NaN after step 30 (so its loss at step 31 is NaN),
then, on a fresh model, its gradient at step 12 (a tensor hook on one parameter). Every save_run
call is counted. Each rank writes what it saw to DIR/rank{R}.pt for the test to compare.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

import hwm_studio.training.run as run_module
from hwm_studio.data.simulate import simulate
from hwm_studio.models import build_model, config_from_data
from hwm_studio.systems import get_system
from hwm_studio.training import distributed
from hwm_studio.training.fit import TrainConfig, seed_everything
from hwm_studio.training.run import split_trajectories

torch.set_num_threads(1)
out = Path(sys.argv[1])
saves: list[str] = []
real_save_run = run_module.save_run


def counted_save_run(run_dir, *args, **kwargs):
    saves.append(str(run_dir))
    return real_save_run(run_dir, *args, **kwargs)


run_module.save_run = counted_save_run
data = simulate(get_system("pendulum"), 10, 30, control="random", seed=0)
options = {"hidden": 16}
seen: dict[str, object] = {}

with distributed.process_group("cpu"):
    me = distributed.rank()
    current: dict[str, torch.nn.Module] = {}

    def nan_weights(event):  # rank 1's weights blow up after step 30; step 25's snapshot holds step 24's
        model = current["model"]
        if event["event"] == "step" and event["step"] == 24:
            seen["good"] = {k: v.clone() for k, v in model.state_dict().items()}
        if event["event"] == "step" and event["step"] == 30 and me == 1:
            with torch.no_grad():
                next(model.parameters()).fill_(float("nan"))

    def nan_gradient(event):  # rank 1's gradient of one parameter is NaN at step 12
        model = current["model"]
        if event["event"] == "step" and event["step"] == 9:
            seen["good_grad"] = {k: v.clone() for k, v in model.state_dict().items()}
        if event["event"] == "step" and event["step"] == 11 and me == 1:
            next(model.parameters()).register_hook(lambda g: g * float("nan"))

    for name, poison, snapshot_every in (("loss", nan_weights, 25), ("grad", nan_gradient, 5)):
        cfg = TrainConfig(steps=60, batch_size=8, horizon=4, snapshot_every=snapshot_every, val_every=0, device="cpu")
        seed_everything(cfg.seed)
        current["model"] = build_model(config_from_data(split_trajectories(data, 0.2, cfg.seed)[0], "hwm", **options))
        model, result, _ = run_module.train_run(
            data, out / name, "hwm", cfg, callbacks=[poison], model=current["model"], structure="full"
        )
        seen[name] = {
            "status": result.status,
            "steps_done": result.steps_done,
            "reason": result.reason,
            "good_step": result.good_step,
            "weights": {k: v.clone() for k, v in model.state_dict().items()},
        }
    seen["saves"] = saves
    torch.save(seen, out / f"rank{me}.pt")
