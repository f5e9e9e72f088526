"""The data-efficiency benchmark runs end to end at a tiny size and says what it measured."""

from __future__ import annotations

import json
import subprocess
import sys


def test_the_data_efficiency_benchmark_runs_end_to_end_at_a_tiny_size(tmp_path) -> None:
    out = tmp_path / "efficiency.json"
    args = ["--systems", "pendulum", "--kinds", "hwm", "mlp", "--sizes", "2", "8", "--seeds", "0",
            "--steps", "5", "--points", "20", "--scored-steps", "100", "--threads", "1", "--out", str(out)]  # fmt: skip
    res = subprocess.run([sys.executable, "benchmarks/data_efficiency.py", *args], capture_output=True, text=True,
                         timeout=600)  # fmt: skip
    assert res.returncode == 0, res.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [(r["model"], r["trajectories"]) for r in rows] == [("hwm", 2), ("mlp", 2), ("hwm", 8), ("mlp", 8)]
    assert all(0 <= r["vpt"] <= 100 and r["steps"] == 5 and r["scored_steps"] == 100 for r in rows)
    assert out.with_suffix(".png").stat().st_size > 10_000
    assert "MLP trajectories to reach the HWM's VPT at 8: " in res.stdout


def test_trajectories_to_match_reads_the_mean_over_seeds_and_says_when_never() -> None:
    from hwm_studio.training.efficiency import match_sentence, trajectories_to_match

    def row(model, n, seed, vpt):
        return {"system": "s", "model": model, "trajectories": n, "seed": seed, "vpt": vpt}

    rows = [row("hwm", 8, 0, 100.0), row("hwm", 8, 1, 60.0)]  # target: the mean, 80
    rows += [row("mlp", n, s, v) for n, s, v in [(8, 0, 10), (8, 1, 12), (32, 0, 90), (32, 1, 60), (64, 0, 81),
                                                 (64, 1, 79)]]  # fmt: skip
    assert trajectories_to_match(rows, "s") == (64, 80.0)  # 32 reaches 80 on one seed only: its mean is 75
    assert match_sentence(rows, "s").startswith("64 (the hwm's VPT at 8: 80.0 steps)")
    slow = [r for r in rows if r["trajectories"] != 64]
    assert trajectories_to_match(slow, "s") == (None, 80.0)
    assert match_sentence(slow, "s").startswith("more than 32")
    assert match_sentence([r for r in rows if r["model"] == "mlp"], "s") == "no hwm row at 8 trajectories"


def test_a_broken_results_file_is_a_clear_error_and_the_studio_shows_it(tmp_path, monkeypatch) -> None:
    import pytest

    from hwm_studio.training import efficiency

    assert efficiency.load_results(tmp_path / "none.json") is None
    for text in ('{"rows": [', "[1, 2]", '{"steps": 5}'):
        (tmp_path / "bad.json").write_text(text)
        with pytest.raises(ValueError, match=r"bad\.json is not a data-efficiency results file"):
            efficiency.load_results(tmp_path / "bad.json")
    pytest.importorskip("panel")
    from hwm_studio.ui import studio as studio_module
    from hwm_studio.workspace import Workspace

    monkeypatch.setattr(studio_module, "load_results", lambda: efficiency.load_results(tmp_path / "bad.json"))
    studio = studio_module.Studio(workspace=Workspace(tmp_path / "ws"))
    assert "Cannot read the data-efficiency results" in studio.efficiency.note.object
    assert studio.session.result is not None  # the rest of the studio works
