"""The Train tab: learn a model live, in a background thread, from the selected system or a file.

`TrainPanel` owns its widgets, its training job and the curves it streams; it reads what it trains
on from a `TrainSource` (the studio's system and seed, and the workspace) and tells its owner when
the models it offers change (a run started or saved) and when the live run has new weights. The
job itself (`training.job.TrainingJob`) is the library's; this module only shows it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import panel as pn
import param
from bokeh.models import ColumnDataSource
from bokeh.plotting import figure

from hwm_studio.data.format import DataFormatError
from hwm_studio.models import PIXEL_MODELS, STATE_MODELS
from hwm_studio.systems import known_as
from hwm_studio.training.fit import TrainConfig, kind_defaults
from hwm_studio.training.job import TrainingJob
from hwm_studio.training.run import system_dataset
from hwm_studio.ui.help import help_card
from hwm_studio.ui.loops import Schedule, Ticker, clicked, served_schedule
from hwm_studio.ui.session import LIVE
from hwm_studio.ui.views import MODEL, OTHER, TOOLS
from hwm_studio.workspace import MAX_UPLOAD_BYTES, Workspace, WorkspaceError

SIMULATE = "simulate the selected system"  # the tab's own data source
POLL_MS = 500


@dataclass(frozen=True)
class TrainSource:
    """What a run started now learns from when it simulates: the selected system, at this seed."""

    system: str
    seed: int


class TrainPanel(pn.viewable.Viewer):
    """Start / pause / stop / save one training run per session, with its loss curves live."""

    def __init__(
        self,
        source: Callable[[], TrainSource],
        workspace: Workspace,
        on_models_changed: Callable[[], None] = lambda: None,
        on_weights: Callable[[int], None] = lambda version: None,
        **params: Any,
    ) -> None:
        super().__init__(**params)
        self.source, self.workspace = source, workspace
        self.on_models_changed, self.on_weights = on_models_changed, on_weights
        self.schedule: Schedule = served_schedule  # a notebook swaps in the kernel's loop (ui/notebook.py)
        self.job: TrainingJob | None = None
        self.job_system: str | None = None  # the studio system the run's model belongs to
        self._warning: str | None = None  # the run's latest warning (e.g. drawing no bodies)
        self._poll: Ticker | None = None
        self.loss_source = ColumnDataSource({"step": [], "loss": []})
        self.val_source = ColumnDataSource({"step": [], "val": []})
        self.status = pn.pane.Markdown("No training run in this session.")
        self.data = pn.widgets.Select(label="Data", options=self._data_files(), width=260)
        self.upload = pn.widgets.FileInput(
            accept=".npz",
            width=260,
            description=(
                f"Add a trajectory .npz (the README's data format) to the workspace, up to {MAX_UPLOAD_BYTES >> 20} MB"
            ),
        )
        self.upload.param.watch(self._on_upload, "value")
        self.kind = pn.widgets.Select(label="Model kind", options=[*STATE_MODELS, *PIXEL_MODELS], width=260)
        self.steps = pn.widgets.IntInput(label="Steps", value=600, start=10, end=100_000, width=120)
        self.lr = pn.widgets.FloatInput(label="Learning rate", value=kind_defaults(self.kind.value)[0],
                                        start=1e-5, end=1.0, width=120)  # fmt: skip
        self.kind.param.watch(lambda e: setattr(self.lr, "value", kind_defaults(e.new)[0]), "value")
        self.save_name = pn.widgets.TextInput(label="Save as (runs/NAME)", value="my_run", width=260)
        self._buttons = []
        for label, action, width in (("Start", self.start, 80), ("Pause/Resume", self.pause, 110),
                                     ("Stop", self.stop, 70), ("Save", self.save, 70)):  # fmt: skip
            button = pn.widgets.Button(label=label, width=width, color="primary" if label == "Start" else "default")
            button.on_click(clicked(action))
            self._buttons.append(button)

    # --- data ------------------------------------------------------------------------------------
    def _data_files(self) -> list[str]:
        return [SIMULATE, *self.workspace.data_files()]

    def sources(self) -> list[str]:
        """What a run can learn from: the selected system simulated, or a workspace file."""
        return list(self.data.options)

    def refresh_sources(self, saved: str | None = None) -> None:
        """New files in the workspace (an episode just played) become sources; `saved` is selected."""
        files = self._data_files()
        self.data.options = files
        if saved in files:
            self.data.value = saved

    def _on_upload(self, event: Any) -> None:
        """A file from the browser: saved to the workspace once it reads back as valid, then offered."""
        if not event.new:
            return
        name, content = self.upload.filename or "", event.new
        self.upload.clear()  # the browser's input is emptied, and the bytes are not kept here either
        with param.discard_events(self.upload):
            self.upload.value = None
        try:
            saved = self.workspace.add_data(name, content)
        except (DataFormatError, WorkspaceError) as exc:
            self.status.object = f"**Upload refused:** {exc}"
            return
        self.refresh_sources(saved)
        self.status.object = f"Uploaded **{saved}** to the workspace; it is selected as the data."

    # --- the run ---------------------------------------------------------------------------------
    def start(self) -> None:
        if self.job is not None and self.job.alive:
            self.status.object = "A run is already training in this session: stop it first."
            return
        picked, kind, src = self.data.value, self.kind.value, self.source()
        try:
            if picked == SIMULATE:  # pixel kinds learn from its frames, drawn at 32 x 32
                data = system_dataset(src.system, trajectories=48, points=60, seed=src.seed,
                                      frame_size=32 if kind in PIXEL_MODELS else None)  # fmt: skip
            else:
                data = self.workspace.load_data(picked)
            cfg = TrainConfig(steps=int(self.steps.value), lr=float(self.lr.value), val_every=50,
                              batch_size=kind_defaults(kind)[1], device="cpu", seed=src.seed)  # fmt: skip
            job = TrainingJob(data, kind, cfg)
        except (DataFormatError, WorkspaceError, ValueError) as exc:
            self.status.object = f"**Cannot train on this data:** {exc}"
            return
        params = data.system_params or None
        self.job, self.job_system, self._warning = job, (known_as(data.system_name, params) or src.system), None
        self.loss_source.data = {"step": [], "loss": []}
        self.val_source.data = {"step": [], "val": []}
        job.start()
        self.status.object = f"Training a **{kind}** model on {picked}…"
        if self._poll is None:
            self._poll = self.schedule(self.poll, POLL_MS)
        self.on_models_changed()

    def poll(self) -> None:
        """Drain the worker's metrics into the curves and the status; report new live weights."""
        job = self.job
        if job is None:
            return
        events = job.drain()
        steps = [e for e in events if e["event"] == "step"]
        vals = [e for e in events if e["event"] == "validation"]
        if steps:
            self.loss_source.stream({"step": [e["step"] for e in steps], "loss": [e["loss"] for e in steps]},
                                    rollover=5000)  # fmt: skip
        if vals:
            self.val_source.stream({"step": [e["step"] for e in vals], "val": [e["val_rollout_mse"] for e in vals]})
        if steps and not job.paused:
            self.status.object = f"Training… step {steps[-1]['step']}, loss {steps[-1]['loss']:.3g}"
        warned = [e["warning"] for e in vals if e.get("warning")]
        if vals:
            self._warning = warned[-1] if warned else None
        if self._warning and job.alive:
            self.status.object += f"  \n**Warning:** {self._warning}"
        for e in events:
            if e["event"] == "end":
                self.status.object = f"Training {e['status']} after {e['steps_done']} steps. {e['message']}"
                if self._warning:
                    self.status.object += f"  \n**Warning:** {self._warning}"
            elif e["event"] == "error":
                self.status.object = f"**Training failed:** {e['message']}"
        version, _ = job.latest_weights()
        if version > 0:
            self.on_weights(version)

    def pause(self) -> None:
        if self.job is None:
            return
        if self.job.paused:
            self.job.resume()
            self.status.object = "Resumed."
        else:
            self.job.pause()
            self.status.object = "Paused."

    def stop(self) -> None:
        if self.job is not None:
            self.job.stop()

    def save(self) -> None:
        if self.job is None:
            self.status.object = "Nothing to save: start a training run first."
            return
        try:
            path = self.job.save(self.workspace.run_path(self.save_name.value))
        except (WorkspaceError, OSError, ValueError) as exc:
            self.status.object = f"**Cannot save:** {exc}"
            return
        self.status.object = f"Saved to `runs/{Path(path).name}` in the workspace."
        self.on_models_changed()

    def close(self) -> None:
        """Stop the run and the poll (the session is closing)."""
        if self.job is not None:
            self.job.stop()
        if self._poll is not None:
            self._poll.stop()
            self._poll = None

    def wait(self, timeout: float, between: Callable[[], None] = lambda: None) -> None:
        """Block until the run ends (or `timeout` s, then stop it), polling twice a second and
        calling `between` after each poll (a notebook sends what was drawn)."""
        job = self.job
        if job is None:
            return
        deadline = time.monotonic() + timeout
        while job.alive and time.monotonic() < deadline:
            job.join(0.5)
            self.poll()
            between()
        if job.alive:
            job.stop()
            job.join(30)
        self.poll()
        between()

    # --- layout ----------------------------------------------------------------------------------
    def __panel__(self) -> pn.viewable.Viewable:
        fig = figure(title="Training loss and validation rollout error", height=360, sizing_mode="stretch_width",
                     x_axis_label="step", y_axis_type="log", tools=TOOLS)  # fmt: skip
        fig.line("step", "loss", source=self.loss_source, line_color=MODEL, legend_label="training loss")
        fig.scatter("step", "val", source=self.val_source, color=OTHER, size=6, legend_label="validation rollout MSE")
        fig.line("step", "val", source=self.val_source, line_color=OTHER)
        start, pause, stop, save = self._buttons
        controls = pn.Column(self.data, self.upload, self.kind, pn.Row(self.steps, self.lr), pn.Row(start, pause, stop),
                             self.save_name, save, width=290)  # fmt: skip
        note = pn.pane.Markdown(f"Choose **{LIVE}** as the model on the Explore tab to watch it learn.")
        return pn.Column(help_card("Train"), pn.Row(
            controls, pn.Column(self.status, pn.pane.Bokeh(fig, sizing_mode="stretch_width"), note,
                                sizing_mode="stretch_width"), sizing_mode="stretch_width"),
            sizing_mode="stretch_width")  # fmt: skip
