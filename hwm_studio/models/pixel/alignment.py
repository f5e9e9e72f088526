"""How far a pixel model's latent is the physics, and the map that lays it over the true (q, p).

A pixel model's q is an angle up to sign and offset (angular geometry) or an affine image of the
true positions (linear, planar); its p = M dq/dt is in its own mass units. Two measures of that,
each defined once here:
    circular_correlation  angles (Jammalamadaka-SenGupta; sign-free as its absolute value)
    affine_r2             R^2 of the best affine map from true to inferred coordinates
and `Alignment`, fitted on the model's *readings* of true frames (what it perceives, never what it
predicts), which maps its latent states into the system's coordinates so that the studio can draw
a pixel model's prediction over the true phase portrait.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def circular_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Circular correlation of two angle series (same shape): 1 when b is a plus a constant, -1
    when it is minus a plus a constant, about 0 when unrelated."""

    def centred(x: np.ndarray) -> np.ndarray:
        return np.sin(x - np.arctan2(np.sin(x).mean(), np.cos(x).mean()))

    sa, sb = centred(np.ravel(a)), centred(np.ravel(b))
    return float((sa * sb).sum() / max(np.sqrt((sa * sa).sum() * (sb * sb).sum()), 1e-300))


def affine_r2(true: np.ndarray, inferred: np.ndarray) -> float:
    """R^2 of the best affine map from true coordinates (M, C) to inferred ones (M, C'), pooled
    over the inferred coordinates: 1 when the inferred are exactly an affine image of the true."""
    x = np.concatenate([true, np.ones((true.shape[0], 1))], axis=1)
    coef, *_ = np.linalg.lstsq(x, inferred, rcond=None)
    resid = inferred - x @ coef
    total = ((inferred - inferred.mean(0)) ** 2).sum()
    return float(1 - (resid**2).sum() / max(total, 1e-300))


def _wrap(x: np.ndarray) -> np.ndarray:
    return np.arctan2(np.sin(x), np.cos(x))


@dataclass(frozen=True)
class Alignment:
    """Per entity and coordinate: q_true = sq * q + bq, p_true = sp * p + bp (angles: sq = +-1)."""

    sq: np.ndarray  # (E, D)
    bq: np.ndarray
    sp: np.ndarray
    bp: np.ndarray
    angular: bool

    @classmethod
    def fit(cls, q: np.ndarray, p: np.ndarray, q_true: np.ndarray, p_true: np.ndarray, angular: bool) -> Alignment:
        """From latent readings and the true states at the same times, each (T, E, D)."""
        sq, bq = np.ones(q.shape[1:]), np.zeros(q.shape[1:])
        sp, bp = np.ones(q.shape[1:]), np.zeros(q.shape[1:])
        for i in range(q.shape[1]):
            for d in range(q.shape[2]):
                a, b = q[:, i, d], q_true[:, i, d]
                if angular:
                    sq[i, d] = 1.0 if circular_correlation(b, a) >= 0 else -1.0
                    diff = b - sq[i, d] * a
                    bq[i, d] = np.arctan2(np.sin(diff).mean(), np.cos(diff).mean())
                else:
                    sq[i, d], bq[i, d] = _line(a, b)
                sp[i, d], bp[i, d] = _line(p[:, i, d], p_true[:, i, d])
        return cls(sq, bq, sp, bp, angular)

    def apply(self, q: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Latent (..., E, D) -> the system's coordinates."""
        qt = self.sq * q + self.bq
        return (_wrap(qt) if self.angular else qt), self.sp * p + self.bp

    def invert(self, q: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The system's coordinates (..., E, D) -> latent."""
        return (q - self.bq) / self.sq, (p - self.bp) / self.sp


def _line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares y = s x + b (s = 1 where x does not vary or the fit is degenerate)."""
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 2 or np.std(x) < 1e-9:
        return 1.0, float(np.mean(y) - np.mean(x)) if len(x) else 0.0
    s, b = np.polyfit(x, y, 1)
    if not np.isfinite(s) or abs(s) < 1e-9:
        return 1.0, 0.0
    return float(s), float(b)
