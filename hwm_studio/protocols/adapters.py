"""Turn a trained WorldModel into the numpy predictors the published protocols score.

Continuous models (HWM, neural ODE, HNN) are scored like the peers were: their vector field is
integrated by scipy's RK45 at the protocol's tolerance. A discrete map (the MLP transition) has
no field: it is rolled out on its own time grid and linearly interpolated at the scoring times.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from hwm_studio.models.base import WorldModel
from hwm_studio.protocols.hnn import Predictor, integrator
from hwm_studio.state import PhaseState


def _float64(model: WorldModel) -> WorldModel:
    m = copy.deepcopy(model).double().cpu()
    m.eval()
    return m


def numpy_field(model: WorldModel):  # noqa: ANN201 (returns hnn.Field)
    """dz/dt of a single-entity, one-dimensional model at a (2,) state, in float64."""
    m = _float64(model)

    def field(y: np.ndarray) -> np.ndarray:
        z = PhaseState(torch.tensor([[[y[0]]]], dtype=torch.float64), torch.tensor([[[y[1]]]], dtype=torch.float64))
        with torch.no_grad():
            f = m.derivative(z, None)
        return np.array([float(f.q), float(f.p)])

    return field


def rollout_predictor(model: WorldModel) -> Predictor:
    """Roll the model out at its own dt and interpolate linearly at the requested times."""
    m = _float64(model)

    def predict(x0: np.ndarray, t_end: float, t_eval: np.ndarray) -> np.ndarray:
        steps = int(np.ceil(t_end / m.dt)) + 1
        obs0 = m.coder.observe(torch.tensor([[[x0[0]]]]), torch.tensor([[[x0[1]]]])).double()
        with torch.no_grad():
            pred, _ = m.predict(obs0, None, steps)
            q, p = m.coder.to_data(pred)
        grid = np.arange(steps + 1) * m.dt
        qs, ps = q[0, :, 0, 0].numpy(), p[0, :, 0, 0].numpy()
        return np.stack([np.interp(t_eval, grid, qs), np.interp(t_eval, grid, ps)], axis=-1)

    return predict


def predictor(model: WorldModel, rtol: float = 1e-12) -> tuple[Predictor, str]:
    """The protocol predictor for any model kind, and how it was obtained (for the table)."""
    if model.continuous:
        return integrator(numpy_field(model), rtol), f"RK45 rtol {rtol:g} on the learned field"
    return rollout_predictor(model), f"own rollout at dt {model.dt:.4g}, interpolated"
