"""The real pendulum of Schmidt & Lipson (2009), the HNN paper's "real pendulum" task.

The file (not part of this project; pass its path) holds one trial of motion-tracked angle and
angular velocity at a nominal 1/6 s, with ten gaps. Protocol: train on the first 80% in time
(rows 0..443), never differencing across a gap; roll out once from the first test point (row
444) over the 110 test times (0 to 18.17 s, no gaps there); score the energy
H = 2.4 (1 - cos theta) + theta_dot^2 of the rollout against the measured states (MSE over the
110 points). The motion decays, so a model with friction should track the decay.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hwm_studio.data.format import DataFormatError, TrajectoryData

NOMINAL_DT = 1.0 / 6.0
TEST_START, TEST_STOP = 444, 554  # rows of the test segment (110 points)


def energy(x: np.ndarray) -> np.ndarray:
    """The protocol's H on (..., 2) = (theta, theta_dot)."""
    return 2.4 * (1.0 - np.cos(x[..., 0])) + x[..., 1] ** 2


@dataclass
class RealPendulum:
    t: np.ndarray  # (556,)
    x: np.ndarray  # (556, 2) theta, theta_dot

    def test(self) -> tuple[np.ndarray, np.ndarray]:
        """Test times from 0 and measured states (110, 2)."""
        t = self.t[TEST_START:TEST_STOP]
        return t - t[0], self.x[TEST_START:TEST_STOP]

    def train_segments(self) -> list[np.ndarray]:
        """Gap-free runs of rows within the training part (rows 0..443)."""
        t, x = self.t[:TEST_START], self.x[:TEST_START]
        breaks = np.nonzero(np.abs(np.diff(t) - NOMINAL_DT) > 1e-6)[0] + 1
        return [seg for seg in np.split(x, breaks) if len(seg) >= 2]

    def training_windows(self, length: int = 12, stride: int = 2) -> TrajectoryData:
        """Overlapping equal-length windows of the gap-free segments, in the data format."""
        windows = [
            seg[s : s + length] for seg in self.train_segments() for s in range(0, len(seg) - length + 1, stride)
        ]
        w = np.stack(windows)  # (N, length, 2)
        meta = {"system": "real_pendulum", "params": {}, "entities": ["pendulum"]}
        return TrajectoryData(q=w[..., None, 0:1], p=w[..., None, 1:2], dt=NOMINAL_DT, meta=meta)


def default_path() -> Path:
    """Where the shared data set lives beside the project (override with HWM_STUDIO_DATA)."""
    root = Path(os.environ.get("HWM_STUDIO_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
    return root / "schmidt_lipson" / "real_pend_h_1.txt"


def load(path: str | os.PathLike[str] | None = None) -> RealPendulum:
    """Read the whitespace table (header '%o v'; columns trial, t, theta, theta_dot)."""
    path = Path(path) if path is not None else default_path()
    if not path.exists():
        raise DataFormatError(f"{path}: no such file (the Schmidt & Lipson real pendulum data)")
    try:
        table = np.loadtxt(path, comments="%")
    except ValueError as exc:
        raise DataFormatError(f"{path}: not a numeric table ({exc})") from None
    if table.ndim != 2 or table.shape[1] != 4 or table.shape[0] < TEST_STOP:
        raise DataFormatError(f"{path}: expected >= {TEST_STOP} rows of 4 columns, got {table.shape}")
    return RealPendulum(t=table[:, 1], x=table[:, 2:4])
