"""The Hamiltonian Generative Network pixel protocol (Toth et al. 2020), as a named benchmark.

Data: 32x32 RGB frames at dt = 0.125; initial (q, p) drawn on a circle of radius r ~ U(lo, hi) in
phase space (uniform direction), then Gaussian noise of std 0.1 added to q and p; systems:
    mass_spring  H = p^2 / (2m) + k q^2 / 2,         m = 0.5, k = 2,         r ~ U(0.1, 1.0)
    pendulum     H = p^2 / (2 m l^2) + m g l (1 - cos q), m = 0.5, l = 1, g = 3, r ~ U(1.3, 2.3)
    two_body     two unit masses under gravity (this project's `two_body` preset and sampler),
                 with the same 0.1 noise
and two tasks HGN did not have, drawn and scored the same way:
    double_pendulum  this project's double pendulum (unit masses and links) at g = 3, its sampler
                     (angles and angular velocities in [-1, 1]), the same noise: chaotic
    three_body       this project's `three_body` preset and sampler, the same noise
Frames come from this project's renderer (anti-aliased discs and rods), not HGN's Gaussian blobs,
so the absolute pixel MSE depends on the drawing as well as the model: compare rows measured on
the same data. A model reads `context` frames and then predicts; "30-step rollouts" means the
score is the mean pixel MSE (RGB in [0, 1]) over the 30 predicted frames after the context, on
held-out trajectories; `long_factor` times longer rollouts test long-horizon stability.

Published test pixel MSE (x1e-4), for reference: HGN (leapfrog) spring 6.23, pendulum 11.72,
two-body 16.47; an independent reimplementation: 12.21 / 44.12 / 6.33.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hwm_studio.data.format import TrajectoryData
from hwm_studio.data.simulate import simulate
from hwm_studio.state import PhaseState
from hwm_studio.systems import System, get_system
from hwm_studio.systems.render import RenderStyle

DT = 0.125
FRAME_SIZE = 32
ROLLOUT = 30
NOISE = 0.1
PUBLISHED_X1E4 = {
    "mass_spring": {"HGN (leapfrog)": 6.23, "reimplementation": 12.21},
    "pendulum": {"HGN (leapfrog)": 11.72, "reimplementation": 44.12},
    "two_body": {"HGN (leapfrog)": 16.47, "reimplementation": 6.33},
}


@dataclass(frozen=True)
class HGNTask:
    name: str
    system: str
    params: tuple[tuple[str, float], ...]
    radius: tuple[float, float] | None  # None: the system's own sampler (two-body orbits)

    def build(self) -> System:
        return get_system(self.system, **dict(self.params))


TASKS = {
    "mass_spring": HGNTask("mass_spring", "spring", (("m", 0.5), ("k", 2.0)), (0.1, 1.0)),
    "pendulum": HGNTask("pendulum", "pendulum", (("m", 0.5), ("l", 1.0), ("g", 3.0)), (1.3, 2.3)),
    "two_body": HGNTask("two_body", "two_body", (), None),
    "double_pendulum": HGNTask("double_pendulum", "double_pendulum", (("g", 3.0),), None),
    "three_body": HGNTask("three_body", "three_body", (), None),
}


def initial_states(task: HGNTask, n: int, seed: int) -> PhaseState:
    """Start states: on a phase-space circle of random radius (or the system's sampler), plus noise."""
    g = torch.Generator().manual_seed(seed)
    system = task.build()
    if task.radius is None:
        z = system.sample_initial(n, g)
    else:
        lo, hi = task.radius
        r = lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)
        theta = 2 * np.pi * torch.rand(n, generator=g, dtype=torch.float64)
        shape = (n, system.n_entities, system.dim)
        z = PhaseState((r * torch.cos(theta)).reshape(shape), (r * torch.sin(theta)).reshape(shape))
    q = z.q + NOISE * torch.randn(z.q.shape, generator=g, dtype=torch.float64)
    p = z.p + NOISE * torch.randn(z.p.shape, generator=g, dtype=torch.float64)
    return PhaseState(q, p)


def dataset(
    task_name: str, n: int, context: int, steps: int = ROLLOUT, seed: int = 0, style: RenderStyle | None = None
) -> TrajectoryData:
    """n trajectories of context - 1 + steps + 1 frames: the context, then `steps` to predict
    (drawn in `style`, default this project's look)."""
    try:
        task = TASKS[task_name]
    except KeyError:
        raise ValueError(f"unknown HGN task {task_name!r}; choose one of {', '.join(TASKS)}") from None
    return simulate(
        task.build(), n, context + steps, dt=DT, frame_size=FRAME_SIZE, seed=seed,
        initial=initial_states(task, n, seed), style=style,
    )  # fmt: skip
