"""The studio's 2D views: Bokeh figures built once, fed by ColumnDataSources on every update.

Each view takes a `SceneResult` (and for the phase plane, the model's energy grid and flow) and
replaces its sources' data; callers batch the updates of all views in one `pn.io.hold()`.
Nothing here computes physics: every array comes from `hwm_studio.scene` (the data-efficiency
view's, from the benchmark's results file: it averages over seeds, nothing more).
"""

from __future__ import annotations

import numpy as np
import panel as pn
from bokeh.models import ColumnDataSource, Span
from bokeh.plotting import figure
from bokeh.plotting.contour import contour_data

from hwm_studio.metrics import VPT_THRESHOLD
from hwm_studio.scene import SceneResult
from hwm_studio.training.efficiency import curve, match_sentence
from hwm_studio.ui.help import help_card
from hwm_studio.viz.frames import error_map, to_rgba_uint32

TRUTH = "#222222"
MODEL = "#D55E00"
OTHER = "#0072B2"
TOOLS = "pan,wheel_zoom,box_zoom,reset,save"
PIXEL_WINDOW = 30  # predicted steps the HGN protocol scores

ENERGY_STYLE = {  # key: (label, colour, dash)
    "kinetic": ("kinetic T", "#0072B2", "solid"),
    "potential": ("potential V (aligned at t=0)", "#009E73", "solid"),
    "interaction": ("interaction U", "#CC79A7", "solid"),
    "total": ("model H (aligned at t=0)", MODEL, "solid"),
    "dissipated": ("dissipated", "#E69F00", "dashed"),
    "control_work": ("control work", "#56B4E9", "dashed"),
    "residual_work": ("residual work", "#999999", "dashed"),
    "balance_error": ("balance error", "#000000", "dotted"),
}


_NO_LEVELS = contour_data(np.zeros(2), np.zeros(2), np.zeros((2, 2)), levels=[1.0], want_fill=False)


def _empty(keys: tuple[str, ...]) -> dict[str, list]:
    return {k: [] for k in keys}


class PhaseView(pn.viewable.Viewer):
    """q vs p of one entity coordinate: truth, model, the model's H levels and one-step flow.

    A pixel model's latent is drawn through its alignment to the system's coordinates (fitted on
    its readings of the true frames), so its prediction lies over the true portrait.
    """

    def __init__(self, title: str = "Phase portrait", model_colour: str = MODEL, **params: object) -> None:
        super().__init__(**params)
        self.truth = ColumnDataSource(_empty(("q", "p")))
        self.model = ColumnDataSource(_empty(("q", "p")), name=f"{title}: model")  # found by name in the browser
        self.arrows = ColumnDataSource(_empty(("x0", "y0", "x1", "y1")))
        self.start = ColumnDataSource(_empty(("q", "p")))
        self.now = ColumnDataSource(_empty(("q", "p", "who")))
        fig = figure(title=title, height=380, sizing_mode="stretch_width", x_axis_label="q", y_axis_label="p",
                     tools=TOOLS + ",tap", match_aspect=False)  # fmt: skip
        x = np.linspace(-1, 1, 4)
        self.levels = fig.contour(x, x, np.zeros((4, 4)), levels=[0.5], line_color="#9aa7b5", line_alpha=0.7,
                                  fill_color=None)  # fmt: skip
        fig.segment("x0", "y0", "x1", "y1", source=self.arrows, line_color="#8c96a0", line_alpha=0.8)
        fig.line("q", "p", source=self.truth, line_color=TRUTH, line_width=2, legend_label="truth")
        fig.line("q", "p", source=self.model, line_color=model_colour, line_width=2, line_dash="dashed",
                 legend_label="model")  # fmt: skip
        fig.scatter("q", "p", source=self.start, size=10, marker="circle_cross", fill_color="white",
                    line_color=TRUTH, legend_label="initial state (click to move)")  # fmt: skip
        fig.scatter("q", "p", source=self.now, size=8, color="who")
        fig.legend.location = "top_right"
        fig.legend.click_policy = "hide"
        fig.legend.background_fill_alpha = 0.6
        fig.legend.label_text_font_size = "8pt"
        self.figure = fig
        self.title = title
        self._contour_key: tuple | None = None

    def update(self, r: SceneResult, entity: int, coord: int, plane: dict | None, frame: int) -> None:
        fig = self.figure
        self.truth.data = {"q": r.truth_q[:, entity, coord], "p": r.truth_p[:, entity, coord]}
        self.start.data = {"q": [r.truth_q[0, entity, coord]], "p": [r.truth_p[0, entity, coord]]}
        fig.title.text = (
            f"{self.title} (pixel model: its latent, aligned on its readings)" if r.reads_frames else self.title
        )
        self.model.data = {"q": r.model_q[:, entity, coord], "p": r.model_p[:, entity, coord]}
        self.set_frame(r, entity, coord, frame)
        if plane is None:
            self.arrows.data = _empty(("x0", "y0", "x1", "y1"))
            self.levels.set_data(_NO_LEVELS)
            return
        q_lo, q_hi, p_lo, p_hi = plane["extent"]
        speed = np.hypot(plane["dq"] / (q_hi - q_lo), plane["dp"] / (p_hi - p_lo))
        scale = 0.045 / max(float(np.nanmax(speed)) if speed.size else 0.0, 1e-12)  # longest arrow ~ 4.5% of view
        self.arrows.data = {"x0": plane["q"], "y0": plane["p"],
                            "x1": plane["q"] + scale * plane["dq"], "y1": plane["p"] + scale * plane["dp"]}  # fmt: skip
        h = plane["H"]
        if h is None or not np.isfinite(h).all():
            self.levels.set_data(_NO_LEVELS)
        else:
            n = h.shape[0]
            lv = np.quantile(h, np.linspace(0.02, 0.98, 14))
            self.levels.set_data(contour_data(np.linspace(q_lo, q_hi, n), np.linspace(p_lo, p_hi, n), h,
                                              levels=np.unique(lv), want_fill=False))  # fmt: skip

    def set_frame(self, r: SceneResult, entity: int, coord: int, frame: int) -> None:
        i = int(np.clip(frame, 0, r.steps))
        self.now.data = {
            "q": [r.truth_q[i, entity, coord], r.model_q[i, entity, coord]],
            "p": [r.truth_p[i, entity, coord], r.model_p[i, entity, coord]],
            "who": [TRUTH, MODEL],
        }

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.pane.Bokeh(self.figure, sizing_mode="stretch_width")


class EnergyView(pn.viewable.Viewer):
    """The model's energy decomposition and ledger over the rollout, the true H beside it."""

    KEYS = ("t", *ENERGY_STYLE, "truth_total", "true_h_of_model")

    def __init__(self, **params: object) -> None:
        super().__init__(**params)
        self.source = ColumnDataSource(_empty(self.KEYS))
        fig = figure(title="Energy decomposition and ledger", height=380, sizing_mode="stretch_width",
                     x_axis_label="t", y_axis_label="energy", tools=TOOLS)  # fmt: skip
        for key, (label, colour, dash) in ENERGY_STYLE.items():
            fig.line("t", key, source=self.source, line_color=colour, line_dash=dash, line_width=2, legend_label=label)
        fig.line("t", "truth_total", source=self.source, line_color=TRUTH, line_width=3, line_alpha=0.5,
                 legend_label="true H (truth)")  # fmt: skip
        fig.line("t", "true_h_of_model", source=self.source, line_color=MODEL, line_width=1, line_dash="dotdash",
                 legend_label="true H of model states")  # fmt: skip
        fig.legend.click_policy = "hide"
        fig.legend.label_text_font_size = "8pt"
        fig.add_layout(fig.legend[0], "right")
        self.cursor = Span(location=0, dimension="height", line_color="#888888", line_dash="dashed")
        fig.add_layout(self.cursor)
        self.figure = fig

    def update(self, r: SceneResult) -> None:
        """A learned H is defined up to a constant: the model's V and H are shifted by one constant,
        H_true(0) - H_model(0), so they start where the true energy does (the legend says so)."""
        nan = np.full(r.steps + 1, np.nan)
        data = {"t": r.t, "truth_total": r.truth_energy, "true_h_of_model": r.model_true_energy}
        offset = 0.0
        if r.model_energy is not None:  # a pixel model's energy starts after its context frames
            i0 = r.context
            offset = float(r.truth_energy[i0] - r.model_energy["total"][i0])
        for key in ENERGY_STYLE:
            src = r.model_energy if key in ("kinetic", "potential", "interaction", "total") else r.model_ledger
            data[key] = src[key] if src is not None and key in src else nan
            if key in ("potential", "total") and r.model_energy is not None:
                data[key] = data[key] + offset
        self.source.data = data

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.pane.Bokeh(self.figure, sizing_mode="stretch_width")


class MetricsView(pn.viewable.Viewer):
    """Prediction error vs time (log scale), the valid prediction time, energy drift."""

    def __init__(self, **params: object) -> None:
        super().__init__(**params)
        self.source = ColumnDataSource(_empty(("t", "error", "drift")))
        self.other = ColumnDataSource(_empty(("t", "error")))
        fig = figure(title="Normalised state error vs time", height=260, sizing_mode="stretch_width",
                     x_axis_label="t", y_axis_type="log", tools=TOOLS)  # fmt: skip
        fig.line("t", "error", source=self.source, line_color=MODEL, line_width=2, legend_label="model error")
        fig.line("t", "error", source=self.other, line_color=OTHER, line_width=2, legend_label="baseline error")
        fig.line("t", "drift", source=self.source, line_color="#009E73", line_dash="dashed",
                 legend_label="|true H(model) − true H(truth)|")  # fmt: skip
        self.vpt = Span(location=0, dimension="height", line_color=MODEL, line_dash="dotted", line_width=2)
        self.threshold = Span(location=VPT_THRESHOLD, dimension="width", line_color="#888888", line_dash="dotted")
        fig.add_layout(self.threshold)
        fig.add_layout(self.vpt)
        fig.legend.location = "bottom_right"
        fig.legend.label_text_font_size = "8pt"
        self.figure = fig
        self.summary = pn.pane.Markdown("", sizing_mode="stretch_width")

    def update(self, r: SceneResult, other: SceneResult | None = None, label: str = "baseline") -> None:
        if r.reads_frames:
            self._update_pixels(r, other, label)
            return
        self.figure.title.text = "Normalised state error vs time"
        self.vpt.visible = self.threshold.visible = True
        floor = 1e-12
        self.source.data = {"t": r.t, "error": np.maximum(r.error, floor),
                            "drift": np.maximum(np.abs(r.model_true_energy - r.truth_energy), floor)}  # fmt: skip
        self.other.data = (
            {"t": other.t, "error": np.maximum(other.error, floor)} if other is not None else _empty(("t", "error"))
        )
        self.vpt.location = r.vpt * r.dt
        drift = float(np.nanmax(np.abs(r.model_true_energy - r.truth_energy)))
        text = (f"**VPT** {r.vpt} steps ({r.vpt * r.dt:.2f} s) · **max energy error** {drift:.3g} · "
                f"**final error** {r.error[-1]:.3g}")  # fmt: skip
        if r.model_ledger is not None:
            text += f" · **max |balance error|** {np.nanmax(np.abs(r.model_ledger['balance_error'])):.2e}"
        if other is not None:
            text += f" · {label} VPT {other.vpt} steps"
        if not r.finite:
            text += " · **the model's rollout diverged** (non-finite states)"
        self.summary.object = text

    def _update_pixels(self, r: SceneResult, other: SceneResult | None, label: str) -> None:
        """A pixel model is scored as HGN scores it: pixel MSE of its decoded frames vs the true ones."""
        floor = 1e-12
        self.figure.title.text = "Pixel MSE of the decoded frames vs time"
        self.vpt.visible = self.threshold.visible = False
        self.source.data = {"t": r.t, "error": np.maximum(r.error, floor), "drift": np.full_like(r.t, np.nan)}
        self.other.data = (
            {"t": other.t, "error": np.maximum(other.error, floor)} if other is not None else _empty(("t", "error"))
        )
        predicted = r.error[r.context + 1 :]
        first = predicted[:PIXEL_WINDOW]
        text = (f"**pixel MSE** over the first {len(first)} predicted steps {np.nanmean(first) * 1e4:.3g}e-4 · "
                f"at the last step {predicted[-1] * 1e4:.3g}e-4 · reconstruction (t = {r.context * r.dt:.3g} s) "
                f"{r.error[r.context] * 1e4:.3g}e-4")  # fmt: skip
        if other is not None:
            theirs = np.nanmean(other.error[other.context + 1 :][:PIXEL_WINDOW])
            text += f" · {label} over the first {len(first)}: {theirs * 1e4:.3g}e-4"
        if not r.finite:
            text += " · **the model's rollout diverged** (non-finite states)"
        self.summary.object = text

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(self.summary, pn.pane.Bokeh(self.figure, sizing_mode="stretch_width"),
                         sizing_mode="stretch_width")  # fmt: skip


class VideoView(pn.viewable.Viewer):
    """Truth | model | per-pixel error, as one image_rgba figure (binary updates, no PNGs)."""

    def __init__(self, size: int = 64, **params: object) -> None:
        super().__init__(**params)
        blank = np.zeros((size, size), np.uint32)
        self.source = ColumnDataSource({"image": [blank, blank, blank], "x": [0.0, 1.05, 2.1]})
        fig = figure(title="Truth | model | error", height=190, width=560, x_range=(0, 3.1), y_range=(0, 1),
                     tools="", toolbar_location=None)  # fmt: skip
        fig.image_rgba("image", x="x", y=0, dw=1, dh=1, source=self.source)
        fig.axis.visible = False
        fig.grid.visible = False
        self.figure = fig

    def update(self, truth: np.ndarray, model: np.ndarray) -> None:
        stack = np.stack([truth, model, error_map(truth, model)])
        packed = to_rgba_uint32(stack)
        self.source.data = {"image": list(packed), "x": [0.0, 1.05, 2.1]}

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.pane.Bokeh(self.figure)


class CouplingView(pn.viewable.Viewer):
    """The model's learned coupling graph: entities on a circle, a line per pair as wide as its
    coupling (RMS pair force on the true states, `SceneResult.couplings`), labelled with the value,
    so a pair the model found uncoupled reads as a faint hairline marked 0.00."""

    WIDEST = 10.0  # px: the strongest pair

    def __init__(self, **params: object) -> None:
        super().__init__(**params)
        self.nodes = ColumnDataSource(_empty(("x", "y", "name")))
        self.edges = ColumnDataSource(_empty(("x0", "y0", "x1", "y1", "width", "alpha", "xm", "ym", "label")))
        fig = figure(title="Learned couplings (RMS pair force)", height=260, width=300, x_range=(-1.6, 1.6),
                     y_range=(-1.45, 1.45), tools="", toolbar_location=None, match_aspect=True)  # fmt: skip
        fig.segment("x0", "y0", "x1", "y1", source=self.edges, line_width="width", line_alpha="alpha",
                    line_color=MODEL)  # fmt: skip
        fig.text("xm", "ym", text="label", source=self.edges, text_font_size="9pt", text_align="center",
                 text_baseline="middle", background_fill_color="white", background_fill_alpha=0.8)  # fmt: skip
        fig.scatter("x", "y", source=self.nodes, size=16, fill_color="white", line_color=TRUTH, line_width=2)
        fig.text("x", "y", text="name", source=self.nodes, text_font_size="9pt", y_offset=-14, text_align="center")
        fig.axis.visible = False
        fig.grid.visible = False
        self.figure = fig
        # shown for models with pair terms only; `visible` is toggled on a wrapping column, not on the
        # Bokeh pane (Panel 1.x re-syncs a Bokeh pane's layout props on that change and fails on the
        # figure's stylesheets: TypeError, the session's update lost)
        self.pane = pn.Column(pn.pane.Bokeh(fig), visible=False)

    def update(self, r: SceneResult) -> None:
        couplings = r.couplings or {}
        n = len(r.entity_names)
        self.pane.visible = bool(couplings)
        if not couplings:
            self.nodes.data, self.edges.data = _empty(("x", "y", "name")), _empty(tuple(self.edges.data))
            return
        angle = np.pi / 2 - 2 * np.pi * np.arange(n) / n
        x, y = np.cos(angle), np.sin(angle)
        pairs = list(couplings)
        values = np.array([couplings[pair] for pair in pairs], dtype=float)
        rel = values / values.max() if values.max() > 0 else np.zeros_like(values)
        i, j = (np.array([pair[k] for pair in pairs]) for k in (0, 1))
        self.nodes.data = {"x": x, "y": y, "name": list(r.entity_names)}
        self.edges.data = {
            "x0": x[i], "y0": y[i], "x1": x[j], "y1": y[j], "width": 1.0 + (self.WIDEST - 1.0) * rel,
            "alpha": 0.25 + 0.75 * rel, "xm": (x[i] + x[j]) / 2, "ym": (y[i] + y[j]) / 2,
            "label": [f"{v:.2f}" for v in values],
        }  # fmt: skip

    def __panel__(self) -> pn.viewable.Viewable:
        return self.pane


EFFICIENCY_COLOURS = {"hwm": MODEL, "mlp": OTHER, "node": "#009E73", "hnn": "#CC79A7"}


class EfficiencyView(pn.viewable.Viewer):
    """The data-efficiency curve of the selected system, as `benchmarks/data_efficiency.py` measured
    it (its results file, read through training/efficiency.py): VPT and true-energy MSE against the
    number of training trajectories, a line per model (mean over seeds, the seeds' range as whiskers),
    and the benchmark's own sentence on how many trajectories the MLP needs to match the HWM at 8."""

    def __init__(self, **params: object) -> None:
        super().__init__(**params)
        self.figures = {
            "vpt": figure(title="VPT over the held-out steps", height=320, sizing_mode="stretch_width",
                          x_axis_type="log", x_axis_label="training trajectories", tools=TOOLS),
            "energy_mse": figure(title="True-energy MSE over the held-out steps", height=320,
                                 sizing_mode="stretch_width", x_axis_type="log", y_axis_type="log",
                                 x_axis_label="training trajectories", tools=TOOLS),
        }  # fmt: skip
        self.sources: dict[tuple[str, str], ColumnDataSource] = {}
        for metric, fig in self.figures.items():
            for model, colour in EFFICIENCY_COLOURS.items():
                src = ColumnDataSource(_empty(("n", "mean", "lo", "hi")))
                fig.line("n", "mean", source=src, line_color=colour, line_width=2, legend_label=model)
                fig.scatter("n", "mean", source=src, color=colour, size=7)
                fig.segment("n", "lo", "n", "hi", source=src, line_color=colour, line_alpha=0.5)
                self.sources[(metric, model)] = src
            fig.legend.location = "top_left"
            fig.legend.click_policy = "hide"
        self.note = pn.pane.Markdown("", sizing_mode="stretch_width")

    def update(self, system: str, results: dict | None, problem: str | None = None) -> None:
        """`problem`: why the results file could not be read (shown instead of the curves)."""
        rows = [r for r in (results or {}).get("rows", []) if r["system"] == system]
        for (metric, model), src in self.sources.items():
            src.data = curve(rows, system, model, metric)
        if problem is not None:
            self.note.object = f"**Cannot read the data-efficiency results:** {problem}"
            return
        if not rows:
            self.note.object = (f"No data-efficiency rows for **{system}** yet: run "
                                f"`python benchmarks/data_efficiency.py --systems {system}`.")  # fmt: skip
            return
        seeds = len({r["seed"] for r in rows})
        assert results is not None
        self.note.object = (
            f"**{system}**, measured by `benchmarks/data_efficiency.py` ({results['steps']} optimiser steps per "
            f"model whatever the data, {seeds} seed(s), {results['test_trajectories']} held-out trajectories of "
            f"{results['scored_steps']} steps; {results['machine']}). MLP trajectories to reach the HWM's VPT at "
            f"8: {match_sentence(rows, system)}."
        )

    def __panel__(self) -> pn.viewable.Viewable:
        figures = pn.Row(*(pn.pane.Bokeh(f, sizing_mode="stretch_width") for f in self.figures.values()),
                         sizing_mode="stretch_width")  # fmt: skip
        return pn.Column(help_card("Data efficiency"), self.note, figures, sizing_mode="stretch_width")
