"""The Compare tab: the model and the baseline rolled out from the same state under the same actions.

`ComparePanel` owns its views (both phase portraits, the true H along each rollout, the error of
each against time) and draws the session's `rollout` whenever the Explore tab publishes a new one.
The error curves read the Explore tab's metrics sources, so both tabs show the same numbers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import panel as pn
from bokeh.models import ColumnDataSource
from bokeh.plotting import figure

from hwm_studio.ui.help import help_card
from hwm_studio.ui.session import Rollout, Session
from hwm_studio.ui.views import MODEL, OTHER, TOOLS, TRUTH, MetricsView, PhaseView


class ComparePanel(pn.viewable.Viewer):
    def __init__(self, session: Session, metrics: MetricsView, **params: Any) -> None:
        super().__init__(**params)
        self.session = session
        self.metrics = metrics
        self.model_phase = PhaseView("Model", model_colour=MODEL)
        self.base_phase = PhaseView("Baseline", model_colour=OTHER)
        self.energy_source = ColumnDataSource({k: [] for k in ("t", "truth", "model", "base")})
        session.param.watch(lambda e: self.update(e.new), ["rollout"])

    def update(self, rollout: Rollout | None) -> None:
        """Draw one recompute: the model's result, and the baseline's when it is comparable."""
        if rollout is None:
            return
        r, b = rollout.result, rollout.baseline
        frame = min(self.session.frame, r.steps)
        self.model_phase.update(r, rollout.entity, rollout.coord, rollout.plane, frame)
        if b is not None:
            self.base_phase.update(b, rollout.entity, rollout.coord, rollout.base_plane, frame)
        base_h = b.model_true_energy if b is not None else np.full_like(r.t, np.nan)
        self.energy_source.data = {"t": r.t, "truth": r.truth_energy, "model": r.model_true_energy, "base": base_h}

    def _energy_figure(self) -> figure:
        fig = figure(title="True H along each rollout", height=300, sizing_mode="stretch_width",
                     x_axis_label="t", tools=TOOLS)  # fmt: skip
        fig.line("t", "truth", source=self.energy_source, line_color=TRUTH, line_width=3, legend_label="truth")
        fig.line("t", "model", source=self.energy_source, line_color=MODEL, line_width=2, legend_label="model")
        fig.line("t", "base", source=self.energy_source, line_color=OTHER, line_width=2, legend_label="baseline")
        fig.legend.location = "top_left"
        return fig

    def _error_figure(self) -> figure:
        """Error vs horizon of both models (the metrics view's sources, drawn a second time)."""
        fig = figure(title="Normalised state error vs time", height=300, sizing_mode="stretch_width",
                     x_axis_label="t", y_axis_type="log", tools=TOOLS)  # fmt: skip
        fig.line("t", "error", source=self.metrics.source, line_color=MODEL, line_width=2, legend_label="model")
        fig.line("t", "error", source=self.metrics.other, line_color=OTHER, line_width=2, legend_label="baseline")
        fig.legend.location = "bottom_right"
        return fig

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            help_card("Compare"),
            pn.Row(self.model_phase, self.base_phase, sizing_mode="stretch_width"),
            pn.Row(pn.pane.Bokeh(self._energy_figure(), sizing_mode="stretch_width"),
                   pn.pane.Bokeh(self._error_figure(), sizing_mode="stretch_width"),
                   sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )  # fmt: skip
