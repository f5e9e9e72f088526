"""Train the pretrained default checkpoints into assets/models (HWM and MLP baseline per system).

    python scripts/train_assets.py                  # every system in hwm_studio.pretrained.RECIPES
    python scripts/train_assets.py --only pendulum  # one system

Each run directory gets weights (safetensors), config and metrics, with the eval on the
recipe's test set recorded under metrics.json["evals"]["default_test"]; tests re-evaluate and
compare. Deterministic (seeded), CPU, 2 threads.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from hwm_studio.pretrained import ASSETS, EVAL_NAME, KINDS, RECIPES, eval_data, run_dir, training_data
from hwm_studio.training.evaluate import evaluate
from hwm_studio.training.fit import TrainConfig
from hwm_studio.training.run import save_eval, train_run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", choices=sorted(RECIPES))
    ap.add_argument("--kinds", nargs="*", choices=KINDS, default=list(KINDS))
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    for system in args.only or list(RECIPES):
        recipe = RECIPES[system]
        data, test = training_data(recipe), eval_data(recipe)
        for kind in args.kinds:
            out = run_dir(system, kind)
            cfg = TrainConfig(steps=recipe.steps, horizon=recipe.horizon, seed=recipe.seed, device="cpu")
            t0 = time.perf_counter()
            model, result, _ = train_run(data, out, kind, cfg, source={"recipe": recipe.__dict__})
            metrics = evaluate(model, test)[0]
            save_eval(out, metrics, EVAL_NAME)
            summary = {k: metrics[k] for k in ("rollout_mse", "vpt", "energy_mse")}
            print(f"{system:16s} {kind:4s} {result.status} {time.perf_counter() - t0:5.0f} s {json.dumps(summary)}",
                  file=sys.stderr)  # fmt: skip
    size = sum(p.stat().st_size for p in ASSETS.rglob("*") if p.is_file())
    print(f"assets/models: {size / 1e6:.2f} MB", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
