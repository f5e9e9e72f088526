"""3D entity view: PyVista actors in a VTK pane, truth opaque and model translucent orange.

The scene is built once per system; updates move actors (SetPosition) and rewrite only the
small rod and trail polylines, then synchronise the pane. Rendering is offscreen through EGL
(see PANEL.md); the environment is set before pyvista is imported.
"""

from __future__ import annotations

import os

os.environ.setdefault("PYVISTA_OFF_SCREEN", "true")
os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

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
        self._model_props: list = []  # every actor drawing the model (spheres, trails, rods)
        self._meshes = {"truth_trail": [], "model_trail": [], "truth_rod": [], "model_rod": []}
        for who, colour, opacity in (("truth", "#333333", 1.0), ("model", "#D55E00", 0.55)):
            for i in range(e):
                sphere = pv.Sphere(radius=radii[i], theta_resolution=20, phi_resolution=20)
                self._actors[who].append(p.add_mesh(sphere, color=colour, opacity=opacity, smooth_shading=True))
                trail = pv.lines_from_points(np.zeros((TRAIL, 3)))
                self._meshes[f"{who}_trail"].append(trail)
                props = [self._actors[who][-1], p.add_mesh(trail, color=colour, opacity=0.5 * opacity, line_width=2)]
                if who == "model":
                    self._model_props += props
            for _ in system.links():
                rod = pv.Line((0, 0, 0), (0, 0, 0))
                self._meshes[f"{who}_rod"].append(rod)
                actor = p.add_mesh(rod, color=colour, opacity=opacity, line_width=5)
                if who == "model":
                    self._model_props.append(actor)
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
            both = torch.as_tensor(np.stack([r.truth_q, np.nan_to_num(r.model_q)]))  # (2, T+1, E, D)
            self._positions = {"truth": system.positions(both[0]).numpy(), "model": system.positions(both[1]).numpy()}
            self._segments = {
                "truth": system.link_segments(torch.as_tensor(self._positions["truth"])).numpy(),
                "model": system.link_segments(torch.as_tensor(self._positions["model"])).numpy(),
            }
        for actor in self._model_props:  # a pixel model's latent is not a position: not drawn here
            actor.SetVisibility(not r.latent)
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

    def __panel__(self) -> pn.viewable.Viewable:
        return self.pane
