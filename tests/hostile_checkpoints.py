"""A generated corpus of broken and hostile checkpoints, and a save killed at random instants;
for the tests and benchmarks/bad_files.py. Nothing here is committed as a binary: every case is
made from one real small run (a pendulum HWM trained a few steps) when asked for.

Each case is a run directory, a copy of that run with one thing wrong at its weights path:
headers that lie about their length or the file's bytes, tensors that overlap or lie outside the
file, dtypes other than the bytes hold or the model has, NaN and inf weights, configs that are
not JSON, not objects, of an unknown kind or absurd sizes, a format that is not ours, torch
pickles (one whose unpickling would create a marker file), an empty file, a directory, a FIFO, a
device, symlink loops. `STAGE[name]` says how early `load_model` must refuse it:
  'header'  from the file's type and size and its header alone: no model built, no tensor read
  'model'   once the model is built (under its memory budget), before any tensor byte is read
  'weights' after reading the weights (NaN, inf)
`kill_saves` runs `save_run` in a loop in a child process and SIGKILLs it at random instants.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

MARKER = "UNPICKLED"  # created in the corpus folder by any payload that runs
WEIGHTS = "weights.safetensors"


class _Payload:
    """Pickles as a call that creates the marker file: proof, if it exists, that a file was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


# --- the real run every case starts from ---------------------------------------------------------
def make_base(folder: Path) -> Path:
    """A small real run directory (weights, config.json, metrics.json) trained by train_run."""
    from hwm_studio.data.simulate import simulate
    from hwm_studio.systems import get_system
    from hwm_studio.training.fit import TrainConfig
    from hwm_studio.training.run import train_run

    data = simulate(get_system("pendulum"), 6, 12, control="random", seed=0)
    out = folder / "base"
    train_run(data, out, "hwm", TrainConfig(steps=4, horizon=2, val_every=2, device="cpu"), model_options={"hidden": 8})
    return out


def split(blob: bytes) -> tuple[dict[str, Any], bytes]:
    """A safetensors file's (header, data bytes)."""
    n = int.from_bytes(blob[:8], "little")
    return json.loads(blob[8 : 8 + n]), blob[8 + n :]


def join(header: dict[str, Any] | bytes, data: bytes) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return len(raw).to_bytes(8, "little") + raw + data


def _tensors(blob: bytes) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors.torch import load

    header, _ = split(blob)
    return load(blob), header.get("__metadata__", {})


def _save(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    from safetensors.torch import save

    return save(tensors, metadata=metadata)


# --- the cases -----------------------------------------------------------------------------------
Maker = Callable[[Path], None]  # given a fresh copy of the base run, breaks its weights path


def cases(folder: Path, base: Path) -> dict[str, tuple[str, Maker]]:
    """name -> (stage, maker): every case of the corpus (all must be refused)."""
    marker = folder / MARKER
    blob = (base / WEIGHTS).read_bytes()
    header, data = split(blob)
    meta = header["__metadata__"]
    config = json.loads(meta["config"])
    names = [k for k in header if k != "__metadata__"]
    first = min(names, key=lambda k: header[k]["data_offsets"][0])
    second = sorted(names, key=lambda k: header[k]["data_offsets"][0])[1]
    out: dict[str, tuple[str, Maker]] = {}

    def file(stage: str, content: bytes | Callable[[], bytes]) -> tuple[str, Maker]:
        def make(run: Path) -> None:
            (run / WEIGHTS).write_bytes(content() if callable(content) else content)

        return stage, make

    def header_with(**changes: Any) -> bytes:
        h = json.loads(json.dumps(header))
        for name, entry in changes.items():
            if entry is None:
                h.pop(name)
            else:
                h[name] = entry
        return join(h, data)

    def entry(name: str, **changes: Any) -> dict[str, Any]:
        return {**header[name], **changes}

    def with_metadata(**changes: Any) -> bytes:
        return header_with(__metadata__={k: v for k, v in {**meta, **changes}.items() if v is not None})

    def with_config(value: Any = None, raw: str | None = None, **changes: Any) -> bytes:
        c = dict(config, **changes) if value is None else value
        return with_metadata(config=raw if raw is not None else json.dumps(c))

    def retyped(dtype: torch.dtype, only: str | None = None) -> Callable[[], bytes]:
        def make() -> bytes:
            tensors, metadata = _tensors(blob)
            for k in [only] if only else list(tensors):
                tensors[k] = tensors[k].to(dtype)
            return _save(tensors, metadata)

        return make

    def poisoned(value: float, everywhere: bool = False) -> Callable[[], bytes]:
        def make() -> bytes:
            tensors, metadata = _tensors(blob)
            for k in tensors if everywhere else [first]:
                if tensors[k].is_floating_point() and tensors[k].numel():
                    tensors[k] = tensors[k].clone()
                    tensors[k].view(-1)[tensors[k].numel() // 2] = value
            return _save(tensors, metadata)

        return make

    def torch_save(obj: Any, **kwargs: Any) -> Callable[[], bytes]:
        def make() -> bytes:
            import io

            buf = io.BytesIO()
            torch.save(obj, buf, **kwargs)
            return buf.getvalue()

        return make

    # the file itself
    out["empty file"] = file("header", b"")
    out["seven bytes"] = file("header", blob[:7])
    out["header length beyond the file"] = file("header", (len(blob) + 100).to_bytes(8, "little") + blob[8:])
    out["declared 200 MB header"] = file("header", (200 << 20).to_bytes(8, "little") + blob[8:])
    out["declared 2**63 header"] = file("header", (2**63).to_bytes(8, "little") + blob[8:])
    big = json.dumps(header).encode() + b" " * (17 << 20)  # a real 17 MB header, valid JSON
    out["actual 17 MB header"] = file("header", lambda: join(big, data))
    out["truncated in the data"] = file("header", blob[: len(blob) - 10])
    out["truncated in the header"] = file("header", blob[:40])
    out["header not JSON"] = file("header", join(b"{not json at all", data))
    out["header not UTF-8"] = file("header", join(b'{"\xff\xfe": 1}', data))
    out["header a JSON list"] = file("header", join(b"[1, 2, 3]", data))
    out["header nested 100000 deep"] = file("header", join(b"[" * 100000 + b"]" * 100000, data))
    out["header with a 5000-digit number"] = file("header", join(b'{"x": ' + b"9" * 5000 + b"}", data))
    out["header entry not an object"] = file("header", header_with(**{first: [1, 2]}))
    span = header[first]["data_offsets"]
    out["tensors overlap"] = file("header", header_with(**{second: entry(second, data_offsets=span)}))
    beyond = [len(data), len(data) + 16]
    out["offsets beyond the file"] = file("header", header_with(**{first: entry(first, data_offsets=beyond)}))
    out["offsets far beyond the file"] = file("header", header_with(**{first: entry(first, data_offsets=[0, 2**62])}))
    out["negative offsets"] = file("header", header_with(**{first: entry(first, data_offsets=[-8, 8])}))
    out["offsets reversed"] = file("header", header_with(**{first: entry(first, data_offsets=span[::-1])}))
    out["offsets as floats"] = file("header", header_with(**{first: entry(first, data_offsets=[0.0, 4.0])}))
    out["offsets missing"] = file("header", header_with(**{first: {"dtype": "F32", "shape": [1]}}))
    out["shape with a negative size"] = file("header", header_with(**{first: entry(first, shape=[-1, 4])}))
    out["shape of 10**12 over a few bytes"] = file("header", header_with(**{first: entry(first, shape=[10**6, 10**6])}))
    out["shape as booleans"] = file("header", header_with(**{first: entry(first, shape=[True])}))
    out["shape as a string"] = file("header", header_with(**{first: entry(first, shape="4")}))
    out["F64 declared over F32 bytes"] = file("header", header_with(**{first: entry(first, dtype="F64")}))
    out["I64 declared over F32 bytes"] = file("header", header_with(**{first: entry(first, dtype="I64")}))
    out["an unknown dtype"] = file("header", header_with(**{first: entry(first, dtype="C64")}))
    out["an 8-bit float dtype"] = file("header", header_with(**{first: entry(first, dtype="F8_E4M3")}))
    out["metadata a list"] = file("header", header_with(__metadata__=["format"]))
    out["metadata values not strings"] = file("header", with_metadata(config=json.loads(meta["config"])))
    out["no metadata (no format)"] = file("header", header_with(__metadata__=None))
    out["format missing"] = file("header", with_metadata(format=None))
    out["another format (pt)"] = file("header", with_metadata(format="pt"))
    out["config missing"] = file("header", with_metadata(config=None))
    out["config not JSON"] = file("header", with_config(raw="{kind: hwm"))
    out["config a JSON list"] = file("header", with_config(value=[1, 2]))
    out["config a JSON string"] = file("header", with_config(value="hwm"))
    out["config null"] = file("header", with_config(raw="null"))
    out["config nested 100000 deep"] = file("header", with_config(raw="[" * 100000 + "]" * 100000))
    out["config names an unknown kind"] = file("header", with_config(kind="transformer"))
    out["config kind a number"] = file("header", with_config(kind=7))
    out["config hidden = 10**9"] = file("header", with_config(hidden=10**9))
    out["config n_entities = 10**6"] = file("header", with_config(n_entities=10**6))
    out["config hidden negative"] = file("header", with_config(hidden=-8))
    out["config hidden a bool"] = file("header", with_config(hidden=True))
    out["config hidden a float"] = file("header", with_config(hidden=8.0))
    out["config depth a string"] = file("header", with_config(depth="2"))
    out["config dt NaN"] = file("header", with_config(dt=float("nan")))
    out["config dt negative"] = file("header", with_config(dt=-0.1))
    out["config q_scale a million numbers"] = file("header", with_config(q_scale=[1.0] * 10**6))
    out["config with an unknown field"] = file("header", with_config(warp=9))
    out["config without kind"] = file("header", with_config(value={k: v for k, v in config.items() if k != "kind"}))
    out["config of a far larger model (in bounds)"] = file("model", with_config(hidden=4096, depth=16))
    out["config of another model size"] = file("model", with_config(hidden=16))
    out["config of another kind"] = file("model", with_config(kind="mlp"))
    out["F64 tensors where the model has F32"] = file("model", retyped(torch.float64))
    out["one F64 tensor where the model has F32"] = file("model", retyped(torch.float64, first))
    out["I64 tensors where the model has F32"] = file("model", retyped(torch.int64))
    out["F16 tensors where the model has F32"] = file("model", retyped(torch.float16))
    out["BOOL tensor where the model has F32"] = file("model", retyped(torch.bool, first))

    def dropped() -> bytes:
        tensors, metadata = _tensors(blob)
        tensors.pop(first)
        return _save(tensors, metadata)

    def extra() -> bytes:
        tensors, metadata = _tensors(blob)
        tensors["smuggled"] = torch.zeros(3)
        return _save(tensors, metadata)

    out["a tensor missing"] = file("model", dropped)
    out["an extra tensor"] = file("model", extra)
    out["NaN in a weight"] = file("weights", poisoned(float("nan")))
    out["inf in a weight"] = file("weights", poisoned(float("inf")))
    out["-inf in a weight"] = file("weights", poisoned(float("-inf")))
    out["NaN in every weight"] = file("weights", poisoned(float("nan"), everywhere=True))
    # pickles at the weights path: never loaded (the first 8 bytes read as a header length beyond the file)
    out["torch.save of a tensor"] = file("header", torch_save(torch.zeros(4)))
    out["torch.save of a state dict"] = file("header", lambda: torch_save(_tensors(blob)[0])())
    out["torch.save of a payload"] = file("header", torch_save(_Payload(marker)))
    legacy = torch_save(_Payload(marker), _use_new_zipfile_serialization=False)
    out["legacy torch.save of a payload"] = file("header", legacy)
    out["raw pickle of a payload"] = file("header", pickle.dumps(_Payload(marker)))

    # things that are not a file
    def directory(run: Path) -> None:
        (run / WEIGHTS).unlink()
        (run / WEIGHTS).mkdir()
        (run / WEIGHTS / WEIGHTS).write_bytes(blob)

    def self_loop(run: Path) -> None:
        (run / WEIGHTS).unlink()
        os.symlink(WEIGHTS, run / WEIGHTS)

    def loop_pair(run: Path) -> None:
        (run / WEIGHTS).unlink()
        os.symlink("other", run / WEIGHTS)
        os.symlink(WEIGHTS, run / "other")

    def dangling(run: Path) -> None:
        (run / WEIGHTS).unlink()
        os.symlink("nowhere.safetensors", run / WEIGHTS)

    def fifo(run: Path) -> None:
        (run / WEIGHTS).unlink()
        os.mkfifo(run / WEIGHTS)

    def device(run: Path) -> None:
        (run / WEIGHTS).unlink()
        os.symlink("/dev/zero", run / WEIGHTS)

    def over_limit(run: Path) -> None:
        with open(run / WEIGHTS, "r+b") as fh:  # sparse: costs no disk
            fh.truncate((2 << 30) + 1)

    out["a directory at the weights path"] = ("header", directory)
    out["a symlink loop at the weights path"] = ("header", self_loop)
    out["a two-link symlink loop"] = ("header", loop_pair)
    out["a dangling symlink"] = ("header", dangling)
    if hasattr(os, "mkfifo"):
        out["a FIFO at the weights path"] = ("header", fifo)
    if Path("/dev/zero").exists():
        out["a symlink to /dev/zero"] = ("header", device)
    out["a file over the 2 GB limit"] = ("header", over_limit)
    return out


def write_corpus(folder: Path, base: Path | None = None) -> dict[str, Path]:
    """Write every case as a run directory `folder/badNNN`; name -> run directory. `folder` may be
    a workspace's runs/ (the cases are made in place: one is a sparse 2 GB file)."""
    folder.mkdir(parents=True, exist_ok=True)
    base = base or make_base(folder.parent / f".{folder.name}-base")
    paths = {}
    for i, (name, (_stage, make)) in enumerate(cases(folder, base).items()):
        run = folder / f"bad{i:03d}"
        shutil.copytree(base, run)
        make(run)
        paths[name] = run
    return paths


def stages(folder: Path, base: Path) -> dict[str, str]:
    return {name: stage for name, (stage, _) in cases(folder, base).items()}


def unpickled(folder: Path) -> bool:
    return (folder / MARKER).exists()


# --- saves killed at random instants -------------------------------------------------------------
def two_models() -> tuple[Any, Any]:
    """Two small models of different kinds, sizes and weights, the same in every process."""
    from hwm_studio.data.simulate import simulate
    from hwm_studio.models import build_model, config_from_data
    from hwm_studio.systems import get_system

    data = simulate(get_system("pendulum"), 3, 10, control="random", seed=0)
    torch.manual_seed(0)
    a = build_model(config_from_data(data, "hwm", hidden=8))
    torch.manual_seed(1)
    b = build_model(config_from_data(data, "mlp", hidden=12))
    return a, b


def save_forever(run: str, models: tuple[Any, Any], ready: Any) -> None:
    """The child: save the two models alternately into `run`, forever (until killed)."""
    from hwm_studio.training.checkpoint import save_run

    i = int(time.time_ns() % 1_000_000) * 2  # save ids differ between children
    ready.send(i)
    while True:
        model = models[i % 2]
        save_run(run, model, metrics={"save": i, "kind": model.kind}, train_config={"save": i})
        i += 1


def _header(path: Path) -> dict[str, Any]:
    with open(path, "rb") as fh:
        n = int.from_bytes(fh.read(8), "little")
        return json.loads(fh.read(n))


def _consistent(run: Path) -> bool:
    """config.json and metrics.json describe the save whose weights are on disk."""
    meta = _header(run / WEIGHTS)["__metadata__"]
    config_json = json.loads((run / "config.json").read_text())  # complete JSON, always (else this raises)
    metrics_json = json.loads((run / "metrics.json").read_text())
    return config_json == json.loads(meta["config"]) and metrics_json["save"] == json.loads(meta["train"])["save"]


def kill_saves(folder: Path, kills: int = 50, seed: int = 0, max_delay_s: float = 0.08) -> dict[str, Any]:
    """SIGKILL a child that saves in a loop `kills` times, each after a random delay (seeded); after
    each kill, what is in the run directory. One fork server imports torch once; each child is
    forked from it, so a restart costs milliseconds, not an import.

    Counted after each kill: whether `load_model` loads it (`loadable`), bit for bit one of the two
    models (`exact`); whether config.json and metrics.json already described the weights on disk
    (`consistent_before_load`) or the kill fell between the commit and their renames and the
    load rolled them forward (`rolled_forward`); whether they do after the load
    (`consistent_after_load`); how often the checkpoint had changed since the last kill."""
    from hwm_studio.training.checkpoint import load_model, save_run

    a, b = two_models()
    run = folder / "killed"
    save_run(run, a, metrics={"save": -1, "kind": a.kind}, train_config={"save": -1})
    ctx = multiprocessing.get_context("forkserver")
    # "__main__": the server runs the main script once (under pytest, pytest), not each child
    ctx.set_forkserver_preload(["__main__", __name__, "hwm_studio.training.checkpoint", "hwm_studio.models"])
    rng = random.Random(seed)
    counts: dict[str, Any] = dict.fromkeys(("kills", "loadable", "exact", "consistent_before_load", "rolled_forward",
                                            "consistent_after_load", "changed_since_last_kill"), 0)  # fmt: skip
    problems: list[str] = []
    last_save = -1
    start = time.perf_counter()
    for k in range(kills):
        receive, send = ctx.Pipe(duplex=False)
        child = ctx.Process(target=save_forever, args=(str(run), (a, b), send), daemon=True)
        child.start()
        send.close()
        if not receive.poll(60):
            child.kill()
            raise RuntimeError("the saving child never started")
        receive.recv()
        time.sleep(rng.uniform(0, max_delay_s))
        child.kill()  # SIGKILL
        child.join()
        receive.close()
        counts["kills"] += 1
        before = _consistent(run)
        counts["consistent_before_load"] += before
        try:
            loaded = load_model(run)
        except Exception as exc:  # a kill that leaves no loadable checkpoint: the failure counted here
            problems.append(f"kill {k}: {type(exc).__name__}: {exc}")
            continue
        counts["loadable"] += 1
        state = loaded.state_dict()
        same = [m for m in (a, b) if m.config == loaded.config
                and all(torch.equal(v, state[n]) for n, v in m.state_dict().items())]  # fmt: skip
        if same:
            counts["exact"] += 1
        else:
            problems.append(f"kill {k}: the checkpoint is neither model bit for bit")
        after = _consistent(run)
        counts["consistent_after_load"] += after
        counts["rolled_forward"] += after and not before
        if not after:
            problems.append(f"kill {k}: config.json or metrics.json describe another save than the weights")
        save = json.loads(_header(run / WEIGHTS)["__metadata__"]["train"])["save"]
        counts["changed_since_last_kill"] += save != last_save
        last_save = save
    counts["temp_files_left"] = len(list(run.glob(".*.tmp"))) + len(list(run.glob(".*.pending")))
    counts["seconds"] = round(time.perf_counter() - start, 1)
    counts["problems"] = problems
    return counts
