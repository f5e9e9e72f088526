"""The data-efficiency benchmark runs end to end at a tiny size and says what it measured."""

from __future__ import annotations

import json
import subprocess
import sys


def test_the_data_efficiency_benchmark_runs_end_to_end_at_a_tiny_size(tmp_path) -> None:
    out = tmp_path / "efficiency.json"
    args = ["--systems", "pendulum", "--kinds", "hwm", "mlp", "--sizes", "2", "8", "--seeds", "0",
            "--steps", "5", "--points", "20", "--threads", "1", "--out", str(out)]  # fmt: skip
    res = subprocess.run([sys.executable, "benchmarks/data_efficiency.py", *args], capture_output=True, text=True,
                         timeout=600)  # fmt: skip
    assert res.returncode == 0, res.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [(r["model"], r["trajectories"]) for r in rows] == [("hwm", 2), ("mlp", 2), ("hwm", 8), ("mlp", 8)]
    assert all(0 <= r["vpt"] <= 1000 and r["steps"] == 5 for r in rows)
    assert out.with_suffix(".png").stat().st_size > 10_000
    assert "MLP trajectories to reach the HWM's VPT at 8: " in res.stdout
    # a rerun of one size replaces that size's rows and keeps the other's
    again = [a for a in args if a != "2"]  # --sizes 8
    assert subprocess.run([sys.executable, "benchmarks/data_efficiency.py", *again], timeout=600).returncode == 0
    assert sorted(r["trajectories"] for r in json.loads(out.read_text())["rows"]) == [2, 2, 8, 8]
