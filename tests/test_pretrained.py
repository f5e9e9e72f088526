"""The committed pretrained checkpoints: present, small, loadable, and scoring what they record."""

from __future__ import annotations

import pytest

from hwm_studio.pretrained import ASSETS, EVAL_NAME, KINDS, RECIPES, eval_data, run_dir
from hwm_studio.protocols.hgn import ROLLOUT, dataset
from hwm_studio.training.checkpoint import load_metrics, load_model
from hwm_studio.training.evaluate import evaluate, evaluate_pixels

PIXEL_ASSETS = sorted(ASSETS.glob("hgn_*"))


def test_every_default_is_committed_and_small() -> None:
    missing = [f"{s}_{k}" for s in RECIPES for k in KINDS if not (run_dir(s, k) / "weights.safetensors").exists()]
    assert not missing, f"run scripts/train_assets.py to make: {', '.join(missing)}"
    size = sum(p.stat().st_size for p in ASSETS.rglob("*") if p.is_file())
    assert size < 6e6, f"assets/models is {size / 1e6:.1f} MB"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("system", list(RECIPES))
def test_pretrained_eval_matches_the_recorded_numbers(system: str, kind: str) -> None:
    path = run_dir(system, kind)
    model = load_model(path)
    assert model.kind == kind
    assert model.config.system in (system, "nbody")  # presets record their base system
    recorded = load_metrics(path)["evals"][EVAL_NAME]
    got = evaluate(model, eval_data(RECIPES[system]))[0]
    assert got["horizon"] == recorded["horizon"]
    for key in ("rollout_mse", "vpt", "energy_mse"):
        assert got[key] == pytest.approx(recorded[key], rel=1e-3, abs=1e-9), key


def test_the_pixel_assets_exist() -> None:
    have = {(p.name.removeprefix("hgn_").rsplit("_", 2)[0], load_model(p).kind) for p in PIXEL_ASSETS}
    wanted = {(task, kind) for task in ("mass_spring", "pendulum", "two_body") for kind in ("hwm-pixels", "mlp-pixels")}
    assert wanted <= have, f"run benchmarks/hgn.py --assets to make: {sorted(wanted - have)}"


@pytest.mark.parametrize("path", PIXEL_ASSETS, ids=[p.name for p in PIXEL_ASSETS])
def test_pixel_asset_scores_what_it_records(path) -> None:
    """Regenerate the HGN test set the run was scored on and score the committed weights again."""
    model = load_model(path)
    recorded = load_metrics(path)["evals"]["hgn"]
    task = path.name.removeprefix("hgn_").rsplit("_", 2)[0]  # hgn_<task>_<kind>_pixels
    test = dataset(task, recorded["test_trajectories"], recorded["context"], steps=ROLLOUT, seed=recorded["test_seed"])
    got = evaluate_pixels(model, test, ROLLOUT)[0]
    assert got["pixel_mse"] == pytest.approx(recorded["test"]["pixel_mse"], rel=1e-3)
