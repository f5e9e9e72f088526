"""What the benchmark scripts share: a figure over seeds as "mean (min–max)", and results files
that keep the rows a run did not redo."""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable
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
