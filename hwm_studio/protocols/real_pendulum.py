"""The real pendulum of Schmidt & Lipson (2009), the HNN paper's "real pendulum" task.

Where the data comes from: M. Schmidt and H. Lipson, "Distilling Free-Form Natural Laws from
Experimental Data", Science 324 (2009), supplementary material, as redistributed by the Hamiltonian
Neural Networks repository (greydanus/hamiltonian-nn, file real_pend_h_1.txt). It is not part of this
project: `default_path()` looks for it in shared/data/schmidt_lipson/ beside the repository, or under
$HWM_STUDIO_DATA/schmidt_lipson/ when that is set.

The file holds one trial of motion-tracked angle and angular velocity at a nominal 1/6 s, with ten
gaps. Protocol: train on the first 80% in time (rows 0..443), never differencing across a gap; roll
out once from the first test point (row 444) over the 110 test times (0 to 18.17 s, no gaps there);
score the energy H = 2.4 (1 - cos theta) + theta_dot^2 of the rollout against the measured states
(MSE over the 110 points). The motion decays, so a model with friction should track the decay.

The 2.4 is the HNN repository's constant (its `real_pend_energy`). For a rigid pendulum,
I theta_ddot = -m g d sin(theta), the energy divided by I / 2 is theta_dot^2 + 2 omega0^2 (1 - cos theta)
with omega0^2 = m g d / I, so 2.4 stands for omega0^2 = 1.2 s^-2 (a small-swing period of 5.7 s).
`fit_frequency` measures omega0^2 from the data itself (about 1.28 s^-2): close to, not equal to, 1.2.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hwm_studio.data.format import DataFormatError, TrajectoryData

NOMINAL_DT = 1.0 / 6.0
TEST_START, TEST_STOP = 444, 554  # rows of the test segment (110 points)


OMEGA0_SQUARED = 1.2  # s^-2: the protocol's energy is theta_dot^2 + 2 OMEGA0_SQUARED (1 - cos theta)


def energy(x: np.ndarray, omega0_squared: float = OMEGA0_SQUARED) -> np.ndarray:
    """The protocol's H = 2.4 (1 - cos theta) + theta_dot^2 on (..., 2) = (theta, theta_dot); another
    `omega0_squared` scores with theta_dot^2 + 2 omega0_squared (1 - cos theta) instead."""
    return 2.0 * omega0_squared * (1.0 - np.cos(x[..., 0])) + x[..., 1] ** 2


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


def fit_frequency(data: RealPendulum) -> tuple[float, float]:
    """(omega0^2, b) of theta_ddot = -omega0^2 sin(theta) - b theta_dot fitted by least squares to the
    whole trial: theta_ddot by central differences of the measured theta_dot, only where both
    neighbours are one nominal step away (never across a gap)."""
    t, x = data.t, data.x
    step = np.diff(t)
    ok = (np.abs(step[:-1] - NOMINAL_DT) < 1e-6) & (np.abs(step[1:] - NOMINAL_DT) < 1e-6)
    accel = (x[2:, 1] - x[:-2, 1]) / (t[2:] - t[:-2])
    design = np.stack([-np.sin(x[1:-1, 0]), -x[1:-1, 1]], axis=1)[ok]
    (omega0_squared, damping), *_ = np.linalg.lstsq(design, accel[ok], rcond=None)
    return float(omega0_squared), float(damping)


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
