"""SymODEN's "single-embed" pendulum task (Zhong et al. 2020), reproduced from their code.

Environment (myenv/pendulum.py): theta'' = 15 sin(theta) + 3 u (g = 10, m = l = 1, theta = 0
upright), torque clipped to +-5, no velocity clip, each 0.05 s step integrated by scipy RK45 with
default tolerances; reset theta ~ U(-pi, pi), theta_dot ~ U(-1, 1) from gym 0.14's seeding
(SHA-512 of the seed). Observations (cos, sin, theta_dot) are recorded after every step.
Data: for each u in (0, -1, 1, -2, 2) a fresh environment seeded 0, 128 trials; the first 64
are the training half.

Score ("prediction error"): on the u = 0 set of 128 trials x 40 steps, its training half (64
trials, whose starts are those of the u = 0 training trajectories: the published number
measures extension in time), roll out 39 steps from the first row and sum the squared error over
the 40 rows and the observation coordinates; average over trajectories. We also report the same
score on the held-out half (trials 64..127), which tests unseen initial states.
"""

from __future__ import annotations

import hashlib
import struct

import numpy as np
from scipy.integrate import solve_ivp

from hwm_studio.data.format import TrajectoryData

CONTROLS = (0.0, -1.0, 1.0, -2.0, 2.0)
DT = 0.05
MAX_TORQUE = 5.0


def gym014_random_state(seed: int) -> np.random.RandomState:
    """gym 0.14's seeding.np_random: the seed is hashed (sha512) into a list of uint32 words."""
    seed = seed % 2 ** (8 * 8)
    digest = hashlib.sha512(str(seed).encode("utf8")).digest()[:8]
    digest += b"\0" * (4 - len(digest) % 4)  # gym always pads (4 zero bytes here)
    words = struct.unpack(f"<{len(digest) // 4}I", digest)
    big = sum(w << (32 * i) for i, w in enumerate(words))
    ints = []
    while big:
        big, mod = divmod(big, 2**32)
        ints.append(mod)
    rng = np.random.RandomState()
    rng.seed(ints or [0])
    return rng


def _rhs(_t: float, y: np.ndarray, u: float) -> np.ndarray:
    return np.array([y[1], 15.0 * np.sin(y[0]) + 3.0 * u])


def sample(u: float, trials: int, timesteps: int, seed: int = 0) -> np.ndarray:
    """States (theta, theta_dot) after each step: (trials, timesteps, 2), one env seeded `seed`."""
    rng = gym014_random_state(seed)
    u = float(np.clip(u, -MAX_TORQUE, MAX_TORQUE))
    out = np.empty((trials, timesteps, 2))
    for k in range(trials):
        state = rng.uniform(low=[-np.pi, -1.0], high=[np.pi, 1.0])
        for t in range(timesteps):
            state = solve_ivp(_rhs, (0.0, DT), state, args=(u,)).y[:, -1]
            out[k, t] = state
    return out


def observe(states: np.ndarray) -> np.ndarray:
    """(..., 2) states -> (..., 3) observations (cos theta, sin theta, theta_dot)."""
    return np.stack([np.cos(states[..., 0]), np.sin(states[..., 0]), states[..., 1]], axis=-1)


def as_data(states_by_u: dict[float, np.ndarray]) -> TrajectoryData:
    """Stack per-control state arrays (trials, T, 2) into the data format, u held constant."""
    q, p, u = [], [], []
    for value, s in states_by_u.items():
        q.append(s[..., 0, None, None])  # (trials, T, 1 entity, 1 dim)
        p.append(s[..., 1, None, None])
        u.append(np.full((*s.shape[:2], 1), value))
    meta = {"system": "symoden_pendulum", "params": {}, "entities": ["pendulum"]}
    return TrajectoryData(q=np.concatenate(q), p=np.concatenate(p), dt=DT, u=np.concatenate(u), meta=meta)


def training_data(timesteps: int = 20, samples: int = 128) -> TrajectoryData:
    """The training half for every control value (5 x 64 trajectories of `timesteps` points)."""
    return as_data({u: sample(u, samples, timesteps)[: samples // 2] for u in CONTROLS})


def scoring_sets(timesteps: int = 40, samples: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """u = 0 states (trials, 40, 2): the published set (training half) and the held-out half."""
    s = sample(0.0, samples, timesteps)
    return s[: samples // 2], s[samples // 2 :]


def prediction_error(true_states: np.ndarray, pred_obs: np.ndarray) -> float:
    """Sum over rows and (cos, sin, theta_dot) of squared error, mean over trajectories."""
    err = (observe(true_states) - pred_obs) ** 2  # (N, T, 3)
    return float(err.sum(axis=(1, 2)).mean())
