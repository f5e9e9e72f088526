"""Pixel world models: frames -> entity phase space -> frames (roles 1 and 3 for pixels).

One composed model (`PixelWorldModel`): a localising encoder, a declared observation geometry, the
unchanged latent dynamics of a state model, and a sprite decoder. See model.py for the losses.
"""

from hwm_studio.models.pixel.geometry import GEOMETRIES, ObservationGeometry, build_geometry
from hwm_studio.models.pixel.model import LATENT_DYNAMICS, FramePrediction, PixelWorldModel

__all__ = [
    "GEOMETRIES",
    "LATENT_DYNAMICS",
    "FramePrediction",
    "ObservationGeometry",
    "PixelWorldModel",
    "build_geometry",
]
