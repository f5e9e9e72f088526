"""The studio: one session's tabs, composed. Pick a system and models, explore, compare, train, plan, play.

One `Studio` per browser session (panel serve runs the app once per session). It holds the shared
`Session` (system, models, current rollout and frame, workspace) and one component per tab, each
owning its widgets and state and reading the session: `ExplorePanel`, `ComparePanel`, `TrainPanel`,
`PlanPanel`, `PlayPanel`, and the data-efficiency view. What is left here is the wiring between
them (a new system or model reaches every tab; a saved run or episode becomes an option) and the
page's layout. Only the read-only checkpoint files are shared between sessions.
"""

from __future__ import annotations

import time
from typing import Any

import panel as pn

from hwm_studio.training.checkpoint import CheckpointError
from hwm_studio.training.efficiency import load_results
from hwm_studio.training.job import TrainingJob
from hwm_studio.ui.compare import ComparePanel
from hwm_studio.ui.explore import ExplorePanel
from hwm_studio.ui.plan import PlanContext, PlanPanel
from hwm_studio.ui.playing import PlayPanel
from hwm_studio.ui.session import LIVE, Session
from hwm_studio.ui.train import TrainPanel, TrainSource
from hwm_studio.ui.views import EfficiencyView
from hwm_studio.workspace import Workspace, WorkspaceError

__all__ = ["LIVE", "Studio"]
TABS = ("Explore", "Compare", "Train", "Plan", "Play", "Data efficiency")
LIVE_RELOAD_S = 3.0  # the live run's newest weights reach the shown model at most this often


class Studio(pn.viewable.Viewer):
    def __init__(self, workspace: Workspace | None = None, show_3d: bool = True, **params: Any) -> None:
        """`params`: initial values of the session's selectors (system, model_name, baseline_name)
        and of the Explore tab's controls (action_0, steps, seed, ...)."""
        session_params = {k: params.pop(k) for k in list(params) if k in Session.param}
        super().__init__()
        self.session = Session(workspace, live=self._live_job, **session_params)
        self.workspace = self.session.workspace
        self.explore = ExplorePanel(self.session, show_3d=show_3d, **params)
        self.compare = ComparePanel(self.session, self.explore.metrics)
        self.training = TrainPanel(
            lambda: TrainSource(self.session.system, self.explore.seed), self.workspace,
            on_models_changed=self._on_system, on_weights=self._on_live_weights,
        )  # fmt: skip
        self.planning = PlanPanel(self.plan_context)
        self.play = PlayPanel(self.play_source, self.workspace, on_saved=self.refresh_data_sources)
        self.efficiency = EfficiencyView()
        try:  # the benchmark's file, read once per session; a broken one is a message, not a crash
            self._efficiency_results, self._efficiency_problem = load_results(), None
        except ValueError as exc:
            self._efficiency_results, self._efficiency_problem = None, str(exc)
        self._last_live = 0.0
        self._status = pn.pane.Markdown(self.session.status, sizing_mode="stretch_width")
        self.session.param.watch(lambda e: setattr(self._status, "object", e.new), ["status"])
        self._notice = pn.pane.Markdown(self.session.notice, sizing_mode="stretch_width")
        self.session.param.watch(lambda e: setattr(self._notice, "object", e.new), ["notice"])
        self._on_system()
        self.session.param.watch(self._on_system, ["system"])
        self.session.param.watch(self._on_model, ["model_name", "baseline_name"])

    # --- wiring: a new system or model reaches every tab -----------------------------------------
    def _live_job(self) -> TrainingJob | None:
        """The Train tab's run, offered as a model while it learns the selected system."""
        t = self.training
        return t.job if t.job is not None and t.job_system == self.session.system else None

    def _on_system(self, *_: Any) -> None:
        self.session.refresh_models()
        self.explore.system_changed()
        self.planning.refresh_options(self.session.system_obj())
        self.efficiency.update(self.session.system, self._efficiency_results, self._efficiency_problem)
        self._on_model()

    def _on_model(self, *events: Any) -> None:
        if events and self.session.quietly.on:
            return
        if any(e.name == "model_name" for e in events):
            self.session.match_baseline()
        try:
            self.session.load_models()
        except (CheckpointError, WorkspaceError) as exc:
            self.session.status = f"**Could not load the model:** {exc}"
            return
        if self.play.player is not None:  # it plays the model that was selected: start again
            self.play.invalidate()
        self.explore.models_changed()

    def _on_live_weights(self, version: int) -> None:
        """The live run has new weights: the model shown, if it is that run, takes them (every ~3 s)."""
        if self.session.model_name == LIVE and version != self.session.live_version:
            now = time.perf_counter()
            if now - self._last_live > LIVE_RELOAD_S:
                self._last_live = now
                self._on_model()

    # --- what the tabs read from each other, through the session ---------------------------------
    def plan_context(self) -> PlanContext:
        """What the Plan tab plans from: the selected model, and the true state at the current frame."""
        s = self.session
        q0, p0 = s.true_state()
        rollout = s.rollout
        assert rollout is not None  # true_state() refuses before a rollout
        return PlanContext(system=s.system_obj(), model=s.model, model_name=s.model_name, q0=q0, p0=p0,
                           dt=rollout.result.dt, entity=rollout.entity, coord=rollout.coord)  # fmt: skip

    def play_source(self):  # noqa: ANN201 (WorldModel | None, System)
        """What the Play tab drives: the selected model and the system it acts on (for a pixel
        model the one it was trained on, whose frames it reads); it samples its own start."""
        return self.session.model, self.session.model_system()

    def train_sources(self) -> list[str]:
        """What the Train tab can learn from: the selected system simulated, or a workspace file."""
        return self.training.sources()

    def refresh_data_sources(self, saved: str | None = None) -> None:
        """New files in the workspace (an episode just played) become Train tab sources."""
        self.training.refresh_sources(saved)

    def close(self) -> None:
        """Stop this session's training, planning and play and free what it holds (called when the
        browser tab closes): its 3D scenes, models and rollouts."""
        self.planning.close()
        self.play.close()
        self.training.close()
        self.explore.close()
        self.session.close()

    # --- layout ----------------------------------------------------------------------------------
    def _on_tab(self, old: int, new: int) -> None:
        if new == TABS.index("Plan"):
            self.planning.enable_3d()
        if old == TABS.index("Play"):  # a loop nobody sees is paused, not left spending the CPU
            self.play.paused = True
        if new == TABS.index("Play") and self.play.player is None:
            self.play.start()

    def selectors_panel(self) -> pn.viewable.Viewable:
        """The session's system and model selectors."""
        return pn.Param(self.session.param, parameters=["system", "model_name", "baseline_name"], show_name=False,
                        width=290)  # fmt: skip

    def controls_panel(self) -> pn.viewable.Viewable:
        """The whole sidebar: the selectors, then the Explore tab's controls and player."""
        return pn.Column(self.selectors_panel(), self.explore.controls_panel(), width=310)

    def __panel__(self) -> pn.viewable.Viewable:
        views = dict(zip(TABS, (self.explore, self.compare, self.training, self.planning, self.play,
                                self.efficiency), strict=True))  # fmt: skip
        tabs = pn.Tabs(*views.items(), sizing_mode="stretch_width", dynamic=False)
        tabs.param.watch(lambda e: self._on_tab(e.old, e.new), "active")
        sidebar = pn.Column("## hwm_studio", self.controls_panel(), width=310)
        return pn.Row(sidebar, pn.Column(self._status, self._notice, tabs, sizing_mode="stretch_width"),
                      sizing_mode="stretch_width")  # fmt: skip
