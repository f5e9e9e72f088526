"""The Hamiltonian Neural Networks protocols (Greydanus et al. 2019), reproduced exactly.

Data generation follows greydanus/hamiltonian-nn (experiment-spring/pend data.py @4009db6):
the legacy global numpy RNG seeded with 0, per trajectory rand(2) (direction), rand() (radius),
then randn(n) noise on q and randn(n) on p (the noise is added after the labels are taken from
the clean states); scipy RK45 with rtol 1e-10; trajectories concatenated in order and split in
half without shuffling. The evaluation start points are regenerated from the same RNG stream
(they match the published `hnn_eval_starts.json`).

Scoring ("energy MSE"): truth and model integrated with RK45 (rtol 1e-12) at 100 points; per
rollout the mean over points of (E_true - E_model)^2; the mean over 15 rollouts. Two quirks of
the original notebooks are reproduced for the "original" score and removed for the "honest" one:
  spring:   the notebook stretches the horizon by 1.09 in place on every call, so the model is
            integrated 1.09x further than the truth and the horizon grows from 21.8 to 79.4;
  pendulum: the notebook scores E = q^2 + p^2 instead of the pendulum's H = 3(1 - cos q) + p^2.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.integrate import solve_ivp

Field = Callable[[np.ndarray], np.ndarray]  # (2,) state -> (2,) time derivative
Predictor = Callable[[np.ndarray, float, np.ndarray], np.ndarray]  # (x0, t_end, t_eval) -> (len(t_eval), 2)


@dataclass(frozen=True)
class HNNTask:
    name: str
    timescale: int  # points = 3 * timescale on t in [0, 3]
    radius: tuple[float, float]  # radius = rand() * (hi - lo) + lo
    field: Field
    energy: Callable[[np.ndarray], np.ndarray]  # true H on (..., 2)


def _spring_field(y: np.ndarray) -> np.ndarray:
    return np.array([2.0 * y[1], -2.0 * y[0]])


def _pend_field(y: np.ndarray) -> np.ndarray:
    return np.array([2.0 * y[1], -3.0 * np.sin(y[0])])


SPRING = HNNTask("spring", 10, (0.1, 1.0), _spring_field, lambda y: y[..., 0] ** 2 + y[..., 1] ** 2)
PENDULUM = HNNTask("pendulum", 15, (1.3, 2.3), _pend_field, lambda y: 3.0 * (1.0 - np.cos(y[..., 0])) + y[..., 1] ** 2)


def quadratic_energy(y: np.ndarray) -> np.ndarray:
    """E = q^2 + p^2: what both original notebooks score (correct for the spring only)."""
    return y[..., 0] ** 2 + y[..., 1] ** 2


@dataclass
class HNNDataset:
    """Trajectory-shaped view of the HNN data: (trajectories, points, 2) arrays."""

    x: np.ndarray  # noisy states
    dx: np.ndarray  # exact derivatives at the clean states
    t: np.ndarray  # (points,) times
    n_train: int  # the first n_train trajectories are the original training half

    @property
    def dt(self) -> float:
        return float(self.t[1] - self.t[0])


def _trajectory(
    task: HNNTask,
    rng: np.random.RandomState,
    noise_std: float = 0.1,
    radius: float | None = None,
    y0: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    t_eval = np.linspace(0, 3, int(task.timescale * 3))
    if y0 is None:
        y0 = rng.rand(2) * 2 - 1
    if radius is None:
        lo, hi = task.radius
        radius = rng.rand() * (hi - lo) + lo
    y0 = y0 / np.sqrt((y0**2).sum()) * radius
    sol = solve_ivp(lambda _t, y: task.field(y), (0, 3), y0, t_eval=t_eval, rtol=1e-10)
    q, p = sol.y[0], sol.y[1]
    dydt = np.stack([task.field(y) for y in sol.y.T])  # labels from the clean states
    q = q + rng.randn(*q.shape) * noise_std
    p = p + rng.randn(*p.shape) * noise_std
    return np.stack([q, p], axis=-1), dydt


def make_dataset(task: HNNTask, samples: int = 50, seed: int = 0) -> tuple[HNNDataset, np.random.RandomState]:
    """The original get_dataset, kept as trajectories; also returns the RNG for the start points."""
    rng = np.random.RandomState(seed)
    xs, dxs = zip(*(_trajectory(task, rng) for _ in range(samples)), strict=True)
    t = np.linspace(0, 3, int(task.timescale * 3))
    return HNNDataset(np.stack(xs), np.stack(dxs), t, n_train=samples // 2), rng


def eval_starts(task: HNNTask, seed: int = 0) -> list[np.ndarray]:
    """The 15 start points of the analysis notebook, from the RNG state it leaves behind."""
    _, rng = make_dataset(task, seed=seed)
    if task.name == "spring":
        _trajectory(task, rng, radius=1.0, y0=np.array([1.0, 0.0]))  # the notebook's figure cell
    else:
        rng.randn(30), rng.randn(30)
        rng.rand(), rng.rand()
    starts = []
    for _ in range(15):
        x0 = rng.rand(2) * 1.6 - 0.8
        x0 += 0.2 * np.sign(x0)
        starts.append(x0)
    return starts


@dataclass
class EnergyScores:
    original: float  # the notebook's definition (quirks included)
    honest: float  # fixed horizon, true H
    per_rollout_original: list[float]
    per_rollout_honest: list[float]


def integrator(field: Field, rtol: float = 1e-12) -> Predictor:
    """A predictor that integrates `field` with scipy's RK45, as the protocols do."""

    def predict(x0: np.ndarray, t_end: float, t_eval: np.ndarray) -> np.ndarray:
        sol = solve_ivp(lambda _t, y: field(y), (0, t_end), x0, t_eval=t_eval, rtol=rtol)
        if not sol.success or sol.y.shape[1] != len(t_eval):
            return np.full((len(t_eval), 2), np.nan)
        return sol.y.T

    return predict


def energy_scores(task: HNNTask, model: Predictor, starts: list[np.ndarray] | None = None) -> EnergyScores:
    """Energy MSE of a model's predictions against the truth, original and honest definitions."""
    starts = eval_starts(task) if starts is None else starts
    truth = integrator(task.field, 1e-12)
    original, honest = [], []
    t_end = 20.0 * (1.09 if task.name == "spring" else 1.0)  # after the figure cell's stretch
    for x0 in starts:
        t_eval = np.linspace(0, t_end, 100)
        true = truth(x0, t_end, t_eval)
        if task.name == "spring":  # the in-place stretch: model integrated 1.09x further
            t_end_model = t_end * 1.09
            pred = model(x0, t_end_model, t_eval * 1.09)
            t_end = t_end_model
        else:
            pred = model(x0, t_end, t_eval)
        original.append(float(np.mean((quadratic_energy(true) - quadratic_energy(pred)) ** 2)))
        t_fixed = np.linspace(0, 20.0, 100)
        true_f = truth(x0, 20.0, t_fixed)
        model_f = model(x0, 20.0, t_fixed)
        honest.append(float(np.mean((task.energy(true_f) - task.energy(model_f)) ** 2)))
    return EnergyScores(float(np.mean(original)), float(np.mean(honest)), original, honest)
