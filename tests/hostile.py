"""A generated corpus of broken and hostile trajectory files, for the tests and benchmarks/bad_files.py.

Each case is one .npz written from a valid pendulum file with one thing wrong: pickled payloads
(whose unpickling would create a marker file), object arrays in every key, headers declaring
shapes far beyond memory, NaN and inf in each float array, wrong ranks and dtypes, truncations,
nested and forged zips, and wrong `meta` types. `unpickled(corpus_dir)` tells whether any payload
ever ran.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

MARKER = "UNPICKLED"  # created in the corpus folder by any payload that runs


class _Payload:
    """Pickles as a call that creates the marker file: proof, if it exists, that a file was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _valid() -> dict[str, np.ndarray]:
    from hwm_studio.data.simulate import simulate
    from hwm_studio.systems import get_system

    data = simulate(get_system("pendulum"), 3, 12, control="random", seed=0, frame_size=8)
    arrays = {"q": data.q, "p": data.p, "dt": np.asarray(float(data.dt)), "u": data.u, "frames": data.frames,
              "energy": data.energy, "meta": np.asarray(json.dumps(data.meta))}  # fmt: skip
    return {k: v for k, v in arrays.items() if v is not None}


def _npz(arrays: dict[str, object], compress: bool = False) -> bytes:
    """An .npz of `arrays`; a value of bytes is written as that entry's raw content (forged .npy)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as zf:
        for name, value in arrays.items():
            if isinstance(value, bytes):
                zf.writestr(name if "." in name else f"{name}.npy", value)
            else:
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.asanyarray(value), allow_pickle=True)
                zf.writestr(f"{name}.npy", buf.getvalue())
    return out.getvalue()


def _forged_header(shape: tuple[int, ...], descr: str = "<f8", payload: int = 64) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue() + b"\0" * payload


def _patch_central_size(blob: bytes, entry: str, field: str, value: int) -> bytes:
    """Rewrite one central-directory size field of `entry` ('compressed' or 'uncompressed')."""
    sig = b"PK\x01\x02"
    i = 0
    while (i := blob.find(sig, i)) >= 0:
        name_len = struct.unpack_from("<H", blob, i + 28)[0]
        name = blob[i + 46 : i + 46 + name_len].decode()
        if name == entry:
            offset = i + (20 if field == "compressed" else 24)
            return blob[:offset] + struct.pack("<I", value) + blob[offset + 4 :]
        i += 4
    raise ValueError(f"no entry {entry}")


def cases(folder: Path) -> dict[str, bytes]:
    """name -> file bytes: every case of the corpus (all must be refused)."""
    marker = folder / MARKER
    base = _valid()

    def variant(**changes: object) -> bytes:
        arrays: dict[str, object] = dict(base)
        for k, v in changes.items():
            if v is None:
                arrays.pop(k, None)
            else:
                arrays[k] = v
        return _npz(arrays)

    def meta(value: object) -> bytes:
        return variant(meta=np.asarray(value if isinstance(value, str) else json.dumps(value)))

    out: dict[str, bytes] = {}
    payload = np.empty(1, dtype=object)
    payload[0] = _Payload(marker)
    for key in ("q", "p", "dt", "u", "frames", "energy", "meta"):
        out[f"pickled payload in {key}"] = variant(**{key: payload})
        out[f"object array in {key}"] = variant(**{key: np.array([[1.0, "x"]], dtype=object)})
    out["pickled payload as an extra array"] = variant(extra=payload)
    for key in ("q", "p", "u", "frames", "energy"):
        out[f"huge declared shape in {key}"] = variant(**{key: _forged_header((10**7, 10**6, 1, 1))})
    out["huge declared 1-D q"] = variant(q=_forged_header((2**62,)))
    out["negative declared shape"] = variant(q=_forged_header((-3, 12, 1, 1)))
    out["declared shape larger than its bytes"] = variant(q=_forged_header((3, 12, 1, 1), payload=8))
    out["garbage .npy header"] = variant(q=b"\x93NUMPY\x01\x00\x10\x00{'descr': oops}      \n" + b"\0" * 32)
    out["not an .npy entry"] = variant(q=b"hello, not an array")
    for key in ("q", "p", "u", "energy"):
        for bad in ("nan", "inf"):
            a = np.array(base[key], dtype=float)
            a.flat[len(a.flat) // 2] = float(bad)
            out[f"{bad} in {key}"] = variant(**{key: a})
    out["nan dt"] = variant(dt=np.asarray(float("nan")))
    out["inf dt"] = variant(dt=np.asarray(float("inf")))
    out["zero dt"] = variant(dt=np.asarray(0.0))
    out["negative dt"] = variant(dt=np.asarray(-0.1))
    out["dt as an array"] = variant(dt=np.ones(3))
    out["dt as text"] = variant(dt=np.asarray("0.1"))
    out["q of rank 3"] = variant(q=base["q"][..., 0], p=base["p"][..., 0])
    out["q of rank 5"] = variant(q=base["q"][..., None], p=base["p"][..., None])
    out["p of another shape"] = variant(p=base["p"][:, :-1])
    out["u of rank 2"] = variant(u=base["u"][..., 0])
    out["frames of rank 4"] = variant(frames=base["frames"][..., 0])
    out["energy of rank 1"] = variant(energy=base["energy"][0])
    out["one time point"] = variant(q=base["q"][:, :1], p=base["p"][:, :1], u=None, frames=None, energy=None)
    out["integer q"] = variant(q=base["q"].astype(np.int64))
    out["complex q"] = variant(q=base["q"].astype(np.complex128))
    out["boolean p"] = variant(p=base["p"] > 0)
    out["text q"] = variant(q=base["q"].astype(str))
    out["integer u"] = variant(u=base["u"].astype(np.int32))
    out["float frames"] = variant(frames=base["frames"].astype(np.float32))
    out["int16 frames"] = variant(frames=base["frames"].astype(np.int16))
    out["complex energy"] = variant(energy=base["energy"].astype(np.complex64))
    out["record array q"] = variant(q=np.zeros(3, dtype=[("a", "<f8"), ("b", "<i4")]))
    out["missing q"] = variant(q=None)
    out["missing dt"] = variant(dt=None)
    good = variant()
    for frac in (0.1, 0.5, 0.9):
        out[f"truncated at {int(frac * 100)}%"] = good[: int(len(good) * frac)]
    out["last byte cut"] = good[:-1]
    out["empty file"] = b""
    out["not a zip"] = b"just some text"
    out["empty zip"] = _npz({})
    out["zip inside as an entry"] = variant(**{"inner.npz": good})
    out["zip inside as q"] = variant(q=good)
    out["entry in a folder"] = variant(**{"sub/q.npy": good[:100]})
    out["entry size forged larger"] = _patch_central_size(good, "q.npy", "uncompressed", 0xF0000000)
    out["entry compressed size beyond the file"] = _patch_central_size(good, "p.npy", "compressed", 0xF0000000)
    out["too many entries"] = variant(**{f"x{i}": np.zeros(1) for i in range(80)})
    out["meta is a list"] = meta([1, 2])
    out["meta is a number"] = meta(3)
    out["meta is a JSON string"] = meta('"pendulum"')
    out["meta is not JSON"] = meta("{system: pendulum")
    out["meta nested too deep"] = meta("[" * 100000 + "]" * 100000)
    out["meta as bytes"] = variant(meta=np.asarray(b"{}"))
    out["meta params a list"] = meta({"system": "pendulum", "params": [1, 2]})
    out["meta params text"] = meta({"system": "pendulum", "params": {"g": "ten"}})
    out["meta params NaN"] = meta('{"system": "pendulum", "params": {"g": NaN}}')
    out["meta params unknown name"] = meta({"system": "pendulum", "params": {"warp": 9.0}})
    out["meta system a number"] = meta({"system": 7})
    out["meta system empty"] = meta({"system": ""})
    out["meta entities wrong count"] = meta({"system": "pendulum", "entities": ["a", "b", "c"]})
    out["meta entities a dict"] = meta({"entities": {"a": 1}})
    out["meta names a system of another shape"] = meta({"system": "chain"})
    return out


def write_corpus(folder: Path) -> dict[str, Path]:
    """Write every case into `folder`; name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for i, (name, blob) in enumerate(cases(folder).items()):
        path = folder / f"bad{i:03d}.npz"
        path.write_bytes(blob)
        paths[name] = path
    return paths


def unpickled(folder: Path) -> bool:
    return (folder / MARKER).exists()


def run_clean(call: Callable[[], object]) -> tuple[bool, str]:
    """(refused cleanly, what it said): any exception escaping `call` is a traceback, not a refusal."""
    try:
        call()
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}"
    return True, ""
