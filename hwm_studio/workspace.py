"""The studio's workspace: the one directory the UI may read and write.

Names from the UI are single path components (no separators, no '..'); every resolved path is
checked to lie inside the workspace after following symlinks, so nothing typed or picked in the
browser can reach another file. Trajectory files live at the top level, run directories under
runs/. A file uploaded from the browser is size-capped, validated as a trajectory file from a
temporary name inside the workspace, and only then renamed into place: a bad upload leaves
nothing behind and never replaces a file.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from hwm_studio.data.format import DataFormatError, TrajectoryData, load_trajectories
from hwm_studio.training.checkpoint import WEIGHTS

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
MAX_UPLOAD_BYTES = int(os.environ.get("HWM_STUDIO_MAX_UPLOAD_BYTES", 100 << 20))  # one uploaded file


class WorkspaceError(ValueError):
    """A name or path the workspace refuses; the message says why."""


class Workspace:
    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        root = root or os.environ.get("HWM_STUDIO_WORKSPACE") or Path.cwd() / "workspace"
        self.root = Path(root).resolve()
        (self.root / "runs").mkdir(parents=True, exist_ok=True)

    def _inside(self, path: Path) -> Path:
        shown = os.path.relpath(path, self.root)  # as the user knows it, not where it leads
        try:
            resolved = path.resolve()
        except (OSError, RuntimeError):  # a symlink loop
            raise WorkspaceError(f"{shown}: cannot be resolved (a symlink loop?)") from None
        if resolved != self.root and self.root not in resolved.parents:
            raise WorkspaceError(f"{shown}: resolves outside the workspace")
        return resolved

    def path(self, name: str, sub: str = "") -> Path:
        """The workspace path for a user-given name (one component, checked)."""
        if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
            raise WorkspaceError(
                f"{name!r} is not a valid name: use letters, digits, '.', '_' or '-' (no folders, at most 100)"
            )
        return self._inside(self.root / sub / name)

    def data_files(self) -> list[str]:
        """The trajectory files offered: regular files inside (a symlink pointing out is not offered)."""
        return sorted(p.name for p in self.root.glob("*.npz") if p.is_file() and _NAME.match(p.name)
                      and self._contains(p))  # fmt: skip

    def _contains(self, path: Path) -> bool:
        try:
            self._inside(path)
        except WorkspaceError:
            return False
        return True

    def runs(self) -> list[str]:
        """Run directories: those holding something named weights.safetensors (whether it is a
        checkpoint the studio can read is the loader's to say, and the studio says it)."""
        runs = self.root / "runs"
        return sorted(p.name for p in runs.iterdir()
                      if _NAME.match(p.name) and p.is_dir() and os.path.lexists(p / WEIGHTS)
                      and self._contains(p))  # fmt: skip

    def run_path(self, name: str) -> Path:
        """A run directory; its weights too must resolve inside (a link pointing out is refused)."""
        path = self.path(name, "runs")
        if os.path.lexists(path / WEIGHTS):
            self._inside(path / WEIGHTS)
        return path

    def add_data(self, name: str, content: bytes) -> str:
        """Save an uploaded trajectory file as `name`, once it has read back as valid; its name."""
        if not name.endswith(".npz"):
            raise WorkspaceError(f"{name!r}: trajectory files end in .npz")
        target = self.path(name)
        if len(content) > MAX_UPLOAD_BYTES:
            raise WorkspaceError(f"{name!r} is {len(content) / 2**20:.1f} MB; uploads are limited to "
                                 f"{MAX_UPLOAD_BYTES / 2**20:.0f} MB (HWM_STUDIO_MAX_UPLOAD_BYTES)")  # fmt: skip
        if target.exists():
            raise WorkspaceError(f"{name!r} already exists in the workspace: rename the file to upload it")
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".upload-", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(content)
            try:
                load_trajectories(tmp)
            except DataFormatError as exc:
                raise DataFormatError(str(exc).replace(tmp, name)) from None
            os.link(tmp, target)  # fails rather than replace a file that appeared meanwhile
        except FileExistsError:
            raise WorkspaceError(f"{name!r} already exists in the workspace: rename the file to upload it") from None
        finally:
            os.unlink(tmp)
        return name

    def load_data(self, name: str) -> TrajectoryData:
        """A trajectory file from the workspace (DataFormatError / WorkspaceError on bad input)."""
        if not name.endswith(".npz"):
            raise WorkspaceError(f"{name!r}: trajectory files end in .npz")
        return load_trajectories(self.path(name))
