"""The interim ground-truth explorer as a component (no browser): controls change the data sources."""

from __future__ import annotations

import numpy as np
import pytest

pn = pytest.importorskip("panel")

from hwm_studio.ui.explorer import SimulatorExplorer  # noqa: E402


def test_changing_the_system_rebuilds_phase_curves_per_entity() -> None:
    ex = SimulatorExplorer()
    assert len(ex._phase_src.data["q"]) == 1
    ex.system = "chain"
    assert len(ex._phase_src.data["q"]) == 4
    assert len(ex._ledger_src.data["t"]) == ex.steps + 1


def test_damping_shows_up_as_dissipated_energy_and_the_ledger_balances() -> None:
    ex = SimulatorExplorer(system="pendulum", integrator="yoshida4", dt=0.02)
    assert np.allclose(ex._ledger_src.data["dissipated"], 0.0)
    ex.damping = 0.5
    led = ex._ledger_src.data
    assert led["dissipated"][-1] > 1.0
    assert np.abs(led["balance_error"]).max() < 1e-2 * led["total"][0]


def test_action_does_work_and_frames_follow_the_player() -> None:
    ex = SimulatorExplorer(system="spring", steps=100)
    ex.action = 0.8
    assert abs(ex._ledger_src.data["control_work"][-1]) > 1e-3
    first = ex._frame_src.data["image"][0].copy()
    ex.frame = 50
    assert not np.array_equal(first, ex._frame_src.data["image"][0])
