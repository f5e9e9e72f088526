"""The trajectory file format: one .npz, validated on every read and write.

Arrays (N trajectories, T time points, E entities, D dims per entity, A action dims):
    q, p     float (N, T, E, D)       canonical positions and momenta (required)
    dt       float scalar > 0         time between consecutive points (required)
    u        float (N, T, A)          u[:, t] acts from point t to t+1 (zero-order hold);
                                      u[:, T-1] is unused (optional)
    frames   uint8 (N, T, H, W, 3)    RGB observations (optional)
    energy   float (N, T)             true total energy (optional)
    meta     str (JSON)               {"system": name, "params": {name: value}, "entities": [names]},
                                      every key optional, other keys kept (optional)
Reading never unpickles (allow_pickle=False) and allocates nothing a file merely declares: every
zip entry's array header (dtype, shape) is read first and checked against the entry's own size
and against MAX_DATA_BYTES, so a header claiming a shape beyond memory is refused before a byte
is allocated. Every problem raises DataFormatError with one message that names the file, the
array and what is wrong. Writing is atomic (temp file in the
same directory, then rename), so a crash never leaves a half-written file behind.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from hwm_studio.io import atomic_write

KNOWN_KEYS = ("q", "p", "dt", "u", "frames", "energy", "meta")
# The most a trajectory file may expand to in memory (all arrays together, uncompressed).
MAX_DATA_BYTES = int(os.environ.get("HWM_STUDIO_MAX_DATA_BYTES", 4 << 30))
MAX_ENTRIES = 64  # arrays in one file: the format has 7, extras are reported and ignored


class DataFormatError(ValueError):
    """A trajectory file or array set that breaks the format; the message says how."""


@dataclass(frozen=True)
class TrajectoryData:
    """A validated set of trajectories (see the module docstring for shapes)."""

    q: np.ndarray
    p: np.ndarray
    dt: float
    u: np.ndarray | None = None
    frames: np.ndarray | None = None
    energy: np.ndarray | None = None
    meta: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        validate(self)

    @property
    def n_trajectories(self) -> int:
        return self.q.shape[0]

    @property
    def n_times(self) -> int:
        return self.q.shape[1]

    @property
    def n_entities(self) -> int:
        return self.q.shape[2]

    @property
    def dim(self) -> int:
        return self.q.shape[3]

    @property
    def action_dim(self) -> int:
        return 0 if self.u is None else self.u.shape[2]

    @property
    def system_name(self) -> str | None:
        return None if self.meta is None else self.meta.get("system")

    @property
    def system_params(self) -> dict[str, float]:
        """The system's parameters as `meta` gives them ({} when it gives none)."""
        return {} if self.meta is None else dict(self.meta.get("params") or {})

    def select(self, index: np.ndarray | slice | list[int]) -> TrajectoryData:
        """A subset of trajectories (same times)."""
        pick = _pick(index)
        return replace(
            self,
            q=self.q[pick],
            p=self.p[pick],
            u=None if self.u is None else self.u[pick],
            frames=None if self.frames is None else self.frames[pick],
            energy=None if self.energy is None else self.energy[pick],
        )

    def window(self, start: int, stop: int) -> TrajectoryData:
        """The time points start..stop-1 of every trajectory."""
        t = slice(start, stop)
        return replace(
            self,
            q=self.q[:, t],
            p=self.p[:, t],
            u=None if self.u is None else self.u[:, t],
            frames=None if self.frames is None else self.frames[:, t],
            energy=None if self.energy is None else self.energy[:, t],
        )


def _pick(index: np.ndarray | slice | list[int]) -> np.ndarray | slice:
    return index if isinstance(index, slice) else np.asarray(index)


def _fail(where: str, message: str) -> DataFormatError:
    return DataFormatError(f"{where}: {message}" if where else message)


def _check_float(name: str, a: np.ndarray, where: str) -> None:
    if not isinstance(a, np.ndarray):
        raise _fail(where, f"'{name}' must be a numpy array, got {type(a).__name__}")
    if a.dtype.kind != "f":
        raise _fail(where, f"'{name}' must be a float array, got dtype {a.dtype}")
    if not np.isfinite(a).all():
        bad = int((~np.isfinite(a)).sum())
        raise _fail(where, f"'{name}' contains {bad} NaN or infinite value(s)")


def validate(data: TrajectoryData, where: str = "") -> None:
    """Check every shape, dtype and value rule of the format; raise DataFormatError if broken."""
    q, p = data.q, data.p
    _check_float("q", q, where)
    if q.ndim != 4:
        raise _fail(where, f"'q' must have shape (N, T, E, D), got {q.shape} ({q.ndim} dims)")
    _check_float("p", p, where)
    if p.shape != q.shape:
        raise _fail(where, f"'p' must have the same shape as 'q' {q.shape}, got {p.shape}")
    n, t, e, d = q.shape
    if n < 1 or t < 2 or e < 1 or d < 1:
        raise _fail(where, f"need N >= 1 trajectories, T >= 2 times, E >= 1, D >= 1; got shape {q.shape}")
    if isinstance(data.dt, bool) or not isinstance(data.dt, (int, float)):
        raise _fail(where, f"'dt' must be a number, got {data.dt!r}")
    if not (np.isfinite(data.dt) and data.dt > 0):
        raise _fail(where, f"'dt' must be finite and > 0, got {data.dt}")
    if data.u is not None:
        _check_float("u", data.u, where)
        if data.u.ndim != 3 or data.u.shape[:2] != (n, t):
            raise _fail(where, f"'u' must have shape (N, T, A) = ({n}, {t}, A), got {data.u.shape}")
        if data.u.shape[2] < 1:
            raise _fail(where, "'u' has zero action dimensions; leave it out instead")
    if data.energy is not None:
        _check_float("energy", data.energy, where)
        if data.energy.shape != (n, t):
            raise _fail(where, f"'energy' must have shape (N, T) = ({n}, {t}), got {data.energy.shape}")
    if data.frames is not None:
        f = data.frames
        if not isinstance(f, np.ndarray) or f.dtype != np.uint8:
            raise _fail(where, f"'frames' must be a uint8 array, got {getattr(f, 'dtype', type(f).__name__)}")
        if f.ndim != 5 or f.shape[:2] != (n, t) or f.shape[4] != 3:
            raise _fail(where, f"'frames' must have shape (N, T, H, W, 3) with N={n}, T={t}; got {f.shape}")
        if f.shape[2] < 8 or f.shape[3] < 8:
            raise _fail(where, f"'frames' must be at least 8x8 pixels, got {f.shape[2]}x{f.shape[3]}")
    if data.meta is not None:
        _validate_meta(data.meta, e, d, where)


def _validate_meta(meta: Any, n_entities: int, dim: int, where: str) -> None:
    """Every key optional and others kept; the ones given must be right, and a system the library
    knows must be buildable from its parameters with the file's shape."""
    if not isinstance(meta, dict):
        raise _fail(where, f"'meta' must be a JSON object, got {type(meta).__name__}")
    system = meta.get("system")
    if "system" in meta and (not isinstance(system, str) or not system):
        raise _fail(where, f"'meta.system' must be a non-empty string, got {system!r}")
    params = meta.get("params", {})
    if not isinstance(params, dict) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in params.values()
    ):
        raise _fail(where, f"'meta.params' must map parameter names to finite numbers, got {params!r}")
    if "entities" in meta:
        ents = meta["entities"]
        if not isinstance(ents, list) or len(ents) != n_entities or not all(isinstance(x, str) for x in ents):
            raise _fail(where, f"'meta.entities' must list {n_entities} entity names, got {ents!r}")
    from hwm_studio.systems import get_system, system_names  # local: data stays importable alone

    if system in system_names():
        try:
            built = get_system(system, **params)
        except (ValueError, TypeError) as exc:
            raise _fail(where, f"'meta' names system {system!r} with bad parameters: {exc}") from None
        if (built.n_entities, built.dim) != (n_entities, dim):
            raise _fail(
                where,
                f"'meta' names system {system!r} ({built.n_entities} entities of dim {built.dim}), "
                f"but q has {n_entities} entities of dim {dim}",
            )


def _scan(path: Path, where: str) -> None:
    """Check the archive before numpy reads it: only .npy entries, plain dtypes (no objects: nothing
    to unpickle), and each header's shape x itemsize equal to the bytes its entry holds, all within
    MAX_DATA_BYTES. Reads the headers only (a few hundred bytes an entry)."""
    size = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_ENTRIES:
                raise _fail(where, f"has {len(infos)} entries; a trajectory file has at most {MAX_ENTRIES}")
            total = 0
            for info in infos:
                _scan_entry(zf, info, size, where)
                total += info.file_size
                if total > MAX_DATA_BYTES:
                    raise _fail(where, f"its arrays would take more than {MAX_DATA_BYTES / 2**30:.3g} GiB in memory "
                                       "(HWM_STUDIO_MAX_DATA_BYTES sets the limit)")  # fmt: skip
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, NotImplementedError, RuntimeError) as exc:
        raise _fail(where, f"cannot be read as an .npz archive ({type(exc).__name__}: {exc})") from None


def _scan_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, size: int, where: str) -> None:
    name = info.filename
    if not name.endswith(".npy") or "/" in name or info.is_dir():
        raise _fail(where, f"entry {name!r} is not an array (.npy); an .npz holds arrays only")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise _fail(where, f"entry {name!r} uses an unsupported compression (method {info.compress_type})")
    if info.compress_size > size or (info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size):
        raise _fail(where, f"entry {name!r} declares more bytes than the file holds (truncated or forged)")
    if info.file_size > MAX_DATA_BYTES:
        raise _fail(where, f"array {name[:-4]!r} declares {info.file_size} bytes, over the {MAX_DATA_BYTES} limit")
    with zf.open(info) as fh:
        try:
            version = np.lib.format.read_magic(fh)
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read_header(fh)
        except (ValueError, TypeError, SyntaxError, EOFError) as exc:
            raise _fail(where, f"array {name[:-4]!r} has no valid .npy header ({exc})") from None
        header = fh.tell()
    if dtype.hasobject or dtype.fields is not None or dtype.kind == "V":
        raise _fail(where, f"array {name[:-4]!r} holds Python objects or records (dtype {dtype}); refused, never "
                           "unpickled: store plain numbers")  # fmt: skip
    if any(n < 0 for n in shape):
        raise _fail(where, f"array {name[:-4]!r} declares a negative shape {shape}")
    nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize if shape else dtype.itemsize
    if header + nbytes != info.file_size:
        raise _fail(where, f"array {name[:-4]!r} declares shape {shape} of {dtype} ({nbytes} bytes) but its entry "
                           f"holds {info.file_size - header} bytes (truncated or forged header)")  # fmt: skip


def load_trajectories(path: str | os.PathLike[str]) -> TrajectoryData:
    """Read and validate a trajectory .npz; DataFormatError (one clear message) if anything is off."""
    path = Path(path)
    where = str(path)
    if not path.exists():
        raise DataFormatError(f"{where}: no such file")
    if path.is_dir():
        raise DataFormatError(f"{where}: is a directory, not an .npz file")
    if not zipfile.is_zipfile(path):
        raise _fail(where, "not an .npz archive (it is not a zip file; truncated or another format?)")
    _scan(path, where)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError, RuntimeError) as exc:
        raise _fail(where, f"cannot be read as an .npz archive ({type(exc).__name__}: {exc})") from None
    missing = [k for k in ("q", "p", "dt") if k not in arrays]
    if missing:
        raise _fail(where, f"missing required array(s) {', '.join(missing)} (has: {', '.join(arrays) or 'nothing'})")
    dt_arr = arrays["dt"]
    if dt_arr.size != 1 or dt_arr.dtype.kind not in "fiu":
        raise _fail(where, f"'dt' must be one number, got an array of shape {dt_arr.shape} and dtype {dt_arr.dtype}")
    meta = None
    if "meta" in arrays:
        m = arrays["meta"]
        if m.dtype.kind != "U" or m.size != 1:
            raise _fail(where, f"'meta' must be a JSON string, got dtype {m.dtype} shape {m.shape}")
        try:
            meta = json.loads(str(m.reshape(())[()]))
        except (json.JSONDecodeError, RecursionError) as exc:
            raise _fail(where, f"'meta' is not valid JSON ({exc})") from None
    try:
        return TrajectoryData(
            q=arrays["q"],
            p=arrays["p"],
            dt=float(dt_arr.reshape(())),
            u=arrays.get("u"),
            frames=arrays.get("frames"),
            energy=arrays.get("energy"),
            meta=meta,
        )
    except DataFormatError as exc:
        raise DataFormatError(f"{where}: {exc}") from None


def save_trajectories(data: TrajectoryData, path: str | os.PathLike[str]) -> Path:
    """Write atomically: a temp file beside the target, fsync, then rename over it."""
    validate(data)
    path = Path(path)
    if path.suffix != ".npz":
        raise DataFormatError(f"{path}: trajectory files must end in .npz")
    arrays: dict[str, np.ndarray] = {"q": data.q, "p": data.p, "dt": np.asarray(float(data.dt))}
    for key in ("u", "frames", "energy"):
        value = getattr(data, key)
        if value is not None:
            arrays[key] = value
    if data.meta is not None:
        arrays["meta"] = np.asarray(json.dumps(data.meta))
    return atomic_write(path, lambda fh: np.savez_compressed(fh, **arrays))


def describe(data: TrajectoryData, ignored: list[str] | None = None) -> str:
    """A human summary of a valid file (what `hwm-studio inspect` prints)."""
    n, t, e, d = data.q.shape
    lines = [
        f"trajectories  {n}",
        f"time points   {t}  (dt = {data.dt:g}, span {data.dt * (t - 1):g})",
        f"entities      {e} x dim {d}",
        f"q, p          {data.q.dtype} {data.q.shape}",
        f"actions u     {'none' if data.u is None else f'{data.u.dtype} {data.u.shape}'}",
        f"frames        {'none' if data.frames is None else f'uint8 {data.frames.shape}'}",
    ]
    if data.meta is not None:
        lines.append(f"system        {data.system_name or '(not named)'}  params {json.dumps(data.system_params)}")
        if "entities" in data.meta:
            lines.append(f"entity names  {', '.join(map(str, data.meta['entities']))}")
        extra = sorted(k for k in data.meta if k not in ("system", "params", "entities"))
        if extra:
            lines.append(f"meta also     {', '.join(extra)}")
    else:
        lines.append("system        (no meta: unknown)")
    if data.energy is not None:
        en = data.energy
        drift = np.abs(en - en[:, :1]).max(axis=1)
        lines.append(
            f"energy        mean {en.mean():.6g}  min {en.min():.6g}  max {en.max():.6g}  "
            f"max |E(t) - E(0)| per trajectory: median {np.median(drift):.3g}, max {drift.max():.3g}"
        )
    else:
        lines.append("energy        none")
    lines.append(
        f"q range       [{data.q.min():.4g}, {data.q.max():.4g}]   p range [{data.p.min():.4g}, {data.p.max():.4g}]"
    )
    if ignored:
        lines.append(f"ignored       {', '.join(ignored)} (not part of the format)")
    return "\n".join(lines)


def unknown_keys(path: str | os.PathLike[str]) -> list[str]:
    """Array names in a file that the format does not define (reported, not fatal)."""
    with np.load(path, allow_pickle=False) as z:
        return [k for k in z.files if k not in KNOWN_KEYS]
