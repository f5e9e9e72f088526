"""Planning a swing-up with CEM in a learned world model (the plain-script twin of 06_planning_swingup.ipynb).

The pretrained pendulum HWM imagines many futures at once; the cross-entropy method (CEM) keeps
the cheapest; model-predictive control (MPC) applies the first action to the true pendulum, sees
where it went, and plans again. The cost pumps the model's own learned energy up to the energy of
resting upright, then holds it there. Run from the repository root:

    python examples/06_planning_swingup.py                     # the small default budget
    python examples/06_planning_swingup.py --candidates 1000 --iterations 10 --truth
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from hwm_studio.planning import (
    CEM,
    ActionEffort,
    EnergyShaping,
    SwingUp,
    SystemEnv,
    model_rollout,
    run_mpc,
    true_rollout,
)
from hwm_studio.pretrained import run_dir
from hwm_studio.state import PhaseState
from hwm_studio.systems import get_system
from hwm_studio.training.checkpoint import load_model


def upright_energy(energy_of, q_up: float) -> float:
    """An energy function's value at rest upright: the swing-up's target energy."""
    q = torch.full((1, 1, 1), q_up, dtype=torch.float64)
    return float(energy_of(PhaseState(q, torch.zeros_like(q)))[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200, help="MPC steps of 0.05 s (the model's dt)")
    ap.add_argument("--horizon", type=int, default=30, help="planning horizon, steps")
    ap.add_argument("--candidates", type=int, default=128, help="action sequences imagined per CEM iteration")
    ap.add_argument("--iterations", type=int, default=3, help="CEM refits per plan")
    ap.add_argument("--truth", action="store_true", help="also plan with the exact dynamics (the ceiling)")
    args = ap.parse_args()
    torch.set_num_threads(1)  # batched rollouts of tiny tensors: threads only contend

    system = get_system("pendulum")  # q = 0 hanging down, q = pi upright; torque bound 2 < m g l
    model = load_model(run_dir("pendulum", "hwm"))
    learned_h = model.hamiltonian_field.hamiltonian
    start = PhaseState(torch.zeros(1, 1, 1, dtype=torch.float64), torch.zeros(1, 1, 1, dtype=torch.float64))

    def energy_model(z: PhaseState):
        with torch.no_grad():
            return learned_h.energy(model.latent(z.q.float(), z.p.float()))

    # A learned H is defined up to a constant: the target is the model's own energy upright.
    planners = {"learned HWM": (model_rollout(model), upright_energy(energy_model, math.pi))}
    if args.truth:
        planners["exact dynamics"] = (true_rollout(system, model.dt), upright_energy(system.energy, math.pi))
    for name, (rollout, target) in planners.items():
        cost = EnergyShaping(target, weight=0.003) + SwingUp(q_up=math.pi, velocity_weight=0.01) + ActionEffort(1e-3)
        planner = CEM(low=[-system.action_bound], high=[system.action_bound], horizon=args.horizon,
                      candidates=args.candidates, elites=max(1, args.candidates // 10), iterations=args.iterations,
                      seed=0)  # fmt: skip
        env = SystemEnv(system, reward=cost, dt=model.dt, max_steps=args.steps, initial=start)
        t0 = time.perf_counter()
        episode = run_mpc(env, planner, rollout, cost, steps=args.steps, seed=0)
        seconds = time.perf_counter() - t0
        from_up = torch.rad2deg(torch.arccos(torch.cos(episode.q[:, 0, 0] - math.pi)))  # degrees from upright
        near = (from_up < 20).nonzero()
        reached = f"first within 20 degrees of upright at t = {near[0].item() * model.dt:.2f} s" if len(near) else (
            "never within 20 degrees of upright (raise --steps)")  # fmt: skip
        print(f"{name}: {episode.steps} MPC steps in {seconds:.1f} s ({episode.ms_per_step:.0f} ms per plan); "
              f"{reached}; at the end {from_up[-1].item():.1f} degrees from upright; "
              f"return {episode.total_return:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
