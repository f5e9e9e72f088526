"""One browser session's shared state: the system, the two models, the current rollout and frame, the workspace.

Every tab reads it and none reaches into another: the model selectors write `system`, `model_name`
and `baseline_name`; the Explore tab writes `rollout` (what it rolled out and where it drew the
phase plane) and the player writes `frame`; Compare draws `rollout`, Plan starts from
`true_state()`, Play drives `model` on `model_system()`. The models are loaded only here, through
the library's public API (`load_model`, the pretrained registry, the workspace's runs).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import param

from hwm_studio.models import WorldModel
from hwm_studio.pretrained import available, pixel_assets, run_dir, studio_systems
from hwm_studio.scene import Scene, SceneResult, SceneSpec
from hwm_studio.systems import known_as
from hwm_studio.systems.base import System
from hwm_studio.training.checkpoint import CheckpointError, load_shared, read_config
from hwm_studio.training.job import TrainingJob
from hwm_studio.workspace import Workspace, WorkspaceError

LIVE = "training run (live)"  # how the studio names the model being trained
NO_MODEL = "(no model)"
MAX_NOTICED = 3  # unreadable workspace runs named in the notice (the rest are counted)


class Mute:
    """`with mute:` sets several parameters with one reaction after them: watchers skip their events
    while `mute.on`. Unlike param's discard_events, the widgets still hear each change (new options
    and values reach the browser)."""

    def __init__(self) -> None:
        self.on = False

    def __enter__(self) -> Mute:
        self.on = True
        return self

    def __exit__(self, *_: object) -> None:
        self.on = False


@dataclass(frozen=True, eq=False)  # each recompute is a new one (param compares by identity)
class Rollout:
    """One recompute as the tabs draw it: the model's result, the baseline's (None when it is not
    comparable), and the phase plane it was drawn on (entity, coordinate, each model's field there)."""

    result: SceneResult
    baseline: SceneResult | None
    entity: int
    coord: int
    plane: dict | None = None
    base_plane: dict | None = None


class Session(param.Parameterized):
    system = param.Selector(default="pendulum", objects=studio_systems(), doc="ground-truth system")
    model_name = param.Selector(default="hwm", objects=["hwm"], label="Model")
    baseline_name = param.Selector(default="mlp", objects=["mlp"], label="Compare with")
    rollout = param.ClassSelector(class_=Rollout, default=None, allow_None=True, doc="the current rollout")
    frame = param.Integer(default=0, bounds=(0, None), doc="the step shown (the player's position)")
    status = param.String(default="", doc="what the session shows above the tabs (markdown)")
    notice = param.String(default="", doc="workspace runs that cannot be read, and why (markdown)")

    def __init__(self, workspace: Workspace | None = None,
                 live: Callable[[], TrainingJob | None] = lambda: None, **params: Any) -> None:  # fmt: skip
        """`live`: the training run whose model is offered as LIVE for the current system (None: none)."""
        super().__init__(**params)
        self.workspace = workspace or Workspace()
        self.live = live
        self.scene = Scene()
        self.baseline_scene = Scene(truth_from=self.scene)  # one truth for both models
        self.live_version = -1  # the live run's weights the loaded model has
        self._live_copy: tuple[TrainingJob, WorldModel] | None = None
        self.quietly = Mute()  # several selectors set with one reload after them

    # --- what is selected ------------------------------------------------------------------------
    @property
    def model(self) -> WorldModel | None:
        return self.scene.model

    @property
    def baseline_model(self) -> WorldModel | None:
        return self.baseline_scene.model

    @property
    def result(self) -> SceneResult | None:
        return None if self.rollout is None else self.rollout.result

    @property
    def baseline(self) -> SceneResult | None:
        return None if self.rollout is None else self.rollout.baseline

    @property
    def pixel_models(self) -> dict[str, Any]:
        return pixel_assets().get(self.system, {})

    def system_obj(self) -> System:
        return self.scene.system(SceneSpec(self.system))

    def model_system(self) -> System:
        """The system the selected model acts on: for a pixel model the one it was trained on
        (its frames show that one's parameters), else the selected system's defaults."""
        model = self.model
        if model is not None and model.sees_pixels:
            return self.scene.system(SceneSpec(self.system, params=tuple(sorted(model.config.system_params.items()))))
        return self.system_obj()

    def true_state(self) -> tuple[np.ndarray, np.ndarray]:
        """The true (q, p) at the shown frame, (E, D) each: where Plan starts."""
        r = self.result
        if r is None:
            raise ValueError("nothing rolled out yet")
        frame = min(self.frame, r.steps)
        return r.truth_q[frame].copy(), r.truth_p[frame].copy()

    # --- choosing and loading models -------------------------------------------------------------
    def model_options(self) -> list[str]:
        """The pretrained models of the system, its pixel models, the workspace's runs on it, and
        the live training run when it learns this system."""
        opts = list(available().get(self.system, []))
        opts += list(self.pixel_models)
        runs, _ = self.workspace_runs()
        opts += [f"run: {name}" for name, cfg in runs.items() if known_as(cfg.system, cfg.system_params) == self.system]
        if self.live() is not None:
            opts.append(LIVE)
        return opts or [NO_MODEL]

    def workspace_runs(self) -> tuple[dict[str, Any], dict[str, str]]:
        """The workspace's runs whose checkpoint header reads (name -> model config), and those
        that do not (name -> why, one line each)."""
        good, bad = {}, {}
        for name in self.workspace.runs():
            try:
                good[name] = read_config(self.workspace.run_path(name))
            except (CheckpointError, WorkspaceError) as exc:
                bad[name] = str(exc).replace(f"{self.workspace.root}{os.sep}", "")
        return good, bad

    def refresh_models(self) -> None:
        """New options for the selectors (the system changed, a run was saved or started), keeping
        the defaults' pair: the pretrained HWM against the MLP when the system has them. Runs in
        the workspace that cannot be read are not offered; `notice` says which and why."""
        _, bad = self.workspace_runs()
        shown = [f"`{name}`: {why}" for name, why in list(bad.items())[:MAX_NOTICED]]
        more = f"; and {len(bad) - MAX_NOTICED} more" if len(bad) > MAX_NOTICED else ""
        self.notice = f"**{len(bad)} workspace run(s) cannot be read:** {'; '.join(shown)}{more}" if bad else ""
        opts = self.model_options()
        with self.quietly:
            self.param.model_name.objects = opts
            self.param.baseline_name.objects = opts
            self.param.update(model_name="hwm" if "hwm" in opts else opts[0],
                              baseline_name="mlp" if "mlp" in opts else opts[-1])  # fmt: skip

    def match_baseline(self) -> None:
        """Pixel models compare with the pixel baseline, state models with the state one: their
        errors are different measures (pixel MSE vs normalised state error)."""
        pixel = self.pixel_models
        if (self.model_name in pixel) == (self.baseline_name in pixel):
            return
        opts = self.param.baseline_name.objects
        wanted = [o for o in opts if o.startswith("mlp-pixels")] if self.model_name in pixel else ["mlp"]
        if wanted and wanted[0] in opts:
            with self.quietly:
                self.baseline_name = wanted[0]

    def load_models(self) -> None:
        """Load both selected models into their scenes; a file that cannot be read raises
        CheckpointError or WorkspaceError and leaves the scenes as they were."""
        model, baseline = self._load(self.model_name), self._load(self.baseline_name)
        self.scene.model, self.baseline_scene.model = model, baseline

    def close(self) -> None:
        """Drop the models and the truth (the browser session closed): shared weights stay loaded
        for other sessions, this session's copies and caches go."""
        self.scene = Scene()
        self.baseline_scene = Scene(truth_from=self.scene)
        self._live_copy = None
        with param.parameterized.discard_events(self):  # nothing is drawn any more
            self.rollout = None

    def _load(self, name: str) -> WorldModel | None:
        if name == NO_MODEL:
            return None
        job = self.live()
        if name == LIVE and job is not None:
            # one copy per run, refreshed in place: its traced graphs are kept, not traced anew
            # every few seconds (torch never frees a traced graph, see physics.fused)
            if self._live_copy is None or self._live_copy[0] is not job:
                self._live_copy = (job, copy.deepcopy(job.model))
            model = self._live_copy[1]
            version, weights = job.latest_weights()
            if weights is not None:
                model.load_state_dict(weights)
            self.live_version = version
            return model.eval()
        if name in self.pixel_models:
            return load_shared(self.pixel_models[name])
        path = self.workspace.run_path(name[5:]) if name.startswith("run: ") else run_dir(self.system, name)
        return load_shared(path)  # read-only here: every session shares its weights and traced graphs
