"""Closed sessions' freed memory back to the operating system.

glibc keeps the pages a process frees inside its heap unless they sit at its very top; a served
studio's sessions leave the heap fragmented, so RSS grew ~150 MB over the first ten sessions and
stayed there although nothing was alive (issue 16). `malloc_trim(0)` hands every free page back.
It runs after the next full garbage collection, the one that frees the session's objects (Panel
schedules it a few seconds after a session is destroyed): no extra collection is paid for.
"""

from __future__ import annotations

import ctypes
import functools
import gc

trims = 0  # heap trims done (read by the tests and benchmarks/sessions_memory.py)
_pending = False


def trim_after_next_collection() -> None:
    """A session closed: once the next full collection has freed its objects, trim the heap."""
    global _pending
    _pending = True
    if _after_collection not in gc.callbacks:
        gc.callbacks.append(_after_collection)


def trim_heap() -> bool:
    """Return free heap pages to the OS now; False where the C library has no malloc_trim (not glibc)."""
    global trims
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    trims += 1
    return True


@functools.cache
def _malloc_trim():  # noqa: ANN202 (a ctypes function or None)
    try:
        return ctypes.CDLL(None).malloc_trim  # the C library the interpreter runs on
    except (AttributeError, OSError, TypeError):  # not glibc; Windows has no CDLL(None)
        return None


def _after_collection(phase: str, info: dict) -> None:
    global _pending
    if _pending and phase == "stop" and info.get("generation") == 2:
        _pending = False
        trim_heap()
