"""The studio: pick a system and a model, move sliders, watch phase space; compare; train live.

One `Studio` per browser session (panel serve runs the app once per session), holding its own
models, scenes and training job; only the read-only checkpoint files are shared. Every control
change runs one `Scene.run` (truth cached, model fused) and updates all views in one
`pn.io.hold()`. The studio talks to models only through the library's public API
(`load_model`, `knobs`/`configure`, `Scene`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import numpy as np
import panel as pn
import param
from bokeh.core.property.validation import validate
from bokeh.events import Tap

from hwm_studio.models import WorldModel
from hwm_studio.physics.integrators import INTEGRATORS
from hwm_studio.pretrained import available, pixel_assets, run_dir, studio_systems
from hwm_studio.scene import SCHEDULES, ActionSchedule, Scene, SceneResult, SceneSpec, with_initial
from hwm_studio.systems import known_as
from hwm_studio.training.checkpoint import CheckpointError, load_model, read_config
from hwm_studio.training.efficiency import load_results
from hwm_studio.ui.compare import ComparePanel
from hwm_studio.ui.plan import PlanContext, PlanPanel
from hwm_studio.ui.playing import PlayPanel
from hwm_studio.ui.train import LIVE, SIMULATE, TrainPanel, TrainSource
from hwm_studio.ui.views import (
    CouplingView,
    EfficiencyView,
    EnergyView,
    MetricsView,
    PhaseView,
    VideoView,
)
from hwm_studio.workspace import Workspace, WorkspaceError

MAX_ACTIONS = 2
__all__ = ["LIVE", "SIMULATE", "Studio"]


class Studio(pn.viewable.Viewer):
    system = param.Selector(default="pendulum", objects=studio_systems(), doc="ground-truth system")
    model_name = param.Selector(default="hwm", objects=["hwm"], label="Model")
    baseline_name = param.Selector(default="mlp", objects=["mlp"], label="Compare with")
    schedule = param.Selector(default="constant", objects=list(SCHEDULES), doc="action schedule")
    action_0 = param.Number(default=0.0, bounds=(-1.0, 1.0), label="Action 1 (fraction of bound)")
    action_1 = param.Number(default=0.0, bounds=(-1.0, 1.0), label="Action 2 (fraction of bound)")
    period = param.Number(default=2.0, bounds=(0.2, 10.0), label="Sine period (s)")
    dissipation_scale = param.Number(default=1.0, bounds=(0.0, 3.0), label="Dissipation scale")
    residual_scale = param.Number(default=1.0, bounds=(0.0, 2.0), label="Residual weight (0 = pure pH)")
    integrator = param.Selector(default="leapfrog", objects=list(INTEGRATORS))
    dt = param.Number(default=0.05, bounds=(0.002, 0.2), label="dt")
    steps = param.Integer(default=300, bounds=(10, 1000), label="Horizon (steps)")
    seed = param.Integer(default=0, bounds=(0, 10_000), label="Seed (initial state)")
    entity = param.Selector(default="pendulum", objects=["pendulum"], label="Phase plane of")
    coord = param.Integer(default=0, bounds=(0, 1), label="Coordinate")
    frame = param.Integer(default=0, bounds=(0, 1000))
    status = param.String(default="")
    show_3d = param.Boolean(default=True, doc="draw the 3D entity view (needs vtk.js: not in an inline notebook page)")

    def __init__(self, workspace: Workspace | None = None, **params: Any) -> None:
        super().__init__(**params)
        self._muted = False
        self.workspace = workspace or Workspace()
        self.scene = Scene()
        self.baseline_scene = Scene(truth_from=self.scene)
        self.result: SceneResult | None = None
        self.baseline: SceneResult | None = None
        self._initial: tuple[np.ndarray, np.ndarray] | None = None
        self._live_version = -1  # the live run's weights the shown model has
        self._last_3d = 0.0
        self.timings: list[float] = []
        self.phase = PhaseView()
        self.energy = EnergyView()
        self.metrics = MetricsView()
        self.video = VideoView()
        self.couplings = CouplingView()
        self.efficiency = EfficiencyView()
        try:  # the benchmark's file, read once per session; a broken one is a message, not a crash
            self._efficiency_results, self._efficiency_problem = load_results(), None
        except ValueError as exc:
            self._efficiency_results, self._efficiency_problem = None, str(exc)
        self.compare = ComparePanel(self.metrics)
        self.entity3d = None  # built lazily: VTK is the slowest view and optional in tests
        self.phase.figure.on_event(Tap, self._on_tap)
        self.training = TrainPanel(
            lambda: TrainSource(self.system, self.seed), self.workspace,
            on_models_changed=self._on_system, on_weights=self._on_live_weights,
        )  # fmt: skip
        self.planning = PlanPanel(self.plan_context)
        self.play = PlayPanel(self.play_source, self.workspace, on_saved=self.refresh_data_sources)
        self._build_widgets()
        self._on_system()
        self.param.watch(self._on_system, ["system"])
        self.param.watch(self._on_model, ["model_name", "baseline_name"])
        self.param.watch(
            self._recompute,
            ["schedule", "action_0", "action_1", "period", "dissipation_scale", "residual_scale", "integrator",
             "dt", "steps", "seed", "entity", "coord"],
        )  # fmt: skip
        self.param.watch(self._on_frame, ["frame"])

    # --- models ----------------------------------------------------------------------------------
    def _model_options(self) -> list[str]:
        opts = list(available().get(self.system, []))
        opts += list(pixel_assets().get(self.system, {}))
        for name in self.workspace.runs():
            try:
                cfg = read_config(self.workspace.run_path(name))
            except (CheckpointError, WorkspaceError):
                continue
            if known_as(cfg.system, cfg.system_params) == self.system:
                opts.append(f"run: {name}")
        if self.training.job is not None and self.training.job_system == self.system:
            opts.append(LIVE)
        return opts or ["(no model)"]

    def _load(self, name: str) -> WorldModel | None:
        if name == "(no model)":
            return None
        job = self.training.job
        if name == LIVE and job is not None:
            import copy

            model = copy.deepcopy(job.model)
            version, weights = job.latest_weights()
            if weights is not None:
                model.load_state_dict(weights)
            self._live_version = version
            return model.eval()
        pixel = pixel_assets().get(self.system, {})
        if name in pixel:
            return load_model(pixel[name])
        path = self.workspace.run_path(name[5:]) if name.startswith("run: ") else run_dir(self.system, name)
        return load_model(path)

    def _on_system(self, *_: Any) -> None:
        opts = self._model_options()
        names = self._system_obj().entity_names()
        self._initial = None
        with self._quietly():
            self.param.model_name.objects = opts
            self.param.baseline_name.objects = opts
            self.param.entity.objects = names
            self.param.update(model_name="hwm" if "hwm" in opts else opts[0],
                              baseline_name="mlp" if "mlp" in opts else opts[-1], entity=names[0])  # fmt: skip
        self.planning.refresh_options(self._system_obj())
        self.efficiency.update(self.system, self._efficiency_results, self._efficiency_problem)
        self._on_model()

    def _match_baseline(self) -> None:
        """Pixel models compare with the pixel baseline, state models with the state one: their
        errors are different measures (pixel MSE vs normalised state error)."""
        pixel = pixel_assets().get(self.system, {})
        opts = self.param.baseline_name.objects
        if (self.model_name in pixel) == (self.baseline_name in pixel):
            return
        wanted = [o for o in opts if o.startswith("mlp-pixels")] if self.model_name in pixel else ["mlp"]
        if wanted and wanted[0] in opts:
            with self._quietly():
                self.baseline_name = wanted[0]

    @contextmanager
    def _quietly(self) -> Iterator[None]:
        """Set several controls without a recompute per change. Unlike param's discard_events,
        the widgets still hear about it (new options and values reach the browser)."""
        self._muted = True
        try:
            yield
        finally:
            self._muted = False

    def _on_model(self, *events: Any) -> None:
        if events and self._muted:
            return
        if any(e.name == "model_name" for e in events):
            self._match_baseline()
        try:
            self.scene.model = self._load(self.model_name)
            self.baseline_scene.model = self._load(self.baseline_name)
        except (CheckpointError, WorkspaceError) as exc:
            self.status = f"**Could not load the model:** {exc}"
            self._status_pane.object = self.status
            return
        if self.play.player is not None:  # it plays the model that was selected: start again
            self.play.invalidate()
        model = self.scene.model
        knobs = model.knobs() if model is not None else {}
        with self._quietly():
            if "dt" in knobs:
                self.dt = float(knobs["dt"])
            if "integrator" in knobs:
                self.integrator = str(knobs["integrator"])
        for name in ("dt", "integrator", "dissipation_scale", "residual_scale"):
            self._widgets[name].disabled = name not in knobs
        system = self._system_obj()
        takes = system.action_dim if model is None or model.action_dim else 0  # an action-free model ignores them
        self._widgets["action_0"].disabled = takes < 1
        self._widgets["action_1"].disabled = takes < 2
        self._recompute()

    def _system_obj(self):  # noqa: ANN202 (a System)
        return self.scene.system(SceneSpec(self.system))

    # --- computing -------------------------------------------------------------------------------
    def spec(self) -> SceneSpec:
        amp = (self.action_0, self.action_1)[:MAX_ACTIONS]
        spec = SceneSpec(self.system, steps=self.steps, seed=self.seed,
                         actions=ActionSchedule(self.schedule, tuple(amp), self.period, self.seed))  # fmt: skip
        if self.scene.model is not None and "dt" in self.scene.model.knobs():
            spec = replace(spec, dt=self.dt)
        model = self.scene.model
        if model is not None and model.sees_pixels:  # its frames show the system it was trained on
            spec = replace(spec, params=tuple(sorted(model.config.system_params.items())))
        if self._initial is not None:
            spec = with_initial(spec, *self._initial)
        return spec

    def knobs(self, model: WorldModel | None) -> dict[str, Any]:
        if model is None:
            return {}
        have = model.knobs()
        wanted = {"dt": self.dt, "integrator": self.integrator, "dissipation_scale": self.dissipation_scale,
                  "residual_scale": self.residual_scale}  # fmt: skip
        return {k: v for k, v in wanted.items() if k in have}

    def _recompute(self, *events: Any) -> None:
        if events and self._muted:
            return
        start = time.perf_counter()
        try:
            spec = self.spec()
            knobs = self.knobs(self.scene.model)
            entity = self.param.entity.objects.index(self.entity)
            base_model = self.baseline_scene.model
            base_spec = replace(spec, dt=self.scene.dt(spec))  # same times, so the curves line up

            def second_core() -> tuple[dict | None, SceneResult | None, dict | None]:
                """Runs after the truth, while this thread rolls the model out: both phase planes
                and the baseline's rollout (reads of the models only; their knobs are already set).
                A pixel model's plane needs its alignment, fitted in its run: drawn after it."""
                _, u, tq, tp, _ = self.scene.truth(spec)  # just computed on this thread: cached
                coord = min(self.coord, tq.shape[2] - 1)
                model = self.scene.model
                plane = None if model is not None and model.sees_pixels else self._plane(
                    self.scene, spec, tq, tp, u, entity, coord)  # fmt: skip
                if base_model is None:
                    return plane, None, None
                b = self.baseline_scene.run(base_spec, self.knobs(base_model))
                return plane, b, self._plane(self.baseline_scene, spec, tq, tp, u, entity, coord)

            r = self.scene.run(spec, knobs, sidecar=second_core)
            plane, b, base_plane = r.extras["sidecar"]
            if b is not None and (
                b.dt != r.dt or b.reads_frames != r.reads_frames
            ):  # a discrete baseline keeps its own
                b = base_plane = None  # step; pixel and state models' errors are different measures
            coord = min(self.coord, r.truth_q.shape[2] - 1)
            if r.reads_frames:
                plane = self._plane(self.scene, spec, r.truth_q, r.truth_p, r.actions, entity, coord)
        except (ValueError, RuntimeError) as exc:
            self._status_pane.object = f"**Cannot roll out:** {exc}"
            return
        self.result, self.baseline = r, b
        frame = min(self.frame, r.steps)
        # validate(False): Bokeh re-checks every array element's type on assignment (~2 ms per
        # change here); these arrays come from numpy and the views' own code, not from users.
        with pn.io.hold(), validate(False):
            self._player.end = r.steps
            if self.frame > r.steps:
                self.frame = r.steps
            self.phase.update(r, entity, coord, plane, frame)
            self.energy.update(r)
            self.metrics.update(r, b, self.baseline_name)
            self.couplings.update(r)
            self.compare.update(r, b, entity, coord, plane, base_plane, frame)
            self._show_frame(frame)
            self._status_pane.object = self._describe(r)
        self._update_3d(frame, force=True)
        self.timings.append(time.perf_counter() - start)

    def _plane(
        self, scene: Scene, spec: SceneSpec, tq: np.ndarray, tp: np.ndarray, u: np.ndarray, entity: int, coord: int
    ) -> dict | None:
        """The model's energy levels and flow on the plane around the true trajectory (tq, tp)."""
        seen = np.isfinite(tq).all(axis=(1, 2)) & np.isfinite(tp).all(axis=(1, 2))
        if scene.model is None or not seen.any():
            return None
        first = int(np.argmax(seen))
        tq, tp = tq[seen], tp[seen]
        q, p = tq[:, entity, coord], tp[:, entity, coord]
        pad_q = 0.25 * max(np.ptp(q), 0.5)
        pad_p = 0.25 * max(np.ptp(p), 0.5)
        extent = (q.min() - pad_q, q.max() + pad_q, p.min() - pad_p, p.max() + pad_p)
        u0 = u[min(first, len(u) - 1)] if len(u) else None
        plane = scene.phase_plane(spec, entity, coord, (tq[0], tp[0]), extent, u=u0)
        plane["extent"] = extent
        return plane

    def _describe(self, r: SceneResult) -> str:
        h0 = r.truth_energy[0]
        model = self.scene.model
        what = model.describe()["kind"] if model is not None else "no model"
        text = (f"**{r.system_title}** · model **{self.model_name}** ({what}) · true H(0) = {h0:.4g} · "
                f"{r.steps} steps of dt {r.dt:.3g}")  # fmt: skip
        if r.reads_frames and r.truth_frames is not None:
            size = r.truth_frames.shape[1]
            text += (f" · reads the first {r.context + 1} true {size}x{size} frames, then predicts; its latent "
                     "(q, p) is drawn in the system's coordinates through the map fitted on its readings of "
                     "the true frames")  # fmt: skip
        if r.couplings:
            names = r.entity_names
            pairs = sorted(r.couplings.items(), key=lambda kv: -kv[1])
            text += " · learned couplings (RMS pair force on the true states): " + ", ".join(
                f"{names[i]}–{names[j]} {v:.3g}" for (i, j), v in pairs
            )
        return text

    def plan_context(self) -> PlanContext:
        """What the Plan tab plans from: the selected model, and the true state at the current frame."""
        if self.result is None:
            raise ValueError("nothing rolled out yet")
        r = self.result
        frame = min(self.frame, r.steps)
        return PlanContext(
            system=self._system_obj(), model=self.scene.model, model_name=self.model_name,
            q0=r.truth_q[frame].copy(), p0=r.truth_p[frame].copy(), dt=r.dt,
            entity=self.param.entity.objects.index(self.entity), coord=min(self.coord, r.truth_q.shape[2] - 1),
        )  # fmt: skip

    def play_source(self):  # noqa: ANN201 (WorldModel | None, System)
        """What the Play tab drives: the selected model and the system of the current scene (for a
        pixel model the one it was trained on, whose frames it reads); it samples its own start."""
        return self.scene.model, self.scene.system(self.spec())

    def train_sources(self) -> list[str]:
        """What the Train tab can learn from: the selected system simulated, or a workspace file."""
        return self.training.sources()

    def refresh_data_sources(self, saved: str | None = None) -> None:
        """New files in the workspace (an episode just played) become Train tab sources."""
        self.training.refresh_sources(saved)

    def _on_live_weights(self, version: int) -> None:
        """The live run has new weights: the model shown, if it is that run, takes them (every ~3 s)."""
        if self.model_name == LIVE and version != self._live_version:
            now = time.perf_counter()
            if now - getattr(self, "_last_live", 0.0) > 3.0:
                self._last_live = now
                self._on_model()

    # --- frames, 3D, clicks --------------------------------------------------------------------
    def _on_frame(self, *_: Any) -> None:
        if self.result is None:
            return
        frame = min(self.frame, self.result.steps)
        with pn.io.hold():
            self._show_frame(frame)
            entity = self.param.entity.objects.index(self.entity)
            coord = min(self.coord, self.result.truth_q.shape[2] - 1)
            self.phase.set_frame(self.result, entity, coord, frame)
            self.energy.cursor.location = self.result.t[frame]
        self._update_3d(frame)

    def _show_frame(self, frame: int) -> None:
        assert self.result is not None
        truth, model = self.scene.frames(self.result, frame)
        self.video.update(truth, model)

    def _update_3d(self, frame: int, force: bool = False) -> None:
        if self.entity3d is None or self.result is None:
            return
        now = time.perf_counter()
        if not force and now - self._last_3d < 0.2:  # the 3D view refreshes at <= 5 Hz
            return
        self._last_3d = now
        self.entity3d.update(self._system_obj(), self.result, frame) if force else self.entity3d.set_frame(frame)

    def _on_tap(self, event: Tap) -> None:
        """A click on the phase plane moves that entity coordinate's initial (q0, p0)."""
        if self.result is None or event.x is None or event.y is None:
            return
        q0, p0 = self.result.truth_q[0].copy(), self.result.truth_p[0].copy()
        entity = self.param.entity.objects.index(self.entity)
        coord = min(self.coord, q0.shape[1] - 1)
        q0[entity, coord], p0[entity, coord] = float(event.x), float(event.y)
        self._initial = (q0, p0)
        self._recompute()

    def reset_initial(self, *_: Any) -> None:
        self._initial = None
        self.frame = 0
        self._recompute()

    def close(self) -> None:
        """Stop this session's training and planning (called when the browser tab closes)."""
        self.planning.close()
        self.play.close()
        self.training.close()

    # --- layout ----------------------------------------------------------------------------------
    def _build_widgets(self) -> None:
        slider = {"type": pn.widgets.FloatSlider, "throttled": True}
        self._controls = pn.Param(
            self.param,
            parameters=["system", "model_name", "baseline_name", "schedule", "action_0", "action_1", "period",
                        "dissipation_scale", "residual_scale", "integrator", "dt", "steps", "seed", "entity",
                        "coord"],
            widgets={"action_0": {**slider, "step": 0.01}, "action_1": {**slider, "step": 0.01},
                     "period": {**slider, "step": 0.1}, "dissipation_scale": {**slider, "step": 0.05},
                     "residual_scale": {**slider, "step": 0.05}, "dt": {**slider, "step": 0.001},
                     "steps": {"type": pn.widgets.IntSlider, "throttled": True}},
            show_name=False, width=290,
        )  # fmt: skip
        self._widgets = {name: self._controls._widgets[name] for name in self._controls._widgets}
        self._player = pn.widgets.Player(start=0, end=self.steps, value=0, interval=60, loop_policy="loop",
                                         width=290)  # fmt: skip
        self._player.link(self, value="frame")
        self._reset = pn.widgets.Button(label="Reset initial state", width=290)
        self._reset.on_click(self.reset_initial)
        self._status_pane = pn.pane.Markdown("", sizing_mode="stretch_width")

    def enable_3d(self) -> None:
        from hwm_studio.ui.entity3d import EntityView3D

        if self.entity3d is None:
            self.entity3d = EntityView3D()
            if self.result is not None:
                self._update_3d(min(self.frame, self.result.steps), force=True)

    def _on_tab(self, old: int, new: int, plan_tab: int, play_tab: int) -> None:
        if new == plan_tab:
            self.planning.enable_3d()
        if old == play_tab:  # a loop nobody sees is paused, not left spending the CPU
            self.play.paused = True
        if new == play_tab and self.play.player is None:
            self.play.start()

    def controls_panel(self) -> pn.viewable.Viewable:
        """The sidebar's controls on their own (a notebook shows them beside any single view)."""
        return pn.Column(self._controls, self._player, self._reset, width=310)

    def training_panel(self) -> pn.viewable.Viewable:
        """The Train tab on its own."""
        return self.training

    def __panel__(self) -> pn.viewable.Viewable:
        if self.show_3d:
            self.enable_3d()
        views_3d = [self.entity3d] if self.show_3d and self.entity3d is not None else []
        explore = pn.Column(
            pn.Row(self.phase, self.energy, sizing_mode="stretch_width"),
            pn.Row(self.metrics, pn.Column(self.video, *views_3d), self.couplings, sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )
        tabs = pn.Tabs(("Explore", explore), ("Compare", self.compare), ("Train", self.training),
                       ("Plan", self.planning), ("Play", self.play), ("Data efficiency", self.efficiency),
                       sizing_mode="stretch_width", dynamic=False)  # fmt: skip
        plan_tab, play_tab = 3, 4
        tabs.param.watch(lambda e: self._on_tab(e.old, e.new, plan_tab, play_tab), "active")
        sidebar = pn.Column("## hwm_studio", self._controls, self._player, self._reset, width=310)
        return pn.Row(sidebar, pn.Column(self._status_pane, tabs, sizing_mode="stretch_width"),
                      sizing_mode="stretch_width")  # fmt: skip
