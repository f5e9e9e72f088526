"""The Explore tab: move the scene's controls, watch both models and the truth in phase space.

`ExplorePanel` owns the scene controls (actions, knobs, horizon, seed, which phase plane), the
player and the views (phase portrait, energy ledger, errors, frames, couplings, 3D). Every control
change runs one `Scene.run` on the session's scenes (truth cached, model fused), draws all views
in one `pn.io.hold()` and publishes the result as the session's `rollout`, which the other tabs
read. It talks to models only through the library's public API (`knobs`, `Scene`).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import numpy as np
import panel as pn
import param
from bokeh.core.property.validation import validate
from bokeh.events import Tap

from hwm_studio.models import WorldModel
from hwm_studio.physics.integrators import INTEGRATORS
from hwm_studio.scene import SCHEDULES, ActionSchedule, Scene, SceneResult, SceneSpec, with_initial
from hwm_studio.ui.help import help_card
from hwm_studio.ui.loops import clicked
from hwm_studio.ui.session import Mute, Rollout, Session
from hwm_studio.ui.views import CouplingView, EnergyView, MetricsView, PhaseView, VideoView

MAX_ACTIONS = 2
KNOBS = ("dt", "integrator", "dissipation_scale", "residual_scale")  # what a model may let the studio turn
CONTROLS = ("schedule", "action_0", "action_1", "period", *KNOBS, "steps", "seed", "entity", "coord")


class ExplorePanel(pn.viewable.Viewer):
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

    def __init__(self, session: Session, show_3d: bool = True, **params: Any) -> None:
        super().__init__(**params)
        self.session = session
        self.show_3d = show_3d
        self._quietly = Mute()  # several controls set with one recompute after them
        self._initial: tuple[np.ndarray, np.ndarray] | None = None
        self._last_3d = 0.0
        self.timings: list[float] = []  # seconds per recompute (benchmarks/latency.py reads them)
        self.phase = PhaseView()
        self.energy = EnergyView()
        self.metrics = MetricsView()
        self.video = VideoView()
        self.couplings = CouplingView()
        self.entity3d = None  # built lazily: VTK is the slowest view and optional in tests
        self.phase.figure.on_event(Tap, self._on_tap)
        self._build_widgets()
        self.param.watch(self.recompute, list(CONTROLS))
        session.param.watch(self._on_frame, ["frame"])

    # --- following the session -------------------------------------------------------------------
    def system_changed(self) -> None:
        """A new system: its entities to choose a phase plane from, and its own initial states."""
        names = self.session.system_obj().entity_names()
        self._initial = None
        with self._quietly:
            self.param.entity.objects = names
            self.entity = names[0]

    def models_changed(self) -> None:
        """New models: take the model's own dt and integrator, offer only the knobs it has and
        the actions it takes, and roll out."""
        model = self.session.model
        knobs = model.knobs() if model is not None else {}
        with self._quietly:
            if "dt" in knobs:
                self.dt = float(knobs["dt"])
            if "integrator" in knobs:
                self.integrator = str(knobs["integrator"])
        for name in KNOBS:
            self._widgets[name].disabled = name not in knobs
        system = self.session.system_obj()
        takes = system.action_dim if model is None or model.action_dim else 0  # an action-free model ignores them
        self._widgets["action_0"].disabled = takes < 1
        self._widgets["action_1"].disabled = takes < 2
        self.recompute()

    # --- computing -------------------------------------------------------------------------------
    @property
    def scene(self) -> Scene:
        return self.session.scene

    def spec(self) -> SceneSpec:
        amp = (self.action_0, self.action_1)[:MAX_ACTIONS]
        spec = SceneSpec(self.session.system, steps=self.steps, seed=self.seed,
                         actions=ActionSchedule(self.schedule, tuple(amp), self.period, self.seed))  # fmt: skip
        model = self.session.model
        if model is not None and "dt" in model.knobs():
            spec = replace(spec, dt=self.dt)
        if model is not None and model.sees_pixels:  # its frames show the system it was trained on
            spec = replace(spec, params=tuple(sorted(model.config.system_params.items())))
        if self._initial is not None:
            spec = with_initial(spec, *self._initial)
        return spec

    def knobs(self, model: WorldModel | None) -> dict[str, Any]:
        """The controls' values of the knobs `model` has."""
        if model is None:
            return {}
        have = model.knobs()
        return {k: getattr(self, k) for k in KNOBS if k in have}

    def recompute(self, *events: Any) -> None:
        if events and self._quietly.on:
            return
        start = time.perf_counter()
        session = self.session
        try:
            spec = self.spec()
            knobs = self.knobs(session.model)
            entity = self.param.entity.objects.index(self.entity)
            base_model = session.baseline_model
            base_spec = replace(spec, dt=self.scene.dt(spec))  # same times, so the curves line up

            def second_core() -> tuple[dict | None, SceneResult | None, dict | None]:
                """Runs after the truth, while this thread rolls the model out: both phase planes
                and the baseline's rollout (reads of the models only; their knobs are already set).
                A pixel model's plane needs its alignment, fitted in its run: drawn after it."""
                _, u, tq, tp, _ = self.scene.truth(spec)  # just computed on this thread: cached
                coord = min(self.coord, tq.shape[2] - 1)
                model = session.model
                plane = None if model is not None and model.sees_pixels else self._plane(
                    self.scene, spec, tq, tp, u, entity, coord)  # fmt: skip
                if base_model is None:
                    return plane, None, None
                b = session.baseline_scene.run(base_spec, self.knobs(base_model))
                return plane, b, self._plane(session.baseline_scene, spec, tq, tp, u, entity, coord)

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
            session.status = f"**Cannot roll out:** {exc}"
            return
        frame = min(session.frame, r.steps)
        # validate(False): Bokeh re-checks every array element's type on assignment (~2 ms per
        # change here); these arrays come from numpy and the views' own code, not from users.
        with pn.io.hold(), validate(False):
            session.rollout = Rollout(r, b, entity, coord, plane, base_plane)  # the other tabs draw it
            self._player.end = r.steps
            if session.frame > r.steps:
                session.frame = r.steps
            self.phase.update(r, entity, coord, plane, frame)
            self.energy.update(r)
            self.metrics.update(r, b, session.baseline_name)
            self.couplings.update(r)
            self._show_frame(r, frame)
            session.status = self._describe(r)
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
        model = self.session.model
        what = model.describe()["kind"] if model is not None else "no model"
        text = (f"**{r.system_title}** · model **{self.session.model_name}** ({what}) · true H(0) = {h0:.4g} · "
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

    # --- frames, 3D, clicks ----------------------------------------------------------------------
    def _on_frame(self, *_: Any) -> None:
        r = self.session.result
        if r is None:
            return
        frame = min(self.session.frame, r.steps)
        with pn.io.hold():
            self._show_frame(r, frame)
            entity = self.param.entity.objects.index(self.entity)
            coord = min(self.coord, r.truth_q.shape[2] - 1)
            self.phase.set_frame(r, entity, coord, frame)
            self.energy.cursor.location = r.t[frame]
        self._update_3d(frame)

    def _show_frame(self, r: SceneResult, frame: int) -> None:
        truth, model = self.scene.frames(r, frame)
        self.video.update(truth, model)

    def _update_3d(self, frame: int, force: bool = False) -> None:
        r = self.session.result
        if self.entity3d is None or r is None:
            return
        now = time.perf_counter()
        if not force and now - self._last_3d < 0.2:  # the 3D view refreshes at <= 5 Hz
            return
        self._last_3d = now
        self.entity3d.update(self.session.system_obj(), r, frame) if force else self.entity3d.set_frame(frame)

    def _on_tap(self, event: Tap) -> None:
        """A click on the phase plane moves that entity coordinate's initial (q0, p0)."""
        r = self.session.result
        if r is None or event.x is None or event.y is None:
            return
        q0, p0 = r.truth_q[0].copy(), r.truth_p[0].copy()
        entity = self.param.entity.objects.index(self.entity)
        coord = min(self.coord, q0.shape[1] - 1)
        q0[entity, coord], p0[entity, coord] = float(event.x), float(event.y)
        self.set_initial(q0, p0)

    def set_initial(self, q0: np.ndarray, p0: np.ndarray) -> None:
        """Start the rollouts from (q0, p0), (E, D) each (what a click on the phase plane does)."""
        self._initial = (np.asarray(q0, dtype=float).copy(), np.asarray(p0, dtype=float).copy())
        self.recompute()

    def reset_initial(self, *_: Any) -> None:
        self._initial = None
        self.session.frame = 0
        self.recompute()

    def step(self, frames: int = 1) -> int:
        """Move the player by `frames` (clipped to the rollout); returns the new frame."""
        self._player.value = max(0, min(self.session.frame + int(frames), self.steps))  # linked to the frame
        return self.session.frame

    # --- layout ----------------------------------------------------------------------------------
    def _build_widgets(self) -> None:
        slider = {"type": pn.widgets.FloatSlider, "throttled": True}
        self._controls = pn.Param(
            self.param,
            parameters=list(CONTROLS),
            widgets={"action_0": {**slider, "step": 0.01}, "action_1": {**slider, "step": 0.01},
                     "period": {**slider, "step": 0.1}, "dissipation_scale": {**slider, "step": 0.05},
                     "residual_scale": {**slider, "step": 0.05}, "dt": {**slider, "step": 0.001},
                     "steps": {"type": pn.widgets.IntSlider, "throttled": True}},
            show_name=False, width=290,
        )  # fmt: skip
        self._widgets = {name: self._controls._widgets[name] for name in self._controls._widgets}
        self._player = pn.widgets.Player(start=0, end=self.steps, value=0, interval=60, loop_policy="loop",
                                         width=290)  # fmt: skip
        self._player.link(self.session, value="frame")
        self._reset = pn.widgets.Button(label="Reset initial state", width=290)
        self._reset.on_click(clicked(self.reset_initial))

    def enable_3d(self) -> None:
        from hwm_studio.ui.entity3d import EntityView3D

        if self.entity3d is None:
            self.entity3d = EntityView3D()
            r = self.session.result
            if r is not None:
                self._update_3d(min(self.session.frame, r.steps), force=True)

    def close(self) -> None:
        """Free the offscreen 3D scene (the session closed)."""
        if self.entity3d is not None:
            self.entity3d.close()

    def controls_panel(self) -> pn.viewable.Viewable:
        """The scene's controls and the player (the sidebar's lower part; a notebook shows them beside
        any single view)."""
        return pn.Column(self._controls, self._player, self._reset, width=310)

    def __panel__(self) -> pn.viewable.Viewable:
        if self.show_3d:
            self.enable_3d()
        views_3d = [self.entity3d] if self.show_3d and self.entity3d is not None else []
        return pn.Column(
            help_card("Explore"),
            pn.Row(self.phase, self.energy, sizing_mode="stretch_width"),
            pn.Row(self.metrics, pn.Column(self.video, *views_3d), self.couplings, sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )
