"""Run directories: weights in safetensors (with the model config in its header), JSON beside it.

    RUN_DIR/weights.safetensors   tensors + metadata {"format", "config", "train"}: one atomic file,
                                  so weights and the config that built them can never disagree
    RUN_DIR/config.json           the same config, readable
    RUN_DIR/metrics.json          training history and evaluation numbers
Every file is written atomically. Loading never unpickles (safetensors holds raw tensors only)
and fails with CheckpointError naming the file and the problem. Before safetensors reads a byte of
tensor data, the header is checked here against the file's own size: its length, every tensor's
dtype, shape and byte range (inside the file, matching the shape, not overlapping), so a forged
header cannot make the loader allocate what the file does not hold; then the config's sizes are
bounded before a model is built from it.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_bytes

from hwm_studio.io import atomic_write, atomic_write_text
from hwm_studio.models import ModelConfig, WorldModel, build_model

FORMAT = "hwm_studio.checkpoint.v1"
WEIGHTS = "weights.safetensors"
MAX_HEADER_BYTES = 16 << 20  # our headers are a few kB (the config); safetensors itself allows 100 MB
MAX_WEIGHTS_BYTES = 2 << 30  # the largest shipped checkpoint is under 2 MB
_ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


class CheckpointError(ValueError):
    """A run directory or weights file that cannot be loaded; the message says why."""


def save_run(
    run_dir: str | os.PathLike[str],
    model: WorldModel,
    metrics: dict[str, Any] | None = None,
    train_config: dict[str, Any] | None = None,
) -> Path:
    """Write (or overwrite) a run directory atomically, file by file, weights first."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: exists and is not a directory")
    # clone: feature modules are shared between terms, and safetensors refuses aliased tensors
    tensors = {k: v.detach().to("cpu").clone().contiguous() for k, v in model.state_dict().items()}
    metadata = {"format": FORMAT, "config": model.config.to_json(), "train": json.dumps(train_config or {})}
    blob = safetensors_bytes(tensors, metadata=metadata)
    atomic_write(run_dir / WEIGHTS, lambda fh: fh.write(blob))
    atomic_write_text(run_dir / "config.json", json.dumps(json.loads(model.config.to_json()), indent=2) + "\n")
    if metrics is not None:
        save_metrics(run_dir, metrics)
    return run_dir


def save_metrics(run_dir: str | os.PathLike[str], metrics: dict[str, Any]) -> None:
    atomic_write_text(Path(run_dir) / "metrics.json", json.dumps(metrics, indent=2, default=float) + "\n")


def load_metrics(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(run_dir) / "metrics.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from None


def _weights_path(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    if path.is_dir():
        path = path / WEIGHTS
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint (a run directory holds {WEIGHTS})")
    return path


def read_config(path: str | os.PathLike[str]) -> ModelConfig:
    """The model config stored in a checkpoint's header, without loading the weights."""
    return _read(path, tensors=False)[0]


def _check_layout(wpath: Path) -> None:
    """Refuse a weights file whose header lies about the bytes it holds (see the module docstring)."""
    size = wpath.stat().st_size
    if size > MAX_WEIGHTS_BYTES:
        raise CheckpointError(f"{wpath}: {size} bytes, over the {MAX_WEIGHTS_BYTES}-byte limit for a checkpoint")
    with open(wpath, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{wpath}: corrupt or truncated checkpoint (shorter than a safetensors header)")
        n = int.from_bytes(head, "little")
        if n > MAX_HEADER_BYTES or 8 + n > size:
            raise CheckpointError(f"{wpath}: corrupt or truncated checkpoint, or not safetensors (its header "
                                  f"would be {n} bytes, the file has {size}; a pickle is never loaded)")  # fmt: skip
        try:
            header = json.loads(fh.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise CheckpointError(f"{wpath}: corrupt checkpoint header ({exc})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{wpath}: corrupt checkpoint header (not a JSON object)")
    data_bytes, spans = size - 8 - n, []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
            itemsize = _ITEMSIZE[dtype]
            count = 1
            for k in shape:
                if isinstance(k, bool) or not isinstance(k, int) or k < 0:
                    raise ValueError(k)
                count *= k
            ok = all(isinstance(x, int) and not isinstance(x, bool) for x in (begin, end))
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{wpath}: tensor {name!r} has a malformed entry in the header: {entry!r}") from None
        if not ok or not 0 <= begin <= end <= data_bytes:
            raise CheckpointError(
                f"{wpath}: corrupt or truncated checkpoint: tensor {name!r} lies outside the file "
                f"(bytes {begin}..{end} of {data_bytes})"
            )
        if end - begin != count * itemsize:
            raise CheckpointError(f"{wpath}: tensor {name!r} declares {dtype} {shape} ({count * itemsize} bytes) "
                                  f"over {end - begin} bytes")  # fmt: skip
        spans.append((begin, end, name))
    spans.sort()
    for (_, end, a), (begin, _, b) in itertools.pairwise(spans):
        if begin < end:
            raise CheckpointError(f"{wpath}: tensors {a!r} and {b!r} overlap in the file")


def _read(path: str | os.PathLike[str], tensors: bool) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    wpath = _weights_path(path)
    _check_layout(wpath)
    try:
        with safe_open(str(wpath), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            data = {k: f.get_tensor(k) for k in f.keys()} if tensors else {}  # noqa: SIM118 (safe_open API)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{wpath}: corrupt or truncated checkpoint ({exc})") from None
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{wpath}: not an hwm_studio checkpoint (format {metadata.get('format')!r})")
    try:
        config = ModelConfig.from_dict(json.loads(metadata["config"]))
    except (KeyError, json.JSONDecodeError, TypeError, ValueError, RecursionError) as exc:
        raise CheckpointError(f"{wpath}: bad model config in the header ({exc})") from None
    return config, data


def load_model(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> WorldModel:
    """Rebuild the model from a run directory (or weights file) and load its weights strictly."""
    config, tensors = _read(path, tensors=True)
    try:
        model = build_model(config)
    except (ValueError, TypeError, KeyError) as exc:
        raise CheckpointError(f"{path}: its config does not build a model ({exc})") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not match the {config.kind} model in its config "
            f"(missing: {', '.join(missing) or 'none'}; unexpected: {', '.join(unexpected) or 'none'})"
        )
    wrong = [
        f"{k} {tuple(tensors[k].shape)} != {tuple(v.shape)}" for k, v in expected.items() if tensors[k].shape != v.shape
    ]
    if wrong:
        raise CheckpointError(f"{path}: tensor shapes do not match the config: {'; '.join(wrong)}")
    bad = [k for k, t in tensors.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise CheckpointError(f"{path}: non-finite weights in {', '.join(bad)}")
    model.load_state_dict(tensors, strict=True)
    model.eval()
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
