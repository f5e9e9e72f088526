"""The studio's workspace: the one directory the UI may read and write.

Names from the UI are single path components (no separators, no '..'); every resolved path is
checked to lie inside the workspace after following symlinks, so nothing typed or picked in the
browser can reach another file. Trajectory files live at the top level, run directories under
runs/.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from hwm_studio.data.format import TrajectoryData, load_trajectories
from hwm_studio.training.checkpoint import WEIGHTS

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class WorkspaceError(ValueError):
    """A name or path the workspace refuses; the message says why."""


class Workspace:
    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        root = root or os.environ.get("HWM_STUDIO_WORKSPACE") or Path.cwd() / "workspace"
        self.root = Path(root).resolve()
        (self.root / "runs").mkdir(parents=True, exist_ok=True)

    def _inside(self, path: Path) -> Path:
        resolved = path.resolve()
        if resolved != self.root and self.root not in resolved.parents:
            raise WorkspaceError(f"{path.name!r} resolves outside the workspace")
        return resolved

    def path(self, name: str, sub: str = "") -> Path:
        """The workspace path for a user-given name (one component, checked)."""
        if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
            raise WorkspaceError(
                f"{name!r} is not a valid name: use letters, digits, '.', '_' or '-' (no folders, at most 100)"
            )
        return self._inside(self.root / sub / name)

    def data_files(self) -> list[str]:
        return sorted(p.name for p in self.root.glob("*.npz") if p.is_file() and _NAME.match(p.name))

    def runs(self) -> list[str]:
        """Run directories: those holding something named weights.safetensors (whether it is a
        checkpoint the studio can read is the loader's to say, and the studio says it)."""
        runs = self.root / "runs"
        return sorted(p.name for p in runs.iterdir()
                      if _NAME.match(p.name) and p.is_dir() and os.path.lexists(p / WEIGHTS))  # fmt: skip

    def run_path(self, name: str) -> Path:
        return self.path(name, "runs")

    def load_data(self, name: str) -> TrajectoryData:
        """A trajectory file from the workspace (DataFormatError / WorkspaceError on bad input)."""
        if not name.endswith(".npz"):
            raise WorkspaceError(f"{name!r}: trajectory files end in .npz")
        return load_trajectories(self.path(name))
