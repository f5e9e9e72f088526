"""What the benchmark scripts share: a figure over seeds as "mean (min–max)", and results files
that keep the rows a run did not redo."""

from __future__ import annotations

import fcntl
import json
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def spread(values: list[float], fmt: str) -> str:
    """One value as itself; several (seeds) as their mean and range."""
    if not values:
        return ""
    lo, hi, mid = min(values), max(values), sum(values) / len(values)
    return format(mid, fmt) if len(values) == 1 else f"{mid:{fmt}} ({lo:{fmt}}–{hi:{fmt}})"


def merged_rows(out: Path, rows: list[dict[str, Any]], key: Callable[[dict[str, Any]], Hashable]) -> list[dict]:
    """`rows` after the rows of `out` (if it exists) whose key this run did not produce."""
    if not out.exists():
        return rows
    done = {key(r) for r in rows}
    return [r for r in json.loads(out.read_text())["rows"] if key(r) not in done] + rows


@contextmanager
def locked(out: Path) -> Iterator[None]:
    """Hold `out`'s sidecar lock, so two runs of one script (say, two systems on two cores) that
    finish together merge into the same results file without one overwriting the other's rows."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_name(out.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        yield
