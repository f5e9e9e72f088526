"""The pretrained default checkpoints under assets/models: what they are and how they were made.

One recipe per system (training data, steps, test set), shared by `scripts/train_assets.py`
(which writes them), the tests (which re-evaluate them against the numbers recorded beside
them) and the studio (which opens on them). Each run directory records its eval under
metrics.json["evals"]["default_test"].
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hwm_studio.data.format import TrajectoryData
from hwm_studio.data.simulate import simulate
from hwm_studio.systems import get_system

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "models"
KINDS = ("hwm", "mlp")
EVAL_NAME = "default_test"


@dataclass(frozen=True)
class Recipe:
    system: str
    steps: int = 1500
    trajectories: int = 64
    points: int = 60
    horizon: int = 8
    test_trajectories: int = 8
    test_points: int = 301  # 300-step rollouts, the studio's default view
    seed: int = 0


RECIPES: dict[str, Recipe] = {
    r.system: r
    for r in (
        Recipe("spring"),
        Recipe("pendulum"),
        Recipe("gym_pendulum"),
        Recipe("double_pendulum", steps=2500),
        Recipe("chain", steps=2000),
        Recipe("three_body", steps=2500),
    )
}


def run_dir(system: str, kind: str, root: Path = ASSETS) -> Path:
    return root / f"{system}_{kind}"


def training_data(recipe: Recipe) -> TrajectoryData:
    """Random-action trajectories: actions excite the learned input map."""
    return simulate(get_system(recipe.system), recipe.trajectories, recipe.points, control="random", seed=recipe.seed)


def eval_data(recipe: Recipe) -> TrajectoryData:
    """Unseen, unforced starts (another seed), rolled out far beyond the training horizon."""
    return simulate(
        get_system(recipe.system), recipe.test_trajectories, recipe.test_points, control="zero", seed=recipe.seed + 1000
    )


def pixel_assets(root: Path = ASSETS) -> dict[str, dict[str, Path]]:
    """Pretrained pixel models (the HGN protocol's runs, benchmarks/hgn.py), by the system they saw.

    Keyed by the studio's system name (the task's: "two_body", not its base "nbody"), then by a label
    naming the kind and the run: "hwm-pixels: hgn_mass_spring". Directories are hgn_<task>_<kind>_pixels.
    """
    from hwm_studio.protocols.hgn import TASKS
    from hwm_studio.training.checkpoint import read_config

    found: dict[str, dict[str, Path]] = {}
    for path in sorted(root.glob("hgn_*")):
        task = path.name.removeprefix("hgn_").removesuffix("_pixels").rsplit("_", 1)[0]
        if task in TASKS and (path / "weights.safetensors").exists():
            cfg = read_config(path)
            found.setdefault(TASKS[task].system, {})[f"{cfg.kind}: hgn_{task}"] = path
    return found


def studio_systems() -> list[str]:
    """The systems the studio offers: those with pretrained state models, then those that have
    pretrained pixel models only (the two bodies of the HGN protocol)."""
    return [*RECIPES, *(system for system in pixel_assets() if system not in RECIPES)]


def available() -> dict[str, list[str]]:
    """Systems with pretrained runs on disk, and their kinds."""
    found: dict[str, list[str]] = {}
    for system in RECIPES:
        kinds = [k for k in KINDS if (run_dir(system, k) / "weights.safetensors").exists()]
        if kinds:
            found[system] = kinds
    return found
