"""The studio as a component, without a browser: set controls, assert what the data sources hold."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

pn = pytest.importorskip("panel")

from bokeh.events import Tap  # noqa: E402

from hwm_studio.data.format import save_trajectories  # noqa: E402
from hwm_studio.data.simulate import simulate  # noqa: E402
from hwm_studio.systems import get_system  # noqa: E402
from hwm_studio.training.fit import TrainConfig  # noqa: E402
from hwm_studio.training.job import TrainingJob  # noqa: E402
from hwm_studio.ui.studio import LIVE, Studio  # noqa: E402
from hwm_studio.workspace import Workspace, WorkspaceError  # noqa: E402


@pytest.fixture
def studio(tmp_path):
    return Studio(workspace=Workspace(tmp_path / "ws"))


def test_opens_on_the_pretrained_default_with_every_view_filled(studio) -> None:
    assert studio.session.model_name == "hwm"
    assert not studio.explore.couplings.pane.visible  # one pendulum: no pairs to draw
    assert studio.session.baseline_name == "mlp"
    r = studio.session.result
    assert r is not None
    assert len(studio.explore.phase.truth.data["q"]) == studio.explore.steps + 1
    assert len(studio.explore.phase.model.data["q"]) == studio.explore.steps + 1
    assert len(studio.explore.phase.arrows.data["x0"]) > 0
    assert len(studio.explore.energy.source.data["total"]) == studio.explore.steps + 1
    assert np.isfinite(studio.explore.energy.source.data["balance_error"]).all()
    assert studio.explore.video.source.data["image"][0].shape == (64, 64)
    assert "VPT" in studio.explore.metrics.summary.object
    # numbers on screen are the scene's numbers
    np.testing.assert_array_equal(studio.explore.energy.source.data["truth_total"], r.truth_energy)


def test_action_slider_changes_phase_portrait_and_energy(studio) -> None:
    q_before = np.array(studio.explore.phase.model.data["q"])
    work_before = np.array(studio.explore.energy.source.data["control_work"])
    studio.explore.action_0 = 0.8
    assert not np.allclose(q_before, studio.explore.phase.model.data["q"])
    assert np.abs(studio.explore.energy.source.data["control_work"]).max() > np.abs(work_before).max() + 1e-3


def test_knobs_reach_the_model(studio) -> None:
    studio.explore.dissipation_scale = 0.0
    studio.explore.residual_scale = 0.0
    assert np.allclose(studio.explore.energy.source.data["dissipated"], 0.0)
    assert np.allclose(studio.explore.energy.source.data["residual_work"], 0.0)
    h = np.array(studio.explore.energy.source.data["total"])
    assert np.abs(h - h[0]).max() < 0.02 * np.abs(h).max()  # pure Hamiltonian: energy conserved
    studio.explore.dissipation_scale = 2.0
    assert studio.explore.energy.source.data["dissipated"][-1] > 0
    studio.explore.integrator = "yoshida4"
    assert studio.session.scene.model.knobs()["integrator"] == "yoshida4"


def test_click_sets_the_initial_state_and_reset_restores_it(studio) -> None:
    studio.explore._on_tap(Tap(model=studio.explore.phase.figure, x=0.5, y=-1.0))
    assert studio.explore.phase.start.data["q"][0] == pytest.approx(0.5)
    assert studio.explore.phase.start.data["p"][0] == pytest.approx(-1.0)
    assert studio.session.result.truth_q[0, 0, 0] == pytest.approx(0.5)
    studio.explore.reset_initial()
    assert studio.explore.phase.start.data["q"][0] != pytest.approx(0.5)


def test_systems_and_entities_switch(studio) -> None:
    studio.session.system = "chain"
    assert studio.explore.param.entity.objects == [f"chain[{i}]" for i in range(4)]
    assert studio.session.result.truth_q.shape[1] == 4
    studio.explore.entity = "chain[2]"
    np.testing.assert_allclose(studio.explore.phase.truth.data["q"], studio.session.result.truth_q[:, 2, 0])
    # the coupling graph: one line per pair the model holds, labelled with the scene's own numbers
    assert studio.explore.couplings.pane.visible
    edges, couplings = studio.explore.couplings.edges.data, studio.session.result.couplings
    assert len(couplings) >= 3
    assert edges["label"] == [f"{v:.2f}" for v in couplings.values()]
    assert list(studio.explore.couplings.nodes.data["name"]) == studio.explore.param.entity.objects
    studio.session.system = "three_body"
    studio.explore.coord = 1
    np.testing.assert_allclose(studio.explore.phase.truth.data["q"], studio.session.result.truth_q[:, 0, 1])


def test_compare_shows_both_models_from_the_same_state(studio) -> None:
    assert studio.session.baseline is not None
    np.testing.assert_array_equal(studio.session.baseline.truth_q, studio.session.result.truth_q)
    assert not np.allclose(studio.compare.base_phase.model.data["p"], studio.compare.model_phase.model.data["p"])
    assert len(studio.explore.metrics.other.data["error"]) == studio.explore.steps + 1


def test_frames_follow_the_player(studio) -> None:
    first = studio.explore.video.source.data["image"][0].copy()
    studio.session.frame = 150
    assert not np.array_equal(first, studio.explore.video.source.data["image"][0])
    assert studio.explore.phase.now.data["q"][0] == pytest.approx(studio.session.result.truth_q[150, 0, 0])


def test_bad_workspace_files_give_a_message_and_the_session_keeps_working(studio, tmp_path) -> None:
    ws = studio.workspace
    (ws.root / "broken.npz").write_bytes(b"not a zip file")
    studio.training.data.options = ["simulate the selected system", *ws.data_files()]
    studio.training.data.value = "broken.npz"
    studio.training.start()
    assert "Cannot train on this data" in studio.training.status.object
    assert studio.training.job is None
    studio.explore.action_0 = 0.3  # still alive
    assert studio.session.result is not None
    with pytest.raises(WorkspaceError):
        ws.path("../outside.npz")
    with pytest.raises(WorkspaceError):
        ws.path("/etc/passwd")


def test_training_job_streams_metrics_pauses_and_stops(tmp_path) -> None:
    data = simulate(get_system("pendulum"), 16, 30, control="random", seed=0)
    job = TrainingJob(data, "hwm", TrainConfig(steps=100_000, val_every=20, device="cpu"))
    job.start()
    deadline = time.time() + 60
    while time.time() < deadline and not any(e["event"] == "validation" for e in list(job.events.queue)):
        time.sleep(0.1)
    job.pause()
    time.sleep(0.5)
    n = len(job.drain())
    time.sleep(0.5)
    assert len(job.drain()) <= 1  # paused: at most the step that was in flight
    job.resume()
    time.sleep(0.5)
    assert len(job.drain()) > 0
    job.stop()
    job.join(10)
    assert not job.alive
    assert job.result is not None
    assert job.result.status == "stopped"
    assert n > 0
    version, weights = job.latest_weights()
    assert version > 0
    assert all(torch.isfinite(w).all() for w in weights.values())
    path = job.save(tmp_path / "run")
    assert (path / "weights.safetensors").exists()


def test_in_app_training_feeds_the_live_model(studio) -> None:
    studio.training.steps.value = 60
    studio.training.start()
    assert studio.training.job is not None
    studio.training.job.join(120)
    studio.training.poll()
    assert len(studio.training.loss_source.data["loss"]) > 0
    assert LIVE in studio.session.param.model_name.objects
    studio.session.model_name = LIVE
    assert studio.session.result is not None
    studio.training.save_name.value = "from_ui"
    studio.training.save()
    assert "runs/from_ui" in studio.training.status.object
    assert "run: from_ui" in studio.session.param.model_name.objects
    studio.close()


def test_a_workspace_data_file_trains(studio) -> None:
    data = simulate(get_system("pendulum"), 8, 30, control="random", seed=1)
    save_trajectories(data, studio.workspace.root / "pend.npz")
    studio.training.data.options = ["simulate the selected system", *studio.workspace.data_files()]
    studio.training.data.value = "pend.npz"
    studio.training.steps.value = 20
    studio.training.start()
    studio.training.job.join(60)
    studio.training.poll()
    assert "Training completed" in studio.training.status.object


def test_a_pixel_model_shows_its_decoded_frames_and_its_latent_over_the_truth(studio) -> None:
    studio.session.system = "pendulum"
    pixel = [o for o in studio.session.param.model_name.objects if o.startswith("hwm-pixels")]
    assert pixel, "the HGN pendulum pixel model is offered for the pendulum"
    studio.session.model_name = pixel[0]
    r = studio.session.result
    assert r.reads_frames
    assert r.vpt is None
    assert r.context == 2
    k = r.context
    # the phase portrait draws the truth, and the model's latent through the map fitted on its
    # readings of the true frames: its predicted angle follows the true one
    np.testing.assert_array_equal(studio.explore.phase.truth.data["q"], r.truth_q[:, 0, 0])
    np.testing.assert_array_equal(studio.explore.phase.model.data["q"], r.model_q[:, 0, 0])
    assert np.isnan(r.model_q[:k]).all()
    assert np.isfinite(r.model_q[k:]).all()
    gap = np.arctan2(
        np.sin(r.model_q[k : k + 20] - r.truth_q[k : k + 20]), np.cos(r.model_q[k : k + 20] - r.truth_q[k : k + 20])
    )
    assert np.abs(gap).max() < 0.2
    assert len(studio.explore.phase.arrows.data["x0"]) > 0
    assert "aligned" in studio.explore.phase.figure.title.text
    # its bodies in the 3D view are where its decoder draws them, beside the truth's
    bob = get_system("pendulum").positions(torch.as_tensor(r.truth_q[k : k + 20])).numpy()
    assert np.abs(r.model_positions[k : k + 20] - bob).max() < 0.2
    # the video shows truth | decoded | error at the model's own frame size; the error is computed
    studio.session.frame = 40
    truth, _decoded, _err = studio.explore.video.source.data["image"]
    assert truth.shape == (32, 32)
    np.testing.assert_array_equal(r.model_frames[40], studio.session.scene.frames(r, 40)[1])
    mse = ((r.model_frames[40].astype(float) - r.truth_frames[40]) / 255) ** 2
    assert r.error[40] == pytest.approx(mse.mean())
    assert "pixel MSE" in studio.explore.metrics.summary.object
    # the same model decodes what it predicts: a different start gives different frames
    before = r.model_frames.copy()
    studio.explore.seed = 3
    assert not np.array_equal(before, studio.session.result.model_frames)
    # the unstructured pixel baseline, picked with it, compares like with like
    assert studio.session.baseline_name.startswith("mlp-pixels")
    assert studio.session.baseline is not None
    assert studio.session.baseline.reads_frames
    assert len(studio.explore.metrics.other.data["error"]) == studio.explore.steps + 1


def test_the_train_tab_offers_pixel_kinds_and_shows_a_runs_warning(studio) -> None:
    """A training run whose model draws only the background says so in the Train tab."""
    assert {"hwm-pixels", "mlp-pixels"} <= set(studio.training.kind.options)
    studio.training.kind.value = "hwm-pixels"  # the learning rate follows the kind's default
    assert studio.training.lr.value == pytest.approx(1e-3)
    studio.training.kind.value = "hwm"
    assert studio.training.lr.value == pytest.approx(3e-3)

    class StuckJob:  # the events a TrainingJob of a stuck pixel model streams
        alive, paused = True, False

        def drain(self) -> list[dict]:
            return [{"event": "step", "step": 50, "loss": 0.01},
                    {"event": "validation", "step": 50, "val_rollout_mse": 0.005,
                     "warning": "the model draws little more than the background"}]  # fmt: skip

        def latest_weights(self) -> tuple[int, None]:
            return 0, None

    studio.training.job = StuckJob()
    studio.training.poll()
    assert "Warning:** the model draws little more than the background" in studio.training.status.object
    studio.training.job = None


def test_plan_draws_candidates_elites_and_the_chosen_future(studio) -> None:
    """Plan: candidates (a drawn subset), elites and the chosen plan's predicted future, all from
    the planner's own rollouts in the selected model, starting at the true state of the frame."""
    plan = studio.planning
    plan.candidates, plan.iterations, plan.horizon = 64, 2, 20
    drawn = plan.plan()
    assert drawn is not None, plan.status.object
    assert len(plan.candidates_src.data["xs"]) == 64
    assert len(plan.elites_src.data["xs"]) == 6  # 64 // 10
    np.testing.assert_allclose(plan.chosen_src.data["q"][0], studio.session.result.truth_q[0, 0, 0], rtol=1e-5)
    assert len(plan.chosen_src.data["q"]) == 21
    assert len(plan.plan_u_src.data["u"]) == 20
    bound = get_system("pendulum").action_bound
    assert np.abs(drawn.actions).max() <= bound + 1e-9
    assert np.isfinite(drawn.best_cost)
    # a pixel model is refused with a reason, not planned with
    studio.session.model_name = next(o for o in studio.session.param.model_name.objects if o.startswith("hwm-pixels"))
    assert plan.plan() is None
    assert "state model" in plan.status.object


def test_mpc_runs_closed_loop_on_the_truth_and_reports_its_return(studio) -> None:
    plan = studio.planning
    plan.candidates, plan.iterations, plan.horizon, plan.mpc_steps = 64, 2, 15, 6
    plan.run_mpc()
    plan.wait(120)
    assert len(plan.executed_q) == 7  # the start and six true steps
    assert len(plan.done_u_src.data["u"]) == 6
    assert "MPC finished: 6 steps" in plan.status.object
    # the return is minus the cost summed on the true transitions: recompute it from them
    from hwm_studio.planning.presets import preset_cost

    cost, _ = preset_cost(plan.cost, get_system("pendulum"), plan.effort, plan.target_energy)
    q = torch.as_tensor(np.stack(plan.executed_q), dtype=torch.float64)
    p = torch.as_tensor(np.stack(plan.executed_p), dtype=torch.float64)
    u = torch.as_tensor(np.stack(plan.executed_u), dtype=torch.float64)
    total = sum(float(cost(q[None, t : t + 2], p[None, t : t + 2], u[None, t : t + 1], None)[0]) for t in range(6))
    assert plan.episode_return == pytest.approx(-total, rel=1e-9)


def test_the_data_efficiency_tab_draws_the_benchmarks_rows_for_the_system(studio) -> None:
    view = studio.efficiency
    view.update("pendulum", None)
    assert "No data-efficiency rows for **pendulum**" in view.note.object
    rows = [{"system": "pendulum", "model": m, "trajectories": n, "seed": s, "vpt": v, "energy_mse": e}
            for m, n, s, v, e in [("hwm", 8, 0, 90.0, 1e-3), ("hwm", 8, 1, 70.0, 3e-3), ("mlp", 8, 0, 10.0, 0.5),
                                  ("mlp", 32, 0, 85.0, None)]]  # fmt: skip
    results = {"rows": rows, "steps": 500, "test_trajectories": 32, "scored_steps": 1000, "machine": "here"}
    view.update("pendulum", results)
    hwm = view.sources[("vpt", "hwm")].data
    assert (hwm["n"], hwm["mean"], hwm["lo"], hwm["hi"]) == ([8], [80.0], [70.0], [90.0])
    assert view.sources[("energy_mse", "mlp")].data["n"] == [8]  # a diverged run has no energy to draw
    assert "MLP trajectories to reach the HWM's VPT at 8: 32 (the hwm's VPT at 8: 80.0 steps)" in view.note.object
    view.update("chain", results)
    assert view.sources[("vpt", "hwm")].data["n"] == []


def test_the_play_tab_follows_the_selection_and_is_freed_with_the_session(studio) -> None:
    play = studio.play
    assert play.save_episode() is None  # nothing played yet: a message, not a file or a traceback
    assert "nothing is playing" in play.status
    assert play.start()
    assert play.player.model is studio.session.scene.model
    play.step_once()
    assert play.player.steps == 1
    name = play.export_video()  # model | truth as mp4 in the workspace
    assert name.endswith(".mp4")
    assert studio.workspace.path(name).stat().st_size > 0
    label = next(o for o in studio.session.param.model_name.objects if o != "hwm")
    studio.session.model_name = label  # another model: the old player goes, and the loop waits for a start
    assert play.player is None
    assert play.paused
    studio.session.system = "spring"
    pixel = next(o for o in studio.session.param.model_name.objects if o.startswith("hwm-pixels"))
    studio.session.model_name = pixel
    assert play.start()  # a pixel model plays on the system it was trained on
    assert play.player.pixels
    assert play.player.system.params["k"] == studio.session.scene.model.config.system_params["k"]
    studio.close()
    assert play.player is None
    assert not play.looping


def test_each_tab_is_a_component_reading_one_session(tmp_path) -> None:
    """Explore, Compare, Plan and Play need only the shared session: Explore built on a bare Session
    publishes its rollout there, Compare draws what is published, Plan starts from the session's
    frame and Play drives the session's model; the studio only composes and wires them."""
    from hwm_studio.ui.compare import ComparePanel
    from hwm_studio.ui.explore import ExplorePanel
    from hwm_studio.ui.session import Session

    session = Session(Workspace(tmp_path / "ws"), system="chain")
    session.refresh_models()
    session.load_models()
    explore = ExplorePanel(session, show_3d=False)
    compare = ComparePanel(session, explore.metrics)
    explore.system_changed()
    explore.models_changed()
    r = session.result
    assert r is not None
    assert r.truth_q.shape[1] == 4
    np.testing.assert_array_equal(compare.model_phase.truth.data["q"], r.truth_q[:, 0, 0])
    explore.entity = "chain[3]"  # one recompute: a new rollout, drawn by both tabs on the new plane
    assert session.result is not r
    assert session.rollout.entity == 3
    np.testing.assert_array_equal(compare.model_phase.truth.data["q"], session.result.truth_q[:, 3, 0])
    assert explore.step(40) == session.frame == 40
    q0, _ = session.true_state()
    np.testing.assert_array_equal(q0, session.result.truth_q[40])

    studio = Studio(workspace=Workspace(tmp_path / "ws2"))
    studio.session.system = "chain"  # one change reaches every tab
    assert studio.explore.param.entity.objects == [f"chain[{i}]" for i in range(4)]
    assert studio.session.rollout.result.truth_q.shape[1] == 4
    studio.explore.step(25)
    ctx = studio.plan_context()
    np.testing.assert_array_equal(ctx.q0, studio.session.result.truth_q[25])
    assert ctx.model is studio.session.model
    assert studio.play_source()[0] is studio.session.model
    from hwm_studio.ui import notebook as nb

    with pytest.raises(ValueError, match="no studio control named 'wrong'"):
        nb.set_controls(studio, wrong=1)
    studio.close()


def test_a_closed_session_frees_what_it_took_and_a_new_one_traces_nothing(tmp_path) -> None:
    """Issue 16: a served studio grew ~70 MB with every session because each traced its own graphs
    (torch never frees one) and left its VTK scene open. A second session on the same checkpoints
    traces no new graph, and a closed one is garbage (nothing global holds it)."""
    import gc
    import weakref

    from hwm_studio.physics.fused import shared_graph_count

    ws = Workspace(tmp_path / "ws")
    first = Studio(workspace=ws)
    first.__panel__()
    first.explore.recompute()
    traced = shared_graph_count()
    second = Studio(workspace=ws)
    second.__panel__()
    second.explore.recompute()
    assert shared_graph_count() == traced
    plotter = second.explore.entity3d.plotter
    second.close()
    assert plotter.ren_win is None  # the offscreen render window is released
    assert second.session.model is None
    gone = weakref.ref(second)
    del second
    gc.collect()
    assert gone() is None
    first.close()


def test_a_served_session_closing_closes_its_studio_and_trims_the_heap_after_the_next_collection(tmp_path) -> None:
    """Issue 16: what a closed session freed stayed in glibc's fragmented heap (RSS +150 MB over ten
    sessions, nothing alive). Destroying the session closes its Studio, and the full collection
    that frees its objects is followed by a heap trim."""
    import gc

    from bokeh.document import Document
    from panel.io.state import set_curdoc

    from hwm_studio.ui import heap
    from hwm_studio.ui.app import studio_page

    can_trim = heap.trim_heap()  # False off glibc: then nothing is trimmed
    doc, built = Document(), []
    with set_curdoc(doc):
        studio_page(Workspace(tmp_path / "ws"), on_studio=built.append)
        if not built:  # the Studio is built when the browser connects (tests/test_sessions.py)
            pn.state._on_load(doc)  # what Panel does once the websocket is open
    (studio,) = built
    studio.__panel__()
    plotter = studio.explore.entity3d.plotter
    trims = heap.trims
    for callback in list(doc.session_destroyed_callbacks):  # what Bokeh does when the session is discarded
        callback(None)
    assert plotter.ren_win is None
    assert studio.session.model is None
    assert heap.trims == trims  # not yet: the session's objects are freed by the next full collection
    gc.collect()
    assert heap.trims == trims + can_trim


def test_a_heap_trim_gives_freed_fragmented_memory_back() -> None:
    """The mechanism: blocks freed between kept ones stay in the process until the heap is trimmed."""
    from pathlib import Path

    from hwm_studio.ui import heap

    def rss_mb() -> float:
        return next(int(ln.split()[1]) / 1024 for ln in Path("/proc/self/status").read_text().splitlines()
                    if ln.startswith("VmRSS:"))  # fmt: skip

    if not Path("/proc/self/status").exists() or not heap.trim_heap():
        pytest.skip("needs Linux and glibc's malloc_trim")
    blocks = [bytes(4000) for _ in range(50_000)]  # ~200 MB from malloc's heap
    kept = blocks[::64]  # one block in 64 keeps the heap from shrinking by itself
    del blocks
    held = rss_mb()
    heap.trim_heap()
    assert held - rss_mb() > 100, "the freed ~195 MB stayed in the process"
    assert len(kept) == 782
