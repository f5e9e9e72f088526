"""The one definition of each state-prediction metric, shared by evaluation, scenes and benchmarks.

scale(x)             per-coordinate standard deviation with a floor of 1e-3 of the largest
                     (a coordinate that never moves must not divide by zero, nor dominate)
normalised_error     sqrt(mean_c ((x_hat_c - x_c) / sigma_c)^2) over q and p, per time point;
                     angles compared modulo 2 pi; sigma from the reference data given
valid_steps          per trajectory, the steps before that error first exceeds VPT_THRESHOLD
                     (every step if it never does): the valid prediction time (VPT)
"""

from __future__ import annotations

import numpy as np

VPT_THRESHOLD = 0.1


def scale(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """Standard deviation over `axes`, floored at 1e-3 of its largest entry (and 1e-9)."""
    s = np.asarray(x).std(axis=axes)
    return np.maximum(s, 1e-3 * max(float(np.max(s)), 1e-6))


def angle_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a - b wrapped to (-pi, pi]."""
    d = a - b
    return np.arctan2(np.sin(d), np.cos(d))


def normalised_error(
    q_hat: np.ndarray, p_hat: np.ndarray, q: np.ndarray, p: np.ndarray,
    sigma_q: np.ndarray, sigma_p: np.ndarray, angular: bool = False,
) -> np.ndarray:  # fmt: skip
    """States (..., T, E, D) and per-coordinate scales (E, D) -> the normalised error (..., T)."""
    dq = angle_difference(q_hat, q) if angular else q_hat - q
    zq, zp = dq / sigma_q, (p_hat - p) / sigma_p
    return np.sqrt(0.5 * ((zq**2).mean(axis=(-2, -1)) + (zp**2).mean(axis=(-2, -1))))


def valid_steps(error: np.ndarray) -> np.ndarray:
    """Normalised errors (..., T + 1) from the start state on -> steps valid before the first
    exceedance of VPT_THRESHOLD (..., ); T where it never exceeds it. A non-finite error counts
    as an exceedance."""
    over = ~(error[..., 1:] <= VPT_THRESHOLD)
    h = error.shape[-1] - 1
    return np.where(over.any(axis=-1), over.argmax(axis=-1), h)
