"""Planning a swing-up in a learned world model (the plain-script twin of 06_planning_swingup.ipynb).

A pretrained pendulum model imagines many futures at once; CEM or MPPI keeps the cheapest;
model-predictive control (MPC) applies the first action to the true pendulum, sees where it went,
and plans again. The cost (`SwingUpSettings`, hwm_studio/planning/swingup.py) pumps the model's own
learned energy up to the energy of resting upright (the HWM only), and asks for upright and still.
Each run also reports what the planner expected of its plans against what they earned on the truth.
Run from the repository root:

    python examples/06_planning_swingup.py                          # the small default budget
    python examples/06_planning_swingup.py --model mlp --no-energy  # the MLP has no energy to shape
    python examples/06_planning_swingup.py --velocity-weight 0.1 --no-energy   # stuck hanging
    python examples/06_planning_swingup.py --planner mppi --candidates 512 --iterations 6 --truth
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from hwm_studio.planning import SystemEnv, model_rollout, run_mpc, sequence_cost, true_rollout
from hwm_studio.planning.swingup import SwingUpSettings, differences, imagined_and_achieved, small_swing_slope
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
    ap.add_argument("--model", choices=("hwm", "mlp"), default="hwm", help="the pretrained pendulum model to plan in")
    ap.add_argument("--planner", choices=("cem", "mppi"), default="cem")
    ap.add_argument("--steps", type=int, default=200, help="MPC steps of 0.05 s (the model's dt)")
    ap.add_argument("--horizon", type=int, default=30, help="planning horizon, steps")
    ap.add_argument("--candidates", type=int, default=128, help="action sequences imagined per iteration")
    ap.add_argument("--iterations", type=int, default=3, help="planner refits per plan")
    ap.add_argument("--velocity-weight", type=float, default=0.01, help="w_v: SwingUp's weight on p^2")
    ap.add_argument("--no-energy", action="store_true", help="leave the energy term out (w_E = 0)")
    ap.add_argument("--truth", action="store_true", help="also plan with the exact dynamics (the ceiling)")
    args = ap.parse_args()
    torch.set_num_threads(1)  # batched rollouts of tiny tensors: threads only contend

    system = get_system("pendulum")  # q = 0 hanging down, q = pi upright; torque bound 2 < m g l
    model = load_model(run_dir("pendulum", args.model))
    if model.hamiltonian_field is None and not args.no_energy:
        ap.error(f"the {args.model} model has no energy to shape: add --no-energy")
    settings = SwingUpSettings(energy_weight=0.0 if args.no_energy else 0.003, velocity_weight=args.velocity_weight,
                               planner=args.planner, horizon=args.horizon, candidates=args.candidates,
                               iterations=args.iterations)  # fmt: skip
    changed = differences(SwingUpSettings(), settings)
    print(f"settings: {settings}\n  changed from the defaults: {changed or 'nothing'}; "
          f"small-swing slope {small_swing_slope(settings, system):+.3f} (> 0: stuck hanging)")  # fmt: skip
    start = PhaseState(torch.zeros(1, 1, 1, dtype=torch.float64), torch.zeros(1, 1, 1, dtype=torch.float64))
    truth = true_rollout(system, model.dt)

    def energy_model(z: PhaseState):
        with torch.no_grad():
            return model.hamiltonian_field.hamiltonian.energy(model.latent(z.q.float(), z.p.float()))

    # A learned H is defined up to a constant: the target is the model's own energy upright.
    target = upright_energy(energy_model, math.pi) if settings.energy_weight else None
    planners = {f"learned {args.model.upper()}": (model_rollout(model), target)}
    if args.truth:
        planners["exact dynamics"] = (truth, upright_energy(system.energy, math.pi))
    for name, (rollout, h_up) in planners.items():
        cost = settings.cost(h_up)
        first = settings.planner_for(system.action_bound).plan(rollout, start.to("cpu", rollout.dtype), cost)
        print(f"{name}: the first plan's imagined cost {sequence_cost(rollout, start, first.actions, cost):.3f} "
              f"(the cheapest candidate's {first.costs[first.elites[0]].item():.3f})")  # fmt: skip
        gaps: list[float] = []

        def keep(step, rollout=rollout, cost=cost, gaps=gaps) -> None:
            if not cost.needs_energy:  # imagined and achieved compare on state costs only
                imagined, achieved = imagined_and_achieved(rollout, truth, step.state, step.plan.actions, cost)
                gaps.append(imagined - achieved)

        env = SystemEnv(system, reward=cost, dt=model.dt, max_steps=args.steps, initial=start)
        t0 = time.perf_counter()
        episode = run_mpc(env, settings.planner_for(system.action_bound), rollout, cost, steps=args.steps, seed=0,
                          callback=keep)  # fmt: skip
        seconds = time.perf_counter() - t0
        from_up = torch.rad2deg(torch.arccos(torch.cos(episode.q[:, 0, 0] - math.pi)))  # degrees from upright
        near = (from_up < 20).nonzero()
        reached = f"first within 20 degrees of upright at t = {near[0].item() * model.dt:.2f} s" if len(near) else (
            "never within 20 degrees of upright (raise --steps)")  # fmt: skip
        bias = f"; imagined minus achieved return per plan: median {np.median(gaps):+.3f}" if gaps else ""
        print(f"{name}: {episode.steps} MPC steps in {seconds:.1f} s ({episode.ms_per_step:.0f} ms per plan); "
              f"{reached}; at the end {from_up[-1].item():.1f} degrees from upright; "
              f"return {episode.total_return:.2f}{bias}")  # fmt: skip


if __name__ == "__main__":
    main()
