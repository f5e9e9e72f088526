"""Ground-truth explorer: the simulator's phase space, energy ledger and video, live.

Every number comes from the exact system integrated at that moment. Plots are created once;
each control change re-simulates once and replaces the data sources inside one `pn.io.hold()`.
"""

from __future__ import annotations

import numpy as np
import panel as pn
import param
import torch
from bokeh.models import ColumnDataSource
from bokeh.plotting import figure

from hwm_studio.physics import get_integrator, rollout
from hwm_studio.physics.integrators import INTEGRATORS
from hwm_studio.systems import get_system, system_names
from hwm_studio.systems.render import PALETTE
from hwm_studio.viz.frames import to_rgba_uint32
from hwm_studio.viz.series import energy_ledger_series, phase_curves

LEDGER_STYLE = {
    "kinetic": ("#0072B2", "solid"),
    "potential": ("#009E73", "solid"),
    "interaction": ("#CC79A7", "solid"),
    "total": ("#000000", "solid"),
    "dissipated": ("#D55E00", "dashed"),
    "control_work": ("#E69F00", "dashed"),
    "balance_error": ("#999999", "dotted"),
}


def _hex(rgb: tuple[float, float, float]) -> str:
    return "#" + "".join(f"{round(c * 255):02x}" for c in rgb)


class SimulatorExplorer(pn.viewable.Viewer):
    """Pick a system, integrator, friction and a constant action; watch the exact physics."""

    system = param.Selector(default="pendulum", objects=system_names(), doc="ground-truth system")
    integrator = param.Selector(default="leapfrog", objects=list(INTEGRATORS), doc="integration scheme")
    dt = param.Number(default=0.05, bounds=(0.001, 0.2), doc="time step")
    steps = param.Integer(default=300, bounds=(10, 2000), doc="rollout length")
    damping = param.Number(default=0.0, bounds=(0.0, 2.0), doc="viscous friction gamma")
    action = param.Number(default=0.0, bounds=(-1.0, 1.0), doc="constant action, as a fraction of the bound")
    seed = param.Integer(default=0, bounds=(0, 10_000), doc="initial-state seed")
    frame = param.Integer(default=0, bounds=(0, 2000), doc="video frame shown")

    def __init__(self, **params: object) -> None:
        super().__init__(**params)
        self._phase_src = ColumnDataSource({"q": [], "p": [], "entity": []})
        self._ledger_src = ColumnDataSource({k: [] for k in ("t", *LEDGER_STYLE)})
        self._frame_src = ColumnDataSource({"image": [np.zeros((64, 64), np.uint32)]})
        self._frames = np.zeros((1, 64, 64), np.uint32)
        self._phase_fig = self._make_phase_figure()
        self._energy_fig = self._make_energy_figure()
        self._video_fig = self._make_video_figure()
        self._status = pn.pane.Markdown("", sizing_mode="stretch_width")
        self._player = pn.widgets.Player(start=0, end=1, value=0, interval=50, loop_policy="loop", width=300)
        self._player.link(self, value="frame")
        self.param.watch(self._recompute, ["system", "integrator", "dt", "steps", "damping", "action", "seed"])
        self.param.watch(self._show_frame, ["frame"])
        self._recompute()

    # --- figures (built once) ------------------------------------------------------------------
    def _make_phase_figure(self) -> figure:
        fig = figure(title="Phase portrait (q_i, p_i)", height=360, sizing_mode="stretch_width",
                     x_axis_label="q", y_axis_label="p", tools="pan,wheel_zoom,reset,save")  # fmt: skip
        fig.multi_line("q", "p", source=self._phase_src, line_color="color", line_width=2, legend_field="entity")
        self._phase_src.data = {"q": [], "p": [], "entity": [], "color": []}
        return fig

    def _make_energy_figure(self) -> figure:
        fig = figure(title="Energy ledger", height=360, sizing_mode="stretch_width",
                     x_axis_label="t", y_axis_label="energy", tools="pan,wheel_zoom,reset,save")  # fmt: skip
        for key, (colour, dash) in LEDGER_STYLE.items():
            fig.line("t", key, source=self._ledger_src, line_color=colour, line_dash=dash, line_width=2,
                     legend_label=key.replace("_", " "))  # fmt: skip
        fig.legend.location = "top_left"
        fig.legend.click_policy = "hide"
        return fig

    def _make_video_figure(self) -> figure:
        fig = figure(title="Rendered truth", width=300, height=300, x_range=(0, 1), y_range=(0, 1),
                     tools="", toolbar_location=None)  # fmt: skip
        fig.image_rgba("image", x=0, y=0, dw=1, dh=1, source=self._frame_src)
        fig.axis.visible = False
        fig.grid.visible = False
        return fig

    # --- updates -------------------------------------------------------------------------------
    def _recompute(self, *_: object) -> None:
        sys_ = get_system(self.system)
        field = sys_.field(self.damping)
        z0 = sys_.sample_initial(1, torch.Generator().manual_seed(self.seed))
        u = torch.full((1, self.steps, sys_.action_dim), self.action * sys_.action_bound, dtype=torch.float64)
        with torch.no_grad():
            traj = rollout(field, get_integrator(self.integrator), z0, actions=u, dt=self.dt)
        if not (torch.isfinite(traj.q).all() and torch.isfinite(traj.p).all()):
            self._status.object = "**The rollout diverged** (non-finite states): lower dt."
            return
        curves = phase_curves(traj)
        n = sys_.n_entities
        ledger = energy_ledger_series(traj)
        frames = sys_.render(traj.q[0], size=64).numpy()
        with pn.io.hold():
            self._phase_src.data = {
                "q": [curves[f"q{i}"] for i in range(n)],
                "p": [curves[f"p{i}"] for i in range(n)],
                "entity": sys_.entity_names(),
                "color": [_hex(PALETTE[i % len(PALETTE)]) for i in range(n)],
            }
            self._ledger_src.data = {k: ledger[k] for k in ("t", *LEDGER_STYLE)}
            self._frames = to_rgba_uint32(frames)
            self._player.end = len(self._frames) - 1
            self._player.value = min(self._player.value, len(self._frames) - 1)
            self._show_frame()
            drift = float(np.abs(ledger["balance_error"]).max())
            self._status.object = (
                f"**{sys_.title}** {sys_.params} · H(0) = {ledger['total'][0]:.4g} · "
                f"dissipated {ledger['dissipated'][-1]:.4g} · control work {ledger['control_work'][-1]:.4g} · "
                f"max |balance error| {drift:.2e}"
            )

    def _show_frame(self, *_: object) -> None:
        i = min(self.frame, len(self._frames) - 1)
        self._frame_src.data = {"image": [self._frames[i]]}

    def __panel__(self) -> pn.viewable.Viewable:
        controls = pn.Param(
            self.param,
            parameters=["system", "integrator", "dt", "steps", "damping", "action", "seed"],
            widgets={
                "dt": {"type": pn.widgets.FloatSlider, "throttled": True, "step": 0.001},
                "steps": {"type": pn.widgets.IntSlider, "throttled": True},
                "damping": {"type": pn.widgets.FloatSlider, "throttled": True, "step": 0.01},
                "action": {"type": pn.widgets.FloatSlider, "throttled": True, "step": 0.01},
            },
            show_name=False,
            width=300,
        )
        return pn.Row(
            pn.Column("### Ground-truth explorer", controls, self._video_fig, self._player, width=320),
            pn.Column(
                self._status,
                pn.Row(self._phase_fig, self._energy_fig, sizing_mode="stretch_width"),
                sizing_mode="stretch_width",
            ),
            sizing_mode="stretch_width",
        )
