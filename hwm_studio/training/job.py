"""A training run in a background thread, steerable from a UI: start, pause, resume, stop, save.

The worker trains its own model (never the one a UI is drawing: display knobs must not leak into
training). It publishes step and validation metrics to a queue the UI drains at its own rate,
and a copy of the latest weights the UI can load into its view model every few seconds.
Library code: no UI imports.
"""

from __future__ import annotations

import copy
import queue
import threading
from pathlib import Path
from typing import Any

import torch

from hwm_studio.data.format import TrajectoryData
from hwm_studio.models import WorldModel, build_model, config_from_data
from hwm_studio.training.checkpoint import save_run
from hwm_studio.training.fit import FitResult, TrainConfig, fit, seed_everything
from hwm_studio.training.run import check_trainable, split_trajectories


class TrainingJob:
    def __init__(self, data: TrajectoryData, kind: str, config: TrainConfig, val_fraction: float = 0.2) -> None:
        check_trainable(data, config.horizon)
        self.config = config
        self.train, self.val = split_trajectories(data, val_fraction, config.seed)
        seed_everything(config.seed)
        self.model: WorldModel = build_model(config_from_data(self.train, kind))
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.result: FitResult | None = None
        self.error: str | None = None
        self._stop = threading.Event()
        self._running = threading.Event()  # cleared = paused
        self._running.set()
        self._lock = threading.Lock()
        self._weights: dict[str, torch.Tensor] | None = None
        self._version = 0
        self._thread = threading.Thread(target=self._work, name="hwm-training", daemon=True)

    # --- control -------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def stop(self) -> None:
        self._stop.set()
        self._running.set()  # a paused worker must wake up to stop

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    # --- results -------------------------------------------------------------------------------
    def drain(self) -> list[dict[str, Any]]:
        out = []
        while True:
            try:
                out.append(self.events.get_nowait())
            except queue.Empty:
                return out

    def latest_weights(self) -> tuple[int, dict[str, torch.Tensor] | None]:
        """(version, state_dict copy) of the newest published weights."""
        with self._lock:
            return self._version, self._weights

    def save(self, run_dir: str | Path) -> Path:
        """Write the newest weights as a run directory (atomic per file)."""
        _, weights = self.latest_weights()
        model = copy.deepcopy(self.model)
        if weights is not None:
            model.load_state_dict(weights)
        metrics = {"status": "saved from the studio", "steps_done": self._steps_done}
        return save_run(run_dir, model, metrics=metrics, train_config=dict(self.config.__dict__))

    # --- worker --------------------------------------------------------------------------------
    _steps_done = 0

    def _publish(self) -> None:
        weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        with self._lock:
            self._weights = weights
            self._version += 1

    def _callback(self, event: dict[str, Any]) -> bool:
        self.events.put(dict(event))
        if event["event"] == "step":
            self._steps_done = event["step"]
            if event["step"] % 25 == 0:
                self._publish()
        while not self._running.is_set():  # paused: wait, but stay stoppable
            self._running.wait(0.1)
        return not self._stop.is_set()

    def _work(self) -> None:
        try:
            self.result = fit(self.model, self.train, self.config, val=self.val, callbacks=[self._callback],
                              stop=self._stop)  # fmt: skip
            self._publish()
        except Exception as exc:  # reported to the UI; the thread must not die silently
            self.error = f"{type(exc).__name__}: {exc}"
            self.events.put({"event": "error", "message": self.error})
