"""Observation geometry: where in the image each entity's q puts it, and back.

A pixel world model's latent is physical only if the map between q and the picture is fixed by
the system's kind, with a few learned constants, instead of being a free network:

    linear    q_i is a displacement along one learned axis:        x_i = o_i + s q_i a
    angular   q_i is an angle about a pivot, or about the body it hangs from (the double
              pendulum's second link):                              x_i = anchor_i + r_i (sin q_i, -cos q_i)
    planar    q_i is a point of a plane seen through an affine map: x_i = A q_i + b

Positions are normalised image coordinates in [-1, 1], x to the right, y up (`hwm_studio.frames`).
Each entity may hang from an *anchor*: a learned fixed point (-1: the pendulum's pivot, the
spring's wall) or another entity (its index: a chain's neighbour, the double pendulum's first
link). Anchors are where the decoder draws links from, and angular q are measured about them.

`calibrate` sets the constants once from positions the encoder has learned to read (a circle fit
for pivots, the principal axis for linear motion, mean and spread for planes), so that the
dynamics start on a latent of sensible scale; gradient descent refines the ones that shape the
picture (pivots, radii, offsets). Constants that only rescale the latent (s, A, b) stay fixed
after calibration: the dynamics can absorb a scale, and a drifting scale would only make their
job harder.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

Anchor = int | None  # None: free; -1: a learned fixed point; j >= 0: hangs from entity j


def _inv_softplus(y: float) -> float:
    return y + math.log(-math.expm1(-y))


class ObservationGeometry(nn.Module, ABC):
    """The declared map q (..., E, D) <-> image positions (..., E, 2), with learned constants."""

    name: ClassVar[str]
    dim: ClassVar[int]  # coordinates per entity this geometry reads
    angular: ClassVar[bool] = False

    def __init__(self, n_entities: int, anchors: Sequence[Anchor] | None = None) -> None:
        super().__init__()
        anchors = [None] * n_entities if anchors is None else list(anchors)
        if len(anchors) != n_entities:
            raise ValueError(f"{self.name} geometry: {len(anchors)} anchors for {n_entities} entities")
        for i, a in enumerate(anchors):
            if a is not None and not -1 <= a < i:
                raise ValueError(
                    f"{self.name} geometry: entity {i}'s anchor must be None, -1 (a fixed point) or an "
                    f"earlier entity, got {a}"
                )
        self.n_entities = n_entities
        self.anchors = anchors
        # the fixed anchor points (pivot, wall); entities that hang from another entity ignore theirs
        self.fixed = nn.Parameter(torch.zeros(n_entities, 2))
        self.register_buffer("calibrated", torch.zeros((), dtype=torch.bool))

    @property
    def linked(self) -> list[bool]:
        """Which entities have a link to draw (an anchor)."""
        return [a is not None for a in self.anchors]

    def anchor_points(self, xy: Tensor) -> Tensor:
        """Each entity's anchor position (..., E, 2) given every entity's position (free entities: themselves)."""
        cols = []
        for i, a in enumerate(self.anchors):
            if a is None:
                cols.append(xy[..., i, :])
            elif a == -1:
                cols.append(self.fixed[i].to(xy.dtype).expand_as(xy[..., i, :]))
            else:
                cols.append(xy[..., a, :])
        return torch.stack(cols, dim=-2)

    @abstractmethod
    def to_image(self, q: Tensor) -> Tensor:
        """q (..., E, D) -> positions (..., E, 2)."""

    @abstractmethod
    def from_image(self, xy: Tensor) -> Tensor:
        """Positions (..., E, 2) -> q (..., E, D); a right inverse of to_image on its image."""

    @abstractmethod
    def _calibrate(self, xy: Tensor) -> None:
        """Set the constants from read positions (N, E, 2) (no gradient)."""

    @torch.no_grad()
    def calibrate(self, xy: Tensor) -> None:
        """Fit the constants to positions the encoder read, (N, E, 2); once per model."""
        xy = xy.detach().reshape(-1, self.n_entities, 2).to(torch.float64)
        if xy.shape[0] >= 3 and torch.isfinite(xy).all():
            self._calibrate(xy)
        self.calibrated.fill_(True)

    def residual(self, xy: Tensor) -> Tensor:
        """How far read positions (..., E, 2) are from anything this geometry can draw (mean square)."""
        return ((self.to_image(self.from_image(xy)) - xy) ** 2).mean()

    @property
    def chained(self) -> bool:
        """Whether some entity hangs from another (then which reading is which entity matters)."""
        return any(a is not None and a >= 0 for a in self.anchors)

    def describe(self) -> dict[str, object]:
        return {"geometry": self.name, "anchors": list(self.anchors)}


class LinearGeometry(ObservationGeometry):
    """q_i: displacement along a learned axis; x_i = o_i + s q_i (cos th, sin th). One axis for all."""

    name = "linear"
    dim = 1

    def __init__(self, n_entities: int, anchors: Sequence[Anchor] | None = None) -> None:
        super().__init__(n_entities, anchors)
        self.origin = nn.Parameter(torch.zeros(n_entities, 2))
        self.angle = nn.Parameter(torch.zeros(()))
        self.register_buffer("scale", torch.tensor(0.5))

    def axis(self) -> Tensor:
        return torch.stack([torch.cos(self.angle), torch.sin(self.angle)])

    def to_image(self, q: Tensor) -> Tensor:
        a = self.axis().to(q.dtype)
        return self.origin.to(q.dtype) + self.scale.to(q.dtype) * q * a  # (..., E, 1) * (2,) -> (..., E, 2)

    def from_image(self, xy: Tensor) -> Tensor:
        a = self.axis().to(xy.dtype)
        return ((xy - self.origin.to(xy.dtype)) * a).sum(-1, keepdim=True) / self.scale.to(xy.dtype)

    def _calibrate(self, xy: Tensor) -> None:
        mean = xy.mean(0)  # (E, 2)
        centred = (xy - mean).reshape(-1, 2)
        cov = centred.T @ centred / centred.shape[0]
        evals, evecs = torch.linalg.eigh(cov)
        axis = evecs[:, -1]
        if axis[0] < 0:  # keep "to the right" positive when the motion is horizontal-ish
            axis = -axis
        spread = float(evals[-1].clamp_min(0).sqrt())
        if spread > 1e-3:
            self.origin.copy_(mean.to(self.origin.dtype))
            self.angle.fill_(float(torch.atan2(axis[1], axis[0])))
            self.scale.fill_(spread)
        # a fixed anchor (the wall) starts behind the leftmost entity, along the axis
        for i, a in enumerate(self.anchors):
            if a == -1:
                lo = float(((xy[:, i] - mean[i]) @ axis).min())
                self.fixed[i].copy_((mean[i] + (lo - 0.3) * axis).to(self.fixed.dtype))


class AngularGeometry(ObservationGeometry):
    """q_i: the angle of entity i about its anchor, 0 hanging straight down, counter-clockwise
    positive; x_i = anchor_i + r_i (sin q_i, -cos q_i). Every entity needs an anchor."""

    name = "angular"
    dim = 1
    angular = True

    def __init__(self, n_entities: int, anchors: Sequence[Anchor] | None = None) -> None:
        anchors = [-1, *range(n_entities - 1)] if anchors is None else list(anchors)
        super().__init__(n_entities, anchors)
        if any(a is None for a in self.anchors):
            raise ValueError(
                "angular geometry: every entity needs an anchor (-1 for a pivot, or the entity it hangs from)"
            )
        self.raw_radius = nn.Parameter(torch.full((n_entities,), _inv_softplus(0.5 / n_entities)))

    def radius(self) -> Tensor:
        return F.softplus(self.raw_radius) + 1e-3

    def to_image(self, q: Tensor) -> Tensor:
        r = self.radius().to(q.dtype)
        out: list[Tensor] = []
        for i, a in enumerate(self.anchors):
            base = self.fixed[i].to(q.dtype).expand(*q.shape[:-2], 2) if a == -1 else out[a]  # type: ignore[index]
            ang = q[..., i, 0]
            out.append(base + r[i] * torch.stack([torch.sin(ang), -torch.cos(ang)], dim=-1))
        return torch.stack(out, dim=-2)

    def from_image(self, xy: Tensor) -> Tensor:
        d = xy - self.anchor_points(xy)
        return torch.atan2(d[..., 0], -d[..., 1])[..., None]

    def _calibrate(self, xy: Tensor) -> None:
        radius = self.radius().detach().clone()
        for i, a in enumerate(self.anchors):
            if a == -1:
                centre, r = _fit_circle(xy[:, i])
                if centre is not None:
                    self.fixed[i].copy_(centre.to(self.fixed.dtype))
                    radius[i] = r
            else:
                radius[i] = (xy[:, i] - xy[:, a]).norm(dim=-1).mean()  # type: ignore[index]
        radius = radius.clamp(1e-2, 2.0)
        self.raw_radius.copy_(torch.log(torch.expm1(radius - 1e-3)).to(self.raw_radius.dtype))


def _fit_circle(pts: Tensor) -> tuple[Tensor | None, float]:
    """Algebraic (Kasa) circle fit to points (N, 2): centre and radius, or (None, 0) if ill-posed."""
    x, y = pts[:, 0], pts[:, 1]
    a = torch.stack([x, y, torch.ones_like(x)], dim=1)
    b = -(x * x + y * y)
    sol = torch.linalg.lstsq(a, b[:, None]).solution[:, 0]
    centre = -0.5 * sol[:2]
    r2 = float((centre * centre).sum() - sol[2])
    if not (math.isfinite(r2) and r2 > 1e-4) or float(centre.abs().max()) > 1.5:
        return None, 0.0
    return centre, math.sqrt(r2)


class PlanarGeometry(ObservationGeometry):
    """q_i: a point in a plane; x_i = A q_i + b (A, b set by calibration: the latent's frame)."""

    name = "planar"
    dim = 2

    def __init__(self, n_entities: int, anchors: Sequence[Anchor] | None = None) -> None:
        super().__init__(n_entities, anchors)
        self.register_buffer("matrix", 0.5 * torch.eye(2))
        self.register_buffer("offset", torch.zeros(2))

    def to_image(self, q: Tensor) -> Tensor:
        return q @ self.matrix.to(q.dtype).T + self.offset.to(q.dtype)

    def from_image(self, xy: Tensor) -> Tensor:
        return (xy - self.offset.to(xy.dtype)) @ torch.linalg.inv(self.matrix).to(xy.dtype).T

    def _calibrate(self, xy: Tensor) -> None:
        flat = xy.reshape(-1, 2)
        spread = float((flat - flat.mean(0)).pow(2).sum(-1).mean().sqrt())
        if spread > 1e-3:
            self.offset.copy_(flat.mean(0).to(self.offset.dtype))
            self.matrix.copy_(spread / math.sqrt(2) * torch.eye(2, dtype=self.matrix.dtype))


GEOMETRIES: dict[str, type[ObservationGeometry]] = {
    cls.name: cls for cls in (LinearGeometry, AngularGeometry, PlanarGeometry)
}


def build_geometry(
    name: str, n_entities: int, dim: int, anchors: Sequence[Anchor] | None = None
) -> ObservationGeometry:
    """The one place a geometry name becomes a geometry (checked against the latent's dim)."""
    try:
        cls = GEOMETRIES[name]
    except KeyError:
        raise ValueError(f"unknown observation geometry {name!r}; choose one of {', '.join(GEOMETRIES)}") from None
    if cls.dim != dim:
        raise ValueError(f"{name} geometry reads {cls.dim} coordinate(s) per entity; the data has {dim}")
    return cls(n_entities, anchors)
