"""Quickstart: a pretrained Hamiltonian world model beside the truth (the plain-script twin of 01_quickstart.ipynb).

Loads the pretrained pendulum HWM and its MLP baseline, rolls both out from the same initial state
beside the exact pendulum, and prints how long each stays valid and how far each drifts off the
true energy. Run from the repository root:

    python examples/01_quickstart.py                    # 300 steps of 0.05 s
    python examples/01_quickstart.py --steps 1000 --html quickstart.html   # also save the two plots
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from hwm_studio.pretrained import run_dir
from hwm_studio.scene import Scene, SceneSpec
from hwm_studio.training.checkpoint import load_model

COLOURS = {"HWM": "#D55E00", "MLP": "#0072B2"}


def save_plots(results: dict, path: str) -> None:
    """Phase portrait and true energy of each rollout, as one self-contained HTML file (no CDN)."""
    from bokeh.io import save
    from bokeh.layouts import row
    from bokeh.plotting import figure
    from bokeh.resources import INLINE

    r0 = next(iter(results.values()))
    phase = figure(title="Phase portrait", x_axis_label="q (rad)", y_axis_label="p", width=460, height=400)
    energy = figure(title="True H along each rollout", x_axis_label="t (s)", y_axis_label="H", width=460, height=400)
    phase.line(r0.truth_q[:, 0, 0], r0.truth_p[:, 0, 0], color="#222222", line_width=4, legend_label="truth")
    energy.line(r0.t, r0.truth_energy, color="#222222", line_width=4, legend_label="truth")
    for name, r in results.items():
        phase.line(r.model_q[:, 0, 0], r.model_p[:, 0, 0], color=COLOURS[name], line_width=2, line_dash="dashed",
                   legend_label=name)  # fmt: skip
        energy.line(r.t, r.model_true_energy, color=COLOURS[name], line_width=2, legend_label=name)
    save(row(phase, energy), filename=path, resources=INLINE, title="hwm_studio quickstart")
    print(f"plots saved to {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300, help="rollout length, steps of the model's dt")
    ap.add_argument("--seed", type=int, default=0, help="which initial state of the pendulum's sampler")
    ap.add_argument("--html", help="also save the phase portrait and the energy plot to this HTML file")
    args = ap.parse_args()
    torch.set_num_threads(1)

    models = {"HWM": load_model(run_dir("pendulum", "hwm")), "MLP": load_model(run_dir("pendulum", "mlp"))}
    spec = SceneSpec("pendulum", steps=args.steps, seed=args.seed)
    results = {name: Scene(model).run(spec) for name, model in models.items()}
    for name, r in results.items():
        drift = np.abs(r.model_true_energy - r.truth_energy).max()
        print(f"{name}: valid for {r.vpt} of {r.steps} steps ({r.vpt * r.dt:.1f} s); largest true-energy error "
              f"{drift:.3g} (true H = {r.truth_energy[0]:.3g})")  # fmt: skip
    ledger = results["HWM"].model_ledger
    print(f"HWM ledger: dissipated {ledger['dissipated'][-1]:.3g}, residual work {ledger['residual_work'][-1]:.3g}, "
          f"largest |balance error| {np.abs(ledger['balance_error']).max():.2e}")  # fmt: skip
    if args.html:
        save_plots(results, args.html)


if __name__ == "__main__":
    main()
