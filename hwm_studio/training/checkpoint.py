"""Run directories: weights in safetensors (with the model config in its header), JSON beside it.

    RUN_DIR/weights.safetensors   tensors + metadata {"format", "config", "train"}: one atomic file,
                                  so weights and the config that built them can never disagree
    RUN_DIR/config.json           the same config, readable
    RUN_DIR/metrics.json          training history and evaluation numbers
Every file is written atomically, the weights first (see `save_run`). Loading never unpickles: the
file is read here as safetensors' raw tensors, through one open handle (what is checked is what is
read), and every refusal is a CheckpointError naming the file, in this order, each before the next
step can allocate: the file itself (a regular file under MAX_WEIGHTS_BYTES); its header against
the file's size (its length, every tensor's dtype, shape and byte range: inside the file, matching
the shape, not overlapping); the format and the config (sizes bounded by ModelConfig.from_dict);
the model built under a memory budget set by the file's size (in-bounds sizes can still multiply
up to gigabytes); its tensors' names, shapes and dtypes against the header; only then are the
bytes read, and refused if any weight is NaN or infinite.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import secrets
import stat
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch
from safetensors.torch import save as safetensors_bytes
from torch.overrides import TorchFunctionMode

from hwm_studio.io import atomic_write, atomic_write_text, remove_stale, sync_dir, write_synced
from hwm_studio.models import MODELS, ModelConfig, WorldModel, build_model

FORMAT = "hwm_studio.checkpoint.v1"
WEIGHTS = "weights.safetensors"
MAX_HEADER_BYTES = 16 << 20  # our headers are a few kB (the config); safetensors itself allows 100 MB
MAX_WEIGHTS_BYTES = 2 << 30  # the largest shipped checkpoint is under 2 MB
BUILD_MARGIN_BYTES = 64 << 20  # what building a model may take beyond 4x its file's weights (buffers, temporaries)
_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
           "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
           "BOOL": torch.bool}  # fmt: skip
_NAMES = {v: k for k, v in _DTYPES.items()}


class CheckpointError(ValueError):
    """A run directory or weights file that cannot be loaded; the message says why."""


class RunSaveError(RuntimeError):
    """Training stopped because its run directory could not be written (training/run.py). `model`
    is the model as training left it (its best validated weights), `result` what fit() reported;
    the message says what failed and the last step that was saved."""

    def __init__(self, message: str, model: WorldModel, result: Any) -> None:
        super().__init__(message)
        self.model, self.result = model, result


def save_run(
    run_dir: str | os.PathLike[str],
    model: WorldModel,
    metrics: dict[str, Any] | None = None,
    train_config: dict[str, Any] | None = None,
) -> Path:
    """Write (or overwrite) a run directory, so that a crash at any instant leaves one complete
    save: the previous one or this one, weights, config.json and metrics.json alike.

    config.json and metrics.json (when given) are first written beside their targets under names
    that carry this save's token, and synced; then the weights, which carry the token in their
    header, are renamed into place: that rename is the commit point (the weights hold the config,
    and are all `load_model` reads). The two companions are renamed after it. A crash between
    those renames leaves them pending, named by the token of the weights on disk; the next
    `load_model`, `save_run` or `save_metrics` of the directory renames them into place (rolls the
    save forward), so nothing ever shows the JSON of one save beside the weights of another.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: exists and is not a directory")
    # clone: feature modules are shared between terms, and safetensors refuses aliased tensors
    tensors = {k: v.detach().to("cpu").clone().contiguous() for k, v in model.state_dict().items()}
    token = secrets.token_hex(8)
    metadata = {"format": FORMAT, "config": model.config.to_json(), "train": json.dumps(train_config or {}),
                "save": token}  # fmt: skip
    blob = safetensors_bytes(tensors, metadata=metadata)
    companions = {"config.json": json.dumps(json.loads(model.config.to_json()), indent=2) + "\n"}
    if metrics is not None:
        companions["metrics.json"] = _metrics_text(metrics)
    run_dir.mkdir(parents=True, exist_ok=True)
    finish_interrupted_save(run_dir)
    staged = {name: run_dir / f".{name}.{token}{PENDING}" for name in companions}
    try:
        for name, text in companions.items():
            write_synced(staged[name], lambda fh, text=text: fh.write(text.encode()))
        atomic_write(run_dir / WEIGHTS, lambda fh: fh.write(blob))  # the commit point
    except BaseException:
        if _save_token(run_dir) != token:  # not committed: this save never happened
            for path in staged.values():
                path.unlink(missing_ok=True)
        raise
    for name, path in staged.items():
        with contextlib.suppress(FileNotFoundError):  # a concurrent load rolled it forward already
            os.replace(path, run_dir / name)
    sync_dir(run_dir)
    return run_dir


PENDING = ".pending"  # suffix of a save's companion JSON before its rename


def _save_token(run_dir: Path) -> str | None:
    """The token of the save whose weights are in `run_dir` (None: none, unreadable, or older)."""
    try:
        with _opened(run_dir / WEIGHTS) as (_wpath, _fh, layout):
            return layout.metadata.get("save")
    except CheckpointError:
        return None


def finish_interrupted_save(run_dir: str | os.PathLike[str], token: str | None = None) -> list[str]:
    """Roll forward a save that was killed after its commit point: rename its pending companions
    (those named by the token of the weights on disk) into place. Pending files of saves that never
    committed are left until they are stale, then removed. Returns the names rolled forward;
    never raises (a read-only directory keeps what it has)."""
    run_dir = Path(run_dir)
    try:
        pending = sorted(run_dir.glob(f".*{PENDING}"))
    except OSError:
        return []
    if not pending:
        return []
    token = token or _save_token(run_dir)
    done = []
    for path in pending:
        name, _, rest = path.name[1:].partition(".json.")
        if token and rest == f"{token}{PENDING}" and name in ("config", "metrics"):
            try:
                os.replace(path, run_dir / f"{name}.json")
                done.append(f"{name}.json")
            except OSError:
                pass
    remove_stale(run_dir, f".*{PENDING}")
    if done:
        sync_dir(run_dir)
    return done


def _metrics_text(metrics: dict[str, Any]) -> str:
    return json.dumps(metrics, indent=2, default=float) + "\n"


def save_metrics(run_dir: str | os.PathLike[str], metrics: dict[str, Any]) -> None:
    finish_interrupted_save(run_dir)  # else a pending older metrics.json could later replace this one
    atomic_write_text(Path(run_dir) / "metrics.json", _metrics_text(metrics))


def load_metrics(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The run's metrics.json ({} when it has none); CheckpointError when it cannot be read."""
    path = Path(run_dir) / "metrics.json"
    if not path.exists():
        return {}
    if not path.is_file():  # a directory, a FIFO (reading one would block): not ours
        raise CheckpointError(f"{path}: not a regular file")
    try:
        metrics = json.loads(path.read_text())
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # json's errors are ValueErrors
        raise CheckpointError(f"{path}: not valid JSON ({_clip(exc)})") from None
    if not isinstance(metrics, dict):
        raise CheckpointError(f"{path}: not a JSON object")
    return metrics


def _weights_path(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    if path.is_dir():
        path = path / WEIGHTS
    if not path.exists():
        if path.is_symlink():
            raise CheckpointError(f"{path}: a broken or looping symbolic link, not a checkpoint")
        raise CheckpointError(f"{path}: no such checkpoint (a run directory holds {WEIGHTS})")
    return path


def _clip(text: str, limit: int = 300) -> str:
    """A message part from a file's own content, cut to one readable line."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_config(path: str | os.PathLike[str]) -> ModelConfig:
    """The model config stored in a checkpoint's header, without loading the weights."""
    with _opened(path) as (wpath, _fh, layout):
        return _config(wpath, layout)


@dataclass
class _Layout:
    """A checked safetensors header: where each tensor's bytes lie, and the metadata."""

    data_start: int  # the byte after the header
    data_bytes: int  # bytes after the header
    tensors: dict[str, tuple[str, tuple[int, ...], int, int]]  # name -> (dtype, shape, begin, end)
    metadata: dict[str, Any]


@contextmanager
def _opened(path: str | os.PathLike[str]) -> Iterator[tuple[Path, BinaryIO, _Layout]]:
    """The weights file, opened once (what is checked is what is read, even if the path is
    replaced meanwhile), with its header checked against its size. A directory, a FIFO or a
    device at the path is refused without blocking; any OSError becomes a CheckpointError."""
    wpath = _weights_path(path)
    try:
        fd = os.open(wpath, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise CheckpointError(f"{wpath}: cannot be opened ({exc.strerror or exc})") from None
    try:
        mode = os.fstat(fd).st_mode
    except OSError as exc:
        os.close(fd)
        raise CheckpointError(f"{wpath}: cannot be read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(mode):
        os.close(fd)
        what = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
        raise CheckpointError(f"{wpath}: {what}, not a checkpoint file")
    with os.fdopen(fd, "rb") as fh:
        try:
            yield wpath, fh, _check_layout(wpath, fh)
        except OSError as exc:
            raise CheckpointError(f"{wpath}: cannot be read ({exc.strerror or exc})") from None


def _check_layout(wpath: Path, fh: BinaryIO) -> _Layout:
    """Refuse a weights file whose header lies about the bytes it holds (see the module docstring)."""
    size = os.fstat(fh.fileno()).st_size
    if size > MAX_WEIGHTS_BYTES:
        raise CheckpointError(f"{wpath}: {size} bytes, over the {MAX_WEIGHTS_BYTES}-byte limit for a checkpoint")
    head = fh.read(8)
    if len(head) < 8:
        raise CheckpointError(f"{wpath}: corrupt or truncated checkpoint (shorter than a safetensors header)")
    n = int.from_bytes(head, "little")
    if n > MAX_HEADER_BYTES or 8 + n > size:
        raise CheckpointError(f"{wpath}: corrupt or truncated checkpoint, or not safetensors (its header "
                              f"would be {n} bytes, the file has {size}; a pickle is never loaded)")  # fmt: skip
    raw = fh.read(n)
    if len(raw) < n:
        raise CheckpointError(f"{wpath}: corrupt or truncated checkpoint (it shrank while being read)")
    try:
        header = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # ValueError: also a 5000-digit number
        raise CheckpointError(f"{wpath}: corrupt checkpoint header ({_clip(exc)})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{wpath}: corrupt checkpoint header (not a JSON object)")
    metadata = header.get("__metadata__") or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise CheckpointError(f"{wpath}: corrupt checkpoint header (its __metadata__ is not a map of strings)")
    data_bytes, spans, tensors = size - 8 - n, [], {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
            itemsize = _DTYPES[dtype].itemsize
            count = 1
            for k in shape:
                if isinstance(k, bool) or not isinstance(k, int) or k < 0:
                    raise ValueError(k)
                count *= k
            ok = all(isinstance(x, int) and not isinstance(x, bool) for x in (begin, end))
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{wpath}: tensor {_clip(repr(name), 80)} has a malformed entry in the header: "
                                  f"{_clip(repr(entry))}") from None  # fmt: skip
        if not ok or not 0 <= begin <= end <= data_bytes:
            raise CheckpointError(
                f"{wpath}: corrupt or truncated checkpoint: tensor {_clip(repr(name), 80)} lies outside the file "
                f"(bytes {_clip(repr(begin), 40)}..{_clip(repr(end), 40)} of {data_bytes})"
            )
        if end - begin != count * itemsize:
            raise CheckpointError(f"{wpath}: tensor {_clip(repr(name), 80)} declares {dtype} {_clip(repr(shape), 80)} "
                                  f"({count * itemsize} bytes) over {end - begin} bytes")  # fmt: skip
        spans.append((begin, end, name))
        tensors[name] = (dtype, tuple(shape), begin, end)
    spans.sort()
    for (_, end, a), (begin, _, b) in itertools.pairwise(spans):
        if begin < end:
            raise CheckpointError(f"{wpath}: tensors {_clip(repr(a), 80)} and {_clip(repr(b), 80)} overlap in the file")
    return _Layout(8 + n, data_bytes, tensors, metadata)


def _config(wpath: Path, layout: _Layout) -> ModelConfig:
    """The model config in a checked header: our format, valid JSON, a known form, bounded sizes."""
    fmt = layout.metadata.get("format")
    if fmt != FORMAT:
        raise CheckpointError(f"{wpath}: not an hwm_studio checkpoint (format {_clip(repr(fmt), 80)})")
    if "config" not in layout.metadata:
        raise CheckpointError(f"{wpath}: bad model config in the header (there is none)")
    try:
        d = json.loads(layout.metadata["config"])
        if not isinstance(d, dict):
            raise TypeError(f"not a JSON object but {type(d).__name__}")
        config = ModelConfig.from_dict(d)
    except (ValueError, TypeError, RecursionError) as exc:  # json's errors are ValueErrors
        raise CheckpointError(f"{wpath}: bad model config in the header ({_clip(exc)})") from None
    if not isinstance(config.kind, str) or config.kind not in MODELS:
        raise CheckpointError(f"{wpath}: its config names an unknown model kind {_clip(repr(config.kind), 80)} "
                              f"(this hwm_studio knows {', '.join(MODELS)})")  # fmt: skip
    return config


class _OverBudget(Exception):
    pass


# factories whose size is in their arguments: checked before they allocate
_SIZED_FACTORIES = {torch.empty, torch.zeros, torch.ones, torch.full, torch.rand, torch.randn, torch.empty_strided}


class _AllocationBudget(TorchFunctionMode):
    """Counts the bytes of the tensors a model's constructor makes, and stops it before a factory
    call (or after any other call) would pass `limit`: a config in a small file cannot make
    `build_model` allocate gigabytes (every size in it may be in bounds, and still multiply up)."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit, self.used, self.storages = limit, 0, set()

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204 (torch's protocol)
        kwargs = kwargs or {}
        if func in _SIZED_FACTORIES and self.used + _requested_bytes(args, kwargs) > self.limit:
            raise _OverBudget
        out = func(*args, **kwargs)
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                storage = t.untyped_storage()
                if storage.data_ptr() not in self.storages:
                    self.storages.add(storage.data_ptr())
                    self.used += storage.nbytes()
        if self.used > self.limit:
            raise _OverBudget
        return out


def _requested_bytes(args: tuple, kwargs: dict) -> int:
    size = kwargs.get("size")
    if size is None:
        size = next((a for a in args if isinstance(a, (tuple, list, torch.Size))), None)
    if size is None:
        size = list(itertools.takewhile(lambda a: isinstance(a, int) and not isinstance(a, bool), args))
    count = 1
    for k in size:
        count *= max(int(k), 0) if isinstance(k, int) else 1
    return count * (kwargs.get("dtype") or torch.get_default_dtype()).itemsize


def _build(wpath: Path, config: ModelConfig, layout: _Layout) -> WorldModel:
    """The model the config describes, refused if building it would take much more memory than
    the file's tensors (a model's own weights are what the file holds)."""
    limit = 4 * layout.data_bytes + BUILD_MARGIN_BYTES
    try:
        with _AllocationBudget(limit):
            return build_model(config)
    except _OverBudget:
        raise CheckpointError(f"{wpath}: its config asks for a model far larger than the {layout.data_bytes} "
                              "bytes of weights the file holds") from None  # fmt: skip
    except Exception as exc:  # a hostile config may fail anywhere in a constructor: say so, in one line
        raise CheckpointError(f"{wpath}: its config does not build a model ({_clip(exc)})") from None


def _match(wpath: Path, model: WorldModel, layout: _Layout) -> None:
    """Every tensor the model has, of its shape and dtype, and nothing else, before a byte is read."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(layout.tensors))
    unexpected = sorted(set(layout.tensors) - set(expected))
    if missing or unexpected:
        raise CheckpointError(_clip(
            f"{wpath}: weights do not match the {model.kind} model in its config "
            f"(missing: {', '.join(missing) or 'none'}; unexpected: {', '.join(map(repr, unexpected)) or 'none'})", 600
        ))  # fmt: skip
    wrong = [f"{k} {layout.tensors[k][1]} != {tuple(v.shape)}" for k, v in expected.items()
             if layout.tensors[k][1] != tuple(v.shape)]  # fmt: skip
    if wrong:
        raise CheckpointError(_clip(f"{wpath}: tensor shapes do not match the config: {'; '.join(wrong)}", 600))
    wrong = [f"{k} is {layout.tensors[k][0]}, the model's {_NAMES.get(v.dtype, v.dtype)}" for k, v in expected.items()
             if _DTYPES[layout.tensors[k][0]] != v.dtype]  # fmt: skip
    if wrong:
        raise CheckpointError(_clip(f"{wpath}: tensor dtypes do not match the model: {'; '.join(wrong)}", 600))


def _load_tensors(wpath: Path, fh: BinaryIO, layout: _Layout) -> dict[str, torch.Tensor]:
    """Each tensor's bytes read straight into a tensor of its checked dtype and shape (the bytes
    are little-endian, as safetensors writes them and as every host torch runs on reads them)."""
    out = {}
    for name, (dtype, shape, begin, end) in layout.tensors.items():
        t = torch.empty(shape, dtype=_DTYPES[dtype])
        if end > begin:
            fh.seek(layout.data_start + begin)
            if fh.readinto(memoryview(t.view(-1).view(torch.uint8).numpy())) != end - begin:
                raise CheckpointError(f"{wpath}: corrupt or truncated checkpoint (it shrank while being read)")
        out[name] = t
    return out


def load_model(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> WorldModel:
    """Rebuild the model from a run directory (or weights file) and load its weights strictly.

    In order, each step refusing with a CheckpointError before the next: the header against the
    file's size, the format and config, the model built within a memory budget set by the file's
    size, its tensors' names, shapes and dtypes against the header; only then are the weights
    read, and refused if any is not finite."""
    with _opened(path) as (wpath, fh, layout):
        model = _build(wpath, _config(wpath, layout), layout)
        _match(wpath, model, layout)
        tensors = _load_tensors(wpath, fh, layout)
    bad = [k for k, t in tensors.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise CheckpointError(_clip(f"{wpath}: non-finite weights (NaN or inf) in {', '.join(bad)}", 600))
    model.load_state_dict(tensors, strict=True)
    model.eval()
    finish_interrupted_save(wpath.parent, layout.metadata.get("save"))
    return model.to(device)


_SHARED: OrderedDict[tuple, WorldModel] = OrderedDict()
_SHARED_LOCK = threading.Lock()
MAX_SHARED = 32  # checkpoints kept loaded for sharing (the studio's pretrained set is ~20)


def load_shared(path: str | os.PathLike[str]) -> WorldModel:
    """A model of its own for one caller (knobs, integrator, dt) whose weights are read-only and
    shared: every caller of the same checkpoint file (same path, size and modification time) gets
    a view of one set of tensors, and its fused rollouts reuse the graphs traced for the others.

    Why: a served studio loads the same pretrained models in every browser session, and torch never
    frees a traced graph (see `physics.fused`); sharing keeps its memory flat as sessions come and go.
    A view must not be trained or written in place: use `load_model` for a copy of one's own.
    """
    wpath = _weights_path(path).resolve()
    st = wpath.stat()
    key = ("checkpoint", str(wpath), st.st_size, st.st_mtime_ns)
    with _SHARED_LOCK:
        base = _SHARED.get(key)
        if base is None:
            base = load_model(wpath)
            base.shared_as = key
            _SHARED[key] = base
            if len(_SHARED) > MAX_SHARED:
                _SHARED.popitem(last=False)
        else:
            _SHARED.move_to_end(key)
        return base.own_copy()
