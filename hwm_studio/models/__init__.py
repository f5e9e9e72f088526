"""World models: the Hamiltonian world model and its baselines, behind one interface."""

from __future__ import annotations

from hwm_studio.models.base import WorldModel
from hwm_studio.models.baselines import HNN, MLPTransition, NeuralODE
from hwm_studio.models.config import ModelConfig, config_from_data
from hwm_studio.models.hwm import HamiltonianWorldModel
from hwm_studio.models.pixel import LATENT_DYNAMICS, PixelWorldModel

# kind -> class; the pixel kinds are one composed class whose dynamics the kind names
MODELS: dict[str, type[WorldModel]] = {
    **{cls.kind: cls for cls in (HamiltonianWorldModel, MLPTransition, NeuralODE, HNN)},
    **dict.fromkeys(LATENT_DYNAMICS, PixelWorldModel),
}
STATE_MODELS = tuple(kind for kind, cls in MODELS.items() if not cls.sees_pixels)
PIXEL_MODELS = tuple(kind for kind, cls in MODELS.items() if cls.sees_pixels)


def build_model(config: ModelConfig) -> WorldModel:
    """The one place a model kind name becomes a model."""
    try:
        cls = MODELS[config.kind]
    except KeyError:
        raise ValueError(f"unknown model kind {config.kind!r}; choose one of {', '.join(MODELS)}") from None
    return cls(config)


__all__ = [
    "HNN",
    "MODELS",
    "PIXEL_MODELS",
    "STATE_MODELS",
    "HamiltonianWorldModel",
    "MLPTransition",
    "ModelConfig",
    "NeuralODE",
    "PixelWorldModel",
    "WorldModel",
    "build_model",
    "config_from_data",
]
