"""3D entity view: PyVista actors in a VTK pane, truth opaque and model translucent orange.

The scene is built once per system; updates move actors (SetPosition) and rewrite only the
small rod and trail polylines, then synchronise the pane. Rendering is offscreen through EGL
(see PANEL.md); the environment is set before pyvista is imported.
"""

from __future__ import annotations

import os

os.environ.setdefault("PYVISTA_OFF_SCREEN", "true")
os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

import imageio.v3 as iio
import numpy as np
import panel as pn
import pyvista as pv
import torch

from hwm_studio.scene import SceneResult
from hwm_studio.systems import System

TRAIL = 40  # recent positions drawn behind each entity


class EntityView3D(pn.viewable.Viewer):
    def __init__(self, **params: object) -> None:
        super().__init__(**params)
        self.plotter = pv.Plotter(off_screen=True, window_size=(420, 380))
        self.plotter.set_background("white")
        self.pane = pn.pane.VTK(self.plotter.ren_win, height=380, sizing_mode="stretch_width")
        self._system_key: str | None = None
        self._actors: dict[str, list] = {}
        self._meshes: dict[str, list[pv.PolyData]] = {}
        self._positions: dict[str, np.ndarray] = {}
        self._links: list[tuple[int, int]] = []

    def _build(self, system: System) -> None:
        p = self.plotter
        p.clear_actors()
        e = system.n_entities
        radii = system.entity_radii()
        self._actors = {"truth": [], "model": []}
        self._meshes = {"truth_trail": [], "model_trail": [], "truth_rod": [], "model_rod": []}
        for who, colour, opacity in (("truth", "#333333", 1.0), ("model", "#D55E00", 0.55)):
            for i in range(e):
                sphere = pv.Sphere(radius=radii[i], theta_resolution=20, phi_resolution=20)
                self._actors[who].append(p.add_mesh(sphere, color=colour, opacity=opacity, smooth_shading=True))
                trail = pv.lines_from_points(np.zeros((TRAIL, 3)))
                self._meshes[f"{who}_trail"].append(trail)
                p.add_mesh(trail, color=colour, opacity=0.5 * opacity, line_width=2)
            for _ in system.links():
                rod = pv.Line((0, 0, 0), (0, 0, 0))
                self._meshes[f"{who}_rod"].append(rod)
                p.add_mesh(rod, color=colour, opacity=opacity, line_width=5)
        ext = system.view_extent()
        p.add_mesh(pv.Plane(center=(0, 0, -0.05), direction=(0, 0, 1), i_size=2 * ext, j_size=2 * ext),
                   color="#eef1f4", opacity=0.6)  # fmt: skip
        p.view_xy()
        p.reset_camera()
        self._links = system.links()

    def update(self, system: System, r: SceneResult, frame: int) -> None:
        key = f"{system.name}:{system.n_entities}"
        if key != self._system_key:
            self._build(system)
            self._system_key = key
        with torch.no_grad():
            truth = system.positions(torch.as_tensor(r.truth_q)).numpy()
            model = truth if r.model_positions is None else _held(r.model_positions)
            self._positions = {"truth": truth, "model": model}
            self._segments = {
                who: system.link_segments(torch.as_tensor(pos)).numpy() for who, pos in self._positions.items()
            }
        self.set_frame(frame)

    def set_frame(self, frame: int) -> None:
        if not self._positions:
            return
        for who in ("truth", "model"):
            pos = self._positions[who]
            i = int(np.clip(frame, 0, len(pos) - 1))
            for k, actor in enumerate(self._actors[who]):
                actor.SetPosition(*pos[i, k])
                lo = max(0, i - TRAIL + 1)
                pts = pos[lo : i + 1, k]
                pts = np.concatenate([np.repeat(pts[:1], TRAIL - len(pts), axis=0), pts])
                self._meshes[f"{who}_trail"][k].points = pts
            for s, rod in enumerate(self._meshes[f"{who}_rod"]):
                rod.points = self._segments[who][i, s]
        self.pane.synchronize()

    def close(self) -> None:
        _release(self.plotter)

    def __panel__(self) -> pn.viewable.Viewable:
        return self.pane


def _polylines(paths: np.ndarray) -> pv.PolyData:
    """Paths (N, T, 3) as one mesh of N polylines (one mesh: one actor to sync, not N)."""
    n, t, _ = paths.shape
    mesh = pv.PolyData(paths.reshape(-1, 3).astype(np.float32))
    if n and t > 1:
        ids = np.arange(n * t).reshape(n, t)
        mesh.lines = np.hstack([np.full((n, 1), t), ids]).ravel()
    return mesh


class PlanView3D(pn.viewable.Viewer):
    """Planning in 3D: the bodies where the truth is now, and where each candidate plan would take
    them (the model's prediction): considered ones faint, elites bold, the chosen one boldest.

    Rendered on the server (the same offscreen VTK scene) and sent as a PNG: a VTK pane that is
    added after the page loaded, or that sits in a tab hidden at load, never draws in the browser
    (panel 1.9: "Cannot read properties of undefined (reading 'getBoundingClientRect')").
    """

    LAYERS = (("candidates", "#8c96a0", 0.25, 1), ("elites", "#D55E00", 0.6, 2), ("chosen", "#009E73", 1.0, 5),
              ("executed", "#222222", 1.0, 3))  # fmt: skip

    def __init__(self, **params: object) -> None:
        super().__init__(**params)
        self.plotter = pv.Plotter(off_screen=True, window_size=(460, 380))
        self.plotter.set_background("white")
        self.pane = pn.pane.PNG(None, width=460, height=380)
        self._key: str | None = None
        self._bodies: list = []
        self._layers: dict[str, object] = {}

    def _build(self, system: System) -> None:
        p = self.plotter
        p.clear_actors()
        self._bodies = [
            p.add_mesh(
                pv.Sphere(radius=r, theta_resolution=20, phi_resolution=20), color="#333333", smooth_shading=True
            )
            for r in system.entity_radii()
        ]
        self._layers = {}
        for name, colour, opacity, width in self.LAYERS:
            self._layers[name] = p.add_mesh(_polylines(np.zeros((1, 2, 3))), color=colour, opacity=opacity,
                                            line_width=width)  # fmt: skip
        ext = system.view_extent()
        p.add_mesh(pv.Plane(center=(0, 0, -0.05), direction=(0, 0, 1), i_size=2 * ext, j_size=2 * ext),
                   color="#eef1f4", opacity=0.6)  # fmt: skip
        p.view_xy()
        p.reset_camera()

    def update(self, system: System, now_q: np.ndarray, paths: dict[str, np.ndarray]) -> None:
        """now_q (E, D): the true state; paths: layer name -> q (N, T, E, D) (missing: hidden)."""
        key = f"{system.name}:{system.n_entities}"
        if key != self._key:
            self._build(system)
            self._key = key
        with torch.no_grad():
            now = system.positions(torch.as_tensor(now_q, dtype=torch.float64)).numpy()  # (E, 3)
            for actor, pos in zip(self._bodies, now, strict=True):
                actor.SetPosition(*pos)
            for name, actor in self._layers.items():
                q = paths.get(name)
                actor.SetVisibility(q is not None and len(q) > 0)
                if q is None or len(q) == 0:
                    continue
                pos = system.positions(torch.as_tensor(q, dtype=torch.float64)).numpy()  # (N, T, E, 3)
                n, t, e, _ = pos.shape
                actor.mapper.SetInputData(_polylines(pos.transpose(0, 2, 1, 3).reshape(n * e, t, 3)))
        self.pane.object = iio.imwrite("<bytes>", self.plotter.screenshot(return_img=True), extension=".png")

    def close(self) -> None:
        _release(self.plotter)

    def __panel__(self) -> pn.viewable.Viewable:
        return self.pane


def _release(plotter: pv.Plotter) -> None:
    """Free the offscreen render window and every actor and mesh: VTK's C++ objects outlive the
    Python view otherwise (~3 MB a closed session)."""
    plotter.close()
    plotter.deep_clean()


def _held(pos: np.ndarray) -> np.ndarray:
    """Positions (T, E, 3) with rows not yet predicted (a pixel model's context: NaN) held at the first
    predicted row, so the bodies wait where the model will start them."""
    seen = np.isfinite(pos).all(axis=(1, 2))
    if not seen.any():
        return np.zeros_like(pos)
    out = pos.copy()
    first = int(np.argmax(seen))
    out[:first] = pos[first]
    return np.nan_to_num(out)
