"""The Plan tab: the world model imagines many futures, the planner picks one, MPC runs it live.

Plan: one CEM/MPPI plan from the Explore tab's start state, in the selected model: every candidate
of the last iteration drawn faintly in the phase portrait and the 3D view, the elites boldly, the
chosen plan's predicted future boldest, and its actions over time.
Run MPC: closed loop against the true system (the same exact dynamics the Explore tab's truth
uses): plan, apply the first action to the truth, re-plan from where the truth went. The loop
runs in a background thread on a copy of the model; a periodic callback draws its latest step
(so the page stays responsive), with the return so far. Everything drawn comes from the planner's
PlanResult or the true system; nothing here plans or simulates on its own.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import panel as pn
import param
import torch
from bokeh.models import ColumnDataSource
from bokeh.plotting import figure

from hwm_studio.models import WorldModel
from hwm_studio.planning import PLANNERS, MPCStep, Planner, PlanResult, SystemEnv, model_rollout, run_mpc
from hwm_studio.planning.costs import cost_values
from hwm_studio.planning.presets import default_target_energy, preset_cost, preset_names
from hwm_studio.state import PhaseState
from hwm_studio.systems.base import System
from hwm_studio.ui.help import help_card
from hwm_studio.ui.loops import Schedule, Ticker, clicked, served_schedule
from hwm_studio.ui.views import MODEL, TOOLS, TRUTH

CHOSEN = "#009E73"
DRAWN = 128  # candidates drawn per plan (all are planned with; drawing thousands only slows the page)
POLL_MS = 150  # how often the page drains the MPC thread's steps


@dataclass(frozen=True)
class PlanContext:
    """What the studio hands the Plan tab: the system, the model, where to start, what to draw."""

    system: System
    model: WorldModel | None
    model_name: str
    q0: np.ndarray  # (E, D) the true start state
    p0: np.ndarray
    dt: float  # the model's step (the truth is stepped at the same dt)
    entity: int
    coord: int


@dataclass
class Drawn:
    """One plan, reduced to what the views draw (host numpy)."""

    cand_q: np.ndarray  # (n, T+1, E, D) the first DRAWN candidates' predicted futures
    cand_p: np.ndarray
    elite_q: np.ndarray  # (K, T+1, E, D)
    elite_p: np.ndarray
    chosen_q: np.ndarray  # (T+1, E, D) the chosen plan's predicted future
    chosen_p: np.ndarray
    actions: np.ndarray  # (T, A) the chosen plan
    n_candidates: int
    chosen_cost: float  # the chosen plan's cost as the model imagines it (what the status reports)
    best_cost: float  # the cheapest candidate of the last iteration (CEM's chosen mean is not one of them)
    seconds: float


def _lines(q: np.ndarray, p: np.ndarray, entity: int, coord: int) -> dict[str, list]:
    return {"xs": list(q[:, :, entity, coord]), "ys": list(p[:, :, entity, coord])}


class PlanPanel(pn.viewable.Viewer):
    planner = param.Selector(default="cem", objects=list(PLANNERS), label="Planner")
    cost = param.Selector(default="swing-up", objects=["swing-up", "reach rest", "energy shaping"], label="Cost")
    horizon = param.Integer(default=30, bounds=(2, 150), label="Horizon (steps)")
    candidates = param.Integer(default=256, bounds=(8, 4096), label="Candidates")
    iterations = param.Integer(default=5, bounds=(1, 20), label="Iterations")
    effort = param.Number(default=1e-3, bounds=(0.0, 1.0), label="Action effort weight")
    target_energy = param.Number(default=0.0, label="Target energy (energy shaping)")
    mpc_steps = param.Integer(default=200, bounds=(1, 2000), label="MPC steps")

    def __init__(self, context: Callable[[], PlanContext], **params: Any) -> None:
        super().__init__(**params)
        self._context = context
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._queue: queue.Queue = queue.Queue()
        self._poll: Ticker | None = None
        self.schedule: Schedule = served_schedule  # a notebook swaps in the kernel's loop (ui/notebook.py)
        self._last_3d = 0.0
        self._system_key: str | None = None
        self.view3d: Any = None  # built lazily (VTK)
        self.last: Drawn | None = None
        self.executed_q: list[np.ndarray] = []
        self.executed_p: list[np.ndarray] = []
        self.executed_u: list[np.ndarray] = []
        self.episode_return = 0.0
        self._ctx: PlanContext | None = None
        self._t_now = 0.0
        self._slot_3d = pn.Column(sizing_mode="stretch_width", min_height=380)
        self.candidates_src = ColumnDataSource({"xs": [], "ys": []})
        self.elites_src = ColumnDataSource({"xs": [], "ys": []})
        self.chosen_src = ColumnDataSource({"q": [], "p": []})
        self.truth_src = ColumnDataSource({"q": [], "p": []})
        self.now_src = ColumnDataSource({"q": [], "p": []})
        self.plan_u_src = ColumnDataSource({"t": [], "u": []})
        self.done_u_src = ColumnDataSource({"t": [], "u": []})
        self.return_src = ColumnDataSource({"t": [], "ret": []})
        self.phase_fig = self._phase_figure()
        self.actions_fig = self._actions_figure()
        self.status = pn.pane.Markdown("Press **Plan** to imagine futures in the selected model.",
                                       sizing_mode="stretch_width")  # fmt: skip
        self.cost_note = pn.pane.Markdown("", sizing_mode="stretch_width")
        self._plan_button = pn.widgets.Button(label="Plan", color="primary", width=90)
        self._run_button = pn.widgets.Button(label="Run MPC", color="success", width=90)
        self._stop_button = pn.widgets.Button(label="Stop", width=70)
        self._plan_button.on_click(clicked(self.plan))
        self._run_button.on_click(clicked(self.run_mpc))
        self._stop_button.on_click(clicked(self.stop_mpc))

    # --- figures ---------------------------------------------------------------------------------
    def _phase_figure(self) -> figure:
        fig = figure(title="Imagined futures in phase space", height=380, sizing_mode="stretch_width",
                     x_axis_label="q", y_axis_label="p", tools=TOOLS)  # fmt: skip
        fig.multi_line("xs", "ys", source=self.candidates_src, line_color="#8c96a0", line_alpha=0.25,
                       legend_label="candidates (model)")  # fmt: skip
        fig.multi_line("xs", "ys", source=self.elites_src, line_color=MODEL, line_alpha=0.6, line_width=1.5,
                       legend_label="elites (model)")  # fmt: skip
        fig.line("q", "p", source=self.chosen_src, line_color=CHOSEN, line_width=4, legend_label="chosen plan (model)")
        fig.line("q", "p", source=self.truth_src, line_color=TRUTH, line_width=2.5, legend_label="executed (truth)")
        fig.scatter("q", "p", source=self.now_src, size=11, color=TRUTH, legend_label="true state now")
        fig.legend.location = "top_right"
        fig.legend.click_policy = "hide"
        fig.legend.background_fill_alpha = 0.6
        fig.legend.label_text_font_size = "8pt"
        return fig

    def _actions_figure(self) -> figure:
        fig = figure(title="Actions: planned ahead and executed", height=260, sizing_mode="stretch_width",
                     x_axis_label="t", y_axis_label="u", tools=TOOLS)  # fmt: skip
        fig.step("t", "u", source=self.plan_u_src, mode="after", line_color=CHOSEN, line_width=2,
                 legend_label="chosen plan")  # fmt: skip
        fig.step("t", "u", source=self.done_u_src, mode="after", line_color=TRUTH, line_width=2,
                 legend_label="executed")  # fmt: skip
        fig.legend.location = "top_right"
        fig.legend.label_text_font_size = "8pt"
        return fig

    # --- the pieces ------------------------------------------------------------------------------
    def refresh_options(self, system: System) -> None:
        """Offer the costs that apply to `system`; reset the energy target to its default."""
        names = preset_names(system)
        self.param.cost.objects = names
        if self.cost not in names:
            self.cost = names[0]
        if system.name != self._system_key:
            self._system_key = system.name
            self.target_energy = round(default_target_energy(system), 4)

    def _setup(self) -> tuple[PlanContext, Planner, Any, Any]:
        ctx = self._context()
        if ctx.model is None:
            raise ValueError("choose a model on the Explore tab first")
        if ctx.model.sees_pixels:
            raise ValueError("planning needs a state model: a pixel model's latent is not the system's (q, p)")
        if not ctx.model.action_dim or not ctx.system.action_dim:
            raise ValueError(f"{ctx.model_name} takes no actions on {ctx.system.name}: nothing to plan")
        cost, note = preset_cost(self.cost, ctx.system, float(self.effort), float(self.target_energy))
        bound = float(ctx.system.action_bound)
        a = ctx.system.action_dim
        cls = PLANNERS[self.planner]
        # elites in each method's default proportion: CEM 100 of 1000 (PlaNet), MPPI 64 of 512 (TD-MPC2)
        elites = max(1, self.candidates // (10 if self.planner == "cem" else 8))
        planner = cls(low=[-bound] * a, high=[bound] * a, horizon=self.horizon, candidates=self.candidates,
                      elites=elites, iterations=self.iterations, seed=0)  # fmt: skip
        self.cost_note.object = f"Cost: {note}. Model: **{ctx.model_name}**; truth: the exact {ctx.system.title}."
        return ctx, planner, cost, note

    @staticmethod
    def _reduce(rollout: Any, state: PhaseState, plan: PlanResult, seconds: float, cost: Any) -> Drawn:
        """The plan as drawn: a subset of candidates, the elites, and the chosen plan's future and cost."""
        acts = plan.actions[None]
        q_c, p_c, e_c = rollout(state.q, state.p, acts)  # (1, T+1, E, D): what the model expects
        chosen_cost = float(cost_values(cost, q_c, p_c, acts.to(q_c), e_c, check_finite=False)[0])
        elites = plan.elites
        costs = plan.costs[elites[:1]]
        return Drawn(
            cand_q=plan.q[:DRAWN].cpu().numpy(),
            cand_p=plan.p[:DRAWN].cpu().numpy(),
            elite_q=plan.q[elites].cpu().numpy(),
            elite_p=plan.p[elites].cpu().numpy(),
            chosen_q=q_c[0].cpu().numpy(),
            chosen_p=p_c[0].cpu().numpy(),
            actions=plan.actions.cpu().numpy(),
            n_candidates=int(plan.candidates.shape[0]),
            chosen_cost=chosen_cost,
            best_cost=float(costs[0]) if len(costs) else float("nan"),
            seconds=seconds,
        )

    def _start_state(self, ctx: PlanContext, model: WorldModel) -> PhaseState:
        dtype = model.obs_scale.dtype
        q = torch.as_tensor(ctx.q0, dtype=dtype, device=model.obs_scale.device)[None]
        p = torch.as_tensor(ctx.p0, dtype=dtype, device=model.obs_scale.device)[None]
        return PhaseState(q, p)

    # --- actions ---------------------------------------------------------------------------------
    def plan(self, *_: Any) -> Drawn | None:
        """One plan from the start state, drawn."""
        if self.running:
            self.status.object = "MPC is running: stop it first."
            return None
        try:
            ctx, planner, cost, _ = self._setup()
            rollout = model_rollout(ctx.model, fused=ctx.model.worth_tracing)  # type: ignore[arg-type,union-attr]
            state = self._start_state(ctx, ctx.model)  # type: ignore[arg-type]
            t0 = time.perf_counter()
            result = planner.plan(rollout, state, cost)
            drawn = self._reduce(rollout, state, result, time.perf_counter() - t0, cost)
        except (ValueError, RuntimeError) as exc:
            self.status.object = f"**Cannot plan:** {exc}"
            return None
        self._ctx = ctx
        self.executed_q, self.executed_p = [np.asarray(ctx.q0)], [np.asarray(ctx.p0)]
        self.executed_u, self.episode_return = [], 0.0
        self._draw(drawn, ctx, t_now=0.0, force_3d=True)
        self.status.object = (
            f"Planned with **{self.planner.upper()}**: {drawn.n_candidates} candidates × {self.iterations} iterations "
            f"× {self.horizon} steps in {1e3 * drawn.seconds:.0f} ms; the chosen plan's imagined cost "
            f"{drawn.chosen_cost:.4g} (the best candidate's {drawn.best_cost:.4g}; first "
            f"{min(DRAWN, drawn.n_candidates)} candidates of the last iteration drawn)."
        )
        return drawn

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def run_mpc(self, *_: Any) -> None:
        """Closed loop against the truth, in a background thread; the page draws as it goes."""
        if self.running:
            self.status.object = "MPC is already running."
            return
        try:
            ctx, planner, cost, _ = self._setup()
            model = ctx.model.own_copy()  # knobs of its own: the Explore tab keeps using its model's
            rollout = model_rollout(model, fused=model.worth_tracing)  # type: ignore[arg-type,union-attr]
            start = PhaseState(torch.as_tensor(ctx.q0, dtype=torch.float64)[None],
                               torch.as_tensor(ctx.p0, dtype=torch.float64)[None])  # fmt: skip
            env = SystemEnv(ctx.system, reward=cost, dt=ctx.dt, max_steps=int(self.mpc_steps), initial=start)
        except (ValueError, RuntimeError) as exc:
            self.status.object = f"**Cannot run MPC:** {exc}"
            return
        self._ctx = ctx
        self.executed_q, self.executed_p = [np.asarray(ctx.q0)], [np.asarray(ctx.p0)]
        self.executed_u, self.episode_return = [], 0.0
        self.done_u_src.data = {"t": [], "u": []}
        self._stop.clear()
        self._queue = queue.Queue()
        like = model.obs_scale  # type: ignore[union-attr]

        def on_step(step: MPCStep) -> bool:
            state = PhaseState(step.state.q.to(like), step.state.p.to(like))
            self._queue.put(("step", step, self._reduce(rollout, state, step.plan, step.plan_seconds, cost)))
            return not self._stop.is_set()

        def work() -> None:
            try:
                episode = run_mpc(env, planner, rollout, cost, steps=int(self.mpc_steps), seed=0, callback=on_step)
                self._queue.put(("end", episode, None))
            except Exception as exc:  # shown on the page, never lost in a thread
                self._queue.put(("error", exc, None))

        self._thread = threading.Thread(target=work, name="hwm-mpc", daemon=True)
        self._thread.start()
        self.status.object = "Running MPC against the true system…"
        if self._poll is None:
            self._poll = self.schedule(self.poll, POLL_MS)

    def stop_mpc(self, *_: Any) -> None:
        self._stop.set()

    def wait(self, timeout: float = 60.0) -> None:
        """Block until the MPC thread ends (tests and scripts), then draw what it left."""
        if self._thread is not None:
            self._thread.join(timeout)
        self.poll()

    def poll(self) -> None:
        """Drain the MPC thread's steps; draw the newest."""
        latest, ended = None, False
        while True:
            try:
                kind, payload, drawn = self._queue.get_nowait()
            except queue.Empty:
                break
            if kind == "step":
                step: MPCStep = payload
                self.executed_q.append(step.next_state.q[0].cpu().numpy())
                self.executed_p.append(step.next_state.p[0].cpu().numpy())
                self.executed_u.append(step.action.cpu().numpy())
                self.episode_return = step.episode_return
                latest = (step, drawn)
            elif kind == "end":
                ended = True
                self.status.object = (
                    f"MPC finished: {payload.steps} steps, return {payload.total_return:.4g} (reward = − cost "
                    f"on the truth), median plan time {payload.ms_per_step:.0f} ms."
                )
            else:
                self.status.object = f"**MPC failed:** {payload}"
        if latest is not None and self._ctx is not None:
            step, drawn = latest
            t_now = (step.t + 1) * self._ctx.dt
            self._draw(drawn, self._ctx, t_now=step.t * self._ctx.dt, force_3d=ended)
            if self.running:
                self.status.object = (
                    f"MPC step {step.t + 1}: return so far {self.episode_return:.4g} (truth); "
                    f"plan {1e3 * step.plan_seconds:.0f} ms; t = {t_now:.2f}"
                )
        elif ended and self.last is not None and self._ctx is not None:  # the last step was drawn before
            self._draw(self.last, self._ctx, self._t_now, force_3d=True)
        if not self.running and self._poll is not None and self._queue.empty():
            self._poll.stop()
            self._poll = None

    # --- drawing ---------------------------------------------------------------------------------
    def _draw(self, d: Drawn, ctx: PlanContext, t_now: float, force_3d: bool = False) -> None:
        self.last, self._t_now = d, t_now
        e, c = ctx.entity, ctx.coord
        eq, ep = np.stack(self.executed_q), np.stack(self.executed_p)  # (n, E, D)
        dt = ctx.dt
        with pn.io.hold():
            self.candidates_src.data = _lines(d.cand_q, d.cand_p, e, c)
            self.elites_src.data = _lines(d.elite_q, d.elite_p, e, c)
            self.chosen_src.data = {"q": d.chosen_q[:, e, c], "p": d.chosen_p[:, e, c]}
            self.truth_src.data = {"q": eq[:, e, c], "p": ep[:, e, c]}
            self.now_src.data = {"q": eq[-1:, e, c], "p": ep[-1:, e, c]}
            self.plan_u_src.data = {"t": t_now + dt * np.arange(len(d.actions)), "u": d.actions[:, 0]}
            if self.executed_u:
                u = np.stack(self.executed_u)
                self.done_u_src.data = {"t": dt * np.arange(len(u)), "u": u[:, 0]}
            else:
                self.done_u_src.data = {"t": [], "u": []}
        now = time.perf_counter()
        if self.view3d is not None and (force_3d or now - self._last_3d > 0.5):  # 3D at <= 2 Hz
            self._last_3d = now
            self.view3d.update(ctx.system, eq[-1], {
                "candidates": d.cand_q[:32], "elites": d.elite_q[:16], "chosen": d.chosen_q[None],
                "executed": eq[None]})  # fmt: skip

    def enable_3d(self) -> None:
        """Build the 3D view (an offscreen VTK scene) when the tab is first shown: users who never
        plan never pay for it."""
        from hwm_studio.ui.entity3d import PlanView3D

        if self.view3d is None:
            self.view3d = PlanView3D()
            self._slot_3d.objects = [self.view3d]
            if self.last is not None and self._ctx is not None:
                self._draw(self.last, self._ctx, self._t_now, force_3d=True)

    def close(self) -> None:
        self._stop.set()
        if self._poll is not None:
            self._poll.stop()
            self._poll = None
        if self.view3d is not None:
            self.view3d.close()

    def __panel__(self) -> pn.viewable.Viewable:
        controls = pn.Param(
            self.param,
            parameters=["planner", "cost", "horizon", "candidates", "iterations", "effort", "target_energy",
                        "mpc_steps"],
            widgets={"effort": {"type": pn.widgets.FloatInput, "step": 1e-4}},
            show_name=False, width=290,
        )  # fmt: skip
        buttons = pn.Row(self._plan_button, self._run_button, self._stop_button)
        views = pn.Column(
            self.status,
            self.cost_note,
            pn.Row(pn.pane.Bokeh(self.phase_fig, sizing_mode="stretch_width"), self._slot_3d,
                   sizing_mode="stretch_width"),
            pn.pane.Bokeh(self.actions_fig, sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )  # fmt: skip
        body = pn.Row(pn.Column(controls, buttons, width=300), views, sizing_mode="stretch_width")
        return pn.Column(help_card("Plan"), body, sizing_mode="stretch_width")
