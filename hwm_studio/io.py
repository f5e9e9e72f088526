"""Atomic file writes: a temp file in the target's directory, fsync, then rename over the target.

A crash or error mid-write leaves the previous file untouched, and an error no temp file behind;
the temp files a killed process leaves (hidden, `.NAME.*.tmp`) are removed by a later write of the
same file once they are `STALE_TEMP_S` old (younger ones may be a live write's).
"""

from __future__ import annotations

import glob
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

STALE_TEMP_S = 600.0  # a temp file this old is no live write's: the largest checkpoint writes in seconds


def _read_umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


# Read once at import: os.umask can only be read by setting it, which races with other threads.
_UMASK = _read_umask()


def remove_stale(folder: Path, pattern: str, older_than_s: float = STALE_TEMP_S) -> int:
    """Remove the files matching `pattern` in `folder` older than `older_than_s`; how many."""
    removed = 0
    for path in folder.glob(pattern):
        try:
            if time.time() - path.lstat().st_mtime > older_than_s:
                path.unlink()
                removed += 1
        except OSError:  # gone meanwhile, or not ours to remove: leave it
            pass
    return removed


def sync_dir(folder: Path) -> None:
    """Make renames in `folder` durable (after a power cut a rename may otherwise be undone)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot sync a directory
        pass
    finally:
        os.close(fd)


def write_synced(path: str | os.PathLike[str], write: Callable[[BinaryIO], None]) -> None:
    """Create `path` (which must not exist), call write(handle), flush and fsync: complete on disk when
    it returns."""
    with open(path, "xb") as fh:
        os.fchmod(fh.fileno(), 0o666 & ~_UMASK)
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], None]) -> Path:
    """Call write(handle) on a temp file, then atomically move it to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path.parent, f".{glob.escape(path.name)}.*.tmp")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file normal permissions
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    sync_dir(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))
