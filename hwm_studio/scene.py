"""A scene: one system, one initial state, one action schedule, truth and model rolled out together.

This is everything the studio draws, computed without any UI: the ground truth (exact H,
yoshida4 with substeps), the model's prediction in data coordinates with its own energy ledger,
the true H on both, error vs time, valid prediction time, the model's energy levels and one-step
flow on a phase plane, and rendered frames. A pixel model instead reads the first k rendered true
frames and predicts frames; its latent (q, p) is laid over the true phase portrait by an
`Alignment` fitted on its readings of every true frame (what it perceives, not what it predicts),
its bodies are placed where its decoder draws them, and the error is the pixel error.
The studio only turns these arrays into plots, so every number on screen is computed here, by the
model or the simulator.

Truth is cached: turning a model knob (dissipation, residual, integrator) re-runs the model only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from hwm_studio.data.simulate import simulate
from hwm_studio.frames import frames_to_uint8
from hwm_studio.metrics import normalised_error, scale, valid_steps
from hwm_studio.models.base import WorldModel
from hwm_studio.models.pixel.alignment import Alignment
from hwm_studio.physics.fused import FusedRollout
from hwm_studio.physics.integrators import get_integrator
from hwm_studio.physics.rollout import flatten_time, rollout
from hwm_studio.state import PhaseState
from hwm_studio.systems import System, get_system

SCHEDULES = ("constant", "sine", "random")
_TRUTH_POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hwm-truth")
# a pixel model's alignment to the system's coordinates is fitted on its readings of these runs
ALIGNMENT_TRAJECTORIES, ALIGNMENT_POINTS, ALIGNMENT_SEED = 8, 40, 20_000
TRUTH_SUBSTEPS = 2  # yoshida4 substeps per shown step (tests bound the gap to the data simulator's 4)


def _substep_actions(system: System, u: np.ndarray) -> torch.Tensor | None:
    """Shown-step actions (T, A) held over each substep, (1, T * TRUTH_SUBSTEPS, A); None when
    nothing pushes (unforced: the cheaper conservative graph)."""
    if not (system.action_dim and bool(np.any(u != 0))):
        return None
    return torch.as_tensor(u, dtype=torch.float64)[None].repeat_interleave(TRUTH_SUBSTEPS, dim=1)


@dataclass(frozen=True)
class ActionSchedule:
    """Actions over time, per action dim, as fractions of the system's bound in [-1, 1]."""

    kind: str = "constant"
    amplitude: tuple[float, ...] = ()  # one per action dim; missing dims are 0
    period: float = 2.0  # seconds, for 'sine'
    seed: int = 0  # for 'random'

    def values(self, steps: int, dt: float, action_dim: int, bound: float) -> np.ndarray:
        """(steps, A) actions: u[t] is held from step t to t + 1."""
        if self.kind not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.kind!r}")
        amp = np.zeros(action_dim)
        given = np.asarray(self.amplitude, dtype=np.float64)[:action_dim]
        if not np.all(np.isfinite(given)) or np.any(np.abs(given) > 1):
            raise ValueError(f"action amplitudes are fractions of the bound in [-1, 1], got {self.amplitude}")
        amp[: len(given)] = given
        t = np.arange(steps)[:, None] * dt
        if self.kind == "constant":
            shape = np.ones((steps, 1))
        elif self.kind == "sine":
            shape = np.sin(2 * math.pi * t / max(self.period, 1e-6))
        else:
            shape = np.random.default_rng(self.seed).uniform(-1, 1, size=(steps, action_dim))
        return bound * amp[None, :] * shape


@dataclass(frozen=True)
class SceneSpec:
    """What defines a scene: change any of these and the truth is recomputed."""

    system: str = "pendulum"
    steps: int = 300
    dt: float | None = None  # None: the model's dt (or the system's default without a model)
    seed: int = 0  # initial-state sample
    initial: tuple[tuple[float, ...], tuple[float, ...]] | None = None  # (q, p) flattened (E*D,), overrides seed
    actions: ActionSchedule = field(default_factory=ActionSchedule)
    params: tuple[tuple[str, float], ...] = ()  # system parameter overrides


@dataclass
class SceneResult:
    t: np.ndarray  # (T+1,)
    actions: np.ndarray  # (T, A)
    truth_q: np.ndarray  # (T+1, E, D)
    truth_p: np.ndarray
    truth_energy: np.ndarray  # (T+1,) true H on the true states
    model_q: np.ndarray  # (T+1, E, D) the model's prediction, data coordinates
    model_p: np.ndarray
    model_true_energy: np.ndarray  # (T+1,) true H evaluated on the model's states
    error: np.ndarray  # (T+1,) normalised state error (the VPT measure); pixel models: pixel MSE
    vpt: int | None  # steps before the error first exceeds VPT_THRESHOLD (None: pixel models)
    model_energy: dict[str, np.ndarray] | None  # the model's own H decomposition (T+1,) per term
    model_ledger: dict[str, np.ndarray] | None  # dissipated, control_work, residual_work, balance_error
    residual_power: np.ndarray | None  # (T+1,)
    finite: bool  # False when the model's rollout blew up (the arrays hold NaN from there on)
    entity_names: list[str]
    system_title: str
    dt: float
    extras: dict[str, Any] = field(default_factory=dict)
    model_positions: np.ndarray | None = None  # (T+1, E, 3) world positions of the model's bodies
    # --- pixel models: model_q / model_p are the latent mapped by `alignment` (latent_q/p: as is) ---
    reads_frames: bool = False
    context: int = 0  # the model reads frames 0..context and predicts from there (NaN before)
    truth_frames: np.ndarray | None = None  # (T+1, S, S, 3) uint8: what the model reads and is scored on
    model_frames: np.ndarray | None = None  # (T+1, S, S, 3) uint8 decoded (gray during the context)
    latent_q: np.ndarray | None = None  # (T+1, E, D) the pixel model's own latent (NaN during the context)
    latent_p: np.ndarray | None = None
    alignment: Alignment | None = None
    couplings: dict[tuple[int, int], float] | None = None  # the model's learned pair strengths on the true states

    @property
    def steps(self) -> int:
        return len(self.t) - 1


class Scene:
    """Holds a model (owned by one session: its knobs are set here) and caches the truth."""

    def __init__(self, model: WorldModel | None = None, truth_from: Scene | None = None) -> None:
        self.model = model
        self._truth_from = truth_from  # share another scene's truth (same spec: compute it once)
        self._truth_key: tuple | None = None
        self._truth: tuple[np.ndarray, ...] | None = None
        self._system: System | None = None
        self._truth_rollout: tuple[dict, FusedRollout] | None = None
        self._systems: dict[tuple, System] = {}
        self._frames_key: tuple | None = None
        self._frames: np.ndarray | None = None
        self._alignment_key: tuple | None = None
        self._alignment: Alignment | None = None

    # --- pieces ----------------------------------------------------------------------------------
    def system(self, spec: SceneSpec) -> System:
        """The spec's system, built once per (name, parameters) (building one costs ~0.6 ms)."""
        key = (spec.system, spec.params)
        if key not in self._systems:
            self._systems = {key: get_system(spec.system, **dict(spec.params))}  # keep only the latest
        return self._systems[key]

    def dt(self, spec: SceneSpec) -> float:
        if spec.dt is not None:
            if not spec.dt > 0:
                raise ValueError(f"dt must be > 0, got {spec.dt}")
            return float(spec.dt)
        if self.model is not None:
            return self.model.dt
        return self.system(spec).default_dt

    def initial_state(self, spec: SceneSpec) -> PhaseState:
        system = self.system(spec)
        e, d = system.n_entities, system.dim
        if spec.initial is not None:
            q = torch.as_tensor(spec.initial[0], dtype=torch.float64)
            p = torch.as_tensor(spec.initial[1], dtype=torch.float64)
            if q.numel() != e * d or p.numel() != e * d:
                raise ValueError(f"initial (q, p) need {e * d} values each for {system.name}")
            if not (torch.isfinite(q).all() and torch.isfinite(p).all()):
                raise ValueError("initial (q, p) must be finite")
            return PhaseState(q.reshape(1, e, d), p.reshape(1, e, d))
        return system.sample_initial(1, torch.Generator().manual_seed(spec.seed))

    def _truth_cached(self, spec: SceneSpec) -> bool:
        owner = self._truth_from or self
        return owner._truth_key == (replace(spec, dt=None), self.dt(spec))

    def truth(self, spec: SceneSpec) -> tuple[np.ndarray, ...]:
        """(t, actions, q, p, energy) of the exact system; cached on everything that defines it."""
        if self._truth_from is not None:
            out = self._truth_from.truth(replace(spec, dt=self.dt(spec)))
            self._system = self._truth_from._system
            return out
        dt = self.dt(spec)
        key = (replace(spec, dt=None), dt)
        if key != self._truth_key:
            system = self.system(spec)
            u = spec.actions.values(spec.steps, dt, system.action_dim, system.action_bound)
            if self._truth_rollout is None or self._truth_rollout[0] != system.meta():
                meta = json.dumps(system.meta(), sort_keys=True)  # its graphs are every session's
                self._truth_rollout = (system.meta(), FusedRollout(system.field(), get_integrator("yoshida4"),
                                                                   shared_as=("system", meta)))  # fmt: skip
            fine_u = _substep_actions(system, u)
            q, p = self._truth_rollout[1](self.initial_state(spec), fine_u, dt / TRUTH_SUBSTEPS,
                                          spec.steps * TRUTH_SUBSTEPS)  # fmt: skip
            q, p = q[:, ::TRUTH_SUBSTEPS], p[:, ::TRUTH_SUBSTEPS]
            energy = system.energy(flatten_time(q, p)).numpy()
            t = np.arange(spec.steps + 1) * dt
            self._truth = (t, u, q[0].numpy(), p[0].numpy(), energy)
            self._truth_key = key
            self._system = system
        assert self._truth is not None
        return self._truth

    # --- the whole scene -------------------------------------------------------------------------
    def _truth_head(self, spec: SceneSpec, u: np.ndarray, k: int) -> np.ndarray:
        """The true q of the first k shown states, (k, E, D), under the scene's actions u, stepped
        eagerly as `truth` steps them (what a pixel model reads, without waiting for the whole truth)."""
        system, dt = self.system(spec), self.dt(spec)
        traj = rollout(system.field(), get_integrator("yoshida4"), self.initial_state(spec),
                       _substep_actions(system, u[: k - 1]), dt / TRUTH_SUBSTEPS, (k - 1) * TRUTH_SUBSTEPS,
                       record_energy=False)  # fmt: skip
        return traj.q[0, ::TRUTH_SUBSTEPS].numpy()

    def _truth_then(self, spec: SceneSpec, sidecar: Callable[[], Any] | None) -> tuple[tuple[np.ndarray, ...], Any]:
        truth = self.truth(spec)
        return truth, (sidecar() if sidecar is not None else None)

    @torch.no_grad()
    def run(
        self, spec: SceneSpec, knobs: dict[str, Any] | None = None, sidecar: Callable[[], Any] | None = None
    ) -> SceneResult:
        """Truth and model rolled out from the same state under the same actions.

        `sidecar`: more work for the second core, run there after the truth while this thread
        rolls the model out (the studio passes its baseline scene, which shares this truth); its
        return value lands in `result.extras["sidecar"]`. It must not call `run` on this scene.
        """
        if spec.steps < 1:
            raise ValueError(f"steps must be >= 1, got {spec.steps}")
        model = self.model
        if model is not None and knobs:
            model.configure(**knobs)
        # The model needs only the initial state and the actions, not the true trajectory: when the
        # truth must be recomputed it runs on a second core meanwhile (traced graphs drop the GIL).
        system = self.system(spec)
        if model is not None and model.sees_pixels:  # it reads the true frames: the truth comes first
            self._check_model(system)
            return self._run_pixels(spec, system, sidecar)
        pending = None
        if sidecar is not None or not self._truth_cached(spec):
            pending = _TRUTH_POOL.submit(self._truth_then, spec, sidecar)
        traj = None
        if model is not None:
            self._check_model(system)
            dtype = torch.float32
            z0 = self.initial_state(spec)
            u = spec.actions.values(spec.steps, self.dt(spec), system.action_dim, system.action_bound)
            actions = torch.as_tensor(u[None], dtype=dtype) if system.action_dim and np.any(u != 0) else None
            has_energy = model.hamiltonian_field is not None
            q_hat, p_hat, traj = model.rollout_data(z0.q.to(dtype), z0.p.to(dtype), actions, spec.steps,
                                                    record_energy=has_energy, fused=model.worth_tracing)  # fmt: skip
            mq, mp = q_hat[0].double().numpy(), p_hat[0].double().numpy()
        truth, side = pending.result() if pending is not None else (self.truth(spec), None)
        t, u, tq, tp, te = truth
        if model is None:
            mq, mp = tq, tp
        finite = bool(np.isfinite(mq).all() and np.isfinite(mp).all())
        me = system.energy(flatten_time(torch.as_tensor(mq[None]), torch.as_tensor(mp[None]))).numpy()
        error = self._error(tq, tp, mq, mp, model)
        energy = ledger = residual_power = None
        if traj is not None and traj.energy:
            energy = {k: v[0].double().numpy() for k, v in traj.energy.items()}
            ledger = {k: v[0].double().numpy() for k, v in traj.ledger.items()}
            residual_power = traj.power["residual"][0].double().numpy()
        return SceneResult(
            t=t, actions=u, truth_q=tq, truth_p=tp, truth_energy=te, model_q=mq, model_p=mp,
            model_true_energy=me, error=error, vpt=int(valid_steps(error)),
            model_energy=energy, model_ledger=ledger, residual_power=residual_power, finite=finite,
            entity_names=system.entity_names(), system_title=system.title, dt=float(t[1] - t[0]),
            extras={} if sidecar is None else {"sidecar": side},
            model_positions=system.positions(torch.as_tensor(np.nan_to_num(mq))).numpy(),
            couplings=None if model is None else model.couplings(torch.as_tensor(tq, dtype=torch.float32)),
        )  # fmt: skip

    def _run_pixels(self, spec: SceneSpec, system: System, sidecar: Callable[[], Any] | None) -> SceneResult:
        """A pixel model reads the first k true frames, rolls its latent out and decodes every step.

        With a sidecar the second core computes the truth, then draws all its frames, then runs the
        sidecar; this thread steps the first k true states itself (as `truth` steps them), draws the
        k frames the model reads and predicts meanwhile. Should those frames differ from the truth's
        (a last-bit difference of the eager steps drawing another pixel) it predicts again from the
        truth's own, so the result is always that of the truth's frames."""
        model = self.model
        assert model is not None
        k, size = model.config.context_frames, model.config.frame_size
        if spec.steps < k:
            raise ValueError(f"the {model.kind} model reads {k} frames before predicting: use >= {k} steps")
        if sidecar is None:  # on its own (or as another scene's sidecar, on the second core already)
            t, u, tq, tp, te = self.truth(spec)
            seen_frames = self.rendered(spec, size)[:k]
            frames_job = side_job = None
        else:  # the model reads only the first k states: this thread steps those itself, at once
            truth_job = _TRUTH_POOL.submit(self.truth, spec)
            frames_job = _TRUTH_POOL.submit(self.rendered, spec, size)
            side_job = _TRUTH_POOL.submit(sidecar)
            u = spec.actions.values(spec.steps, self.dt(spec), system.action_dim, system.action_bound)
            seen_frames = system.render(torch.as_tensor(self._truth_head(spec, u, k)), size=size).numpy()
        horizon = spec.steps - (k - 1)
        actions = torch.as_tensor(u[None], dtype=torch.float32) if system.action_dim and np.any(u != 0) else None
        has_energy = model.hamiltonian_field is not None

        def predict(frames: np.ndarray) -> Any:
            return model.predict_frames(torch.as_tensor(frames[None]), actions, horizon, fused=model.worth_tracing,  # type: ignore[attr-defined]
                                        record_energy=has_energy)  # fmt: skip

        out = predict(seen_frames)
        if frames_job is None:
            truth_frames = self.rendered(spec, size)  # cached
        else:
            t, u, tq, tp, te = truth_job.result()
            truth_frames = frames_job.result()
            if not np.array_equal(truth_frames[:k], seen_frames):  # the head's rounding drew another pixel
                out = predict(truth_frames[:k])
        traj = out.trajectory

        def padded(x: torch.Tensor | np.ndarray) -> np.ndarray:  # (horizon + 1, ...) from time k-1 -> (T+1, ...)
            x = x.double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)
            return np.concatenate([np.full((k - 1, *x.shape[1:]), np.nan), x])

        decoded = frames_to_uint8(out.frames[0])
        model_frames = np.full_like(truth_frames, 128)
        model_frames[k - 1 :] = decoded
        error = np.full(spec.steps + 1, np.nan)  # the pixel MSE of the frames shown
        diff = (decoded.astype(np.float64) - truth_frames[k - 1 :]) / 255.0
        error[k - 1 :] = (diff**2).mean(axis=(1, 2, 3))
        lq, lp = padded(traj.q[0]), padded(traj.p[0])
        align = self.alignment(spec, size)
        mq, mp = align.apply(lq, lp)
        seen = np.isfinite(mq).all(axis=(1, 2)) & np.isfinite(mp).all(axis=(1, 2))
        me = np.full(spec.steps + 1, np.nan)
        if seen.any():
            me[seen] = system.energy(
                flatten_time(torch.as_tensor(mq[None, seen]), torch.as_tensor(mp[None, seen]))
            ).numpy()
        xy = padded(out.positions[0]) * system.view_extent()  # image [-1, 1] spans [-extent, extent]
        positions = np.concatenate([xy, np.zeros((*xy.shape[:-1], 1))], axis=-1)
        energy = ledger = residual_power = None
        if traj.energy:
            energy = {key: padded(v[0]) for key, v in traj.energy.items()}
            ledger = {key: padded(v[0]) for key, v in traj.ledger.items()}
            residual_power = padded(traj.power["residual"][0])
        extras = {} if side_job is None else {"sidecar": side_job.result()}
        return SceneResult(
            t=t, actions=u, truth_q=tq, truth_p=tp, truth_energy=te, model_q=mq, model_p=mp,
            model_true_energy=me, error=error, vpt=None, model_energy=energy,
            model_ledger=ledger, residual_power=residual_power, finite=bool(np.isfinite(lq[k - 1 :]).all()),
            entity_names=system.entity_names(), system_title=system.title, dt=float(t[1] - t[0]),
            extras=extras, model_positions=positions, reads_frames=True,
            context=k - 1, truth_frames=truth_frames, model_frames=model_frames, latent_q=lq, latent_p=lp,
            alignment=align,
        )  # fmt: skip

    def alignment(self, spec: SceneSpec, size: int) -> Alignment:
        """The pixel model's latent -> the system's (q, p), fitted on its readings of true frames of
        the system (ALIGNMENT_TRAJECTORIES fresh runs, not this scene's): a property of the model and
        the system, recomputed only when either changes (a model in training changes its weights)."""
        model = self.model
        assert model is not None
        system = self.system(spec)
        key = (repr(system), size, id(model), model.dt, tuple(p._version for p in model.parameters()))
        if key != self._alignment_key or self._alignment is None:
            data = simulate(system, ALIGNMENT_TRAJECTORIES, ALIGNMENT_POINTS, dt=model.dt, frame_size=size,
                            seed=ALIGNMENT_SEED)  # fmt: skip
            read = model.read_states(torch.as_tensor(data.frames))  # type: ignore[attr-defined]
            n = ALIGNMENT_TRAJECTORIES * ALIGNMENT_POINTS
            rq, rp = (x.double().numpy().reshape(n, *x.shape[2:]) for x in read)
            tq, tp = (x.reshape(n, *x.shape[2:]) for x in (data.q, data.p))
            self._alignment = Alignment.fit(rq, rp, tq, tp, model.angular)
            self._alignment_key = key
        return self._alignment

    def rendered(self, spec: SceneSpec, size: int) -> np.ndarray:
        """The true trajectory drawn by the system's renderer, (T+1, size, size, 3) uint8; cached,
        and drawn once for the scenes that share a truth."""
        if self._truth_from is not None:
            return self._truth_from.rendered(replace(spec, dt=self.dt(spec)), size)
        _, _, tq, _, _ = self.truth(spec)
        key = (self._truth_key, size)
        if key != self._frames_key:
            self._frames = self.system(spec).render(torch.as_tensor(tq), size=size).numpy()
            self._frames_key = key
        assert self._frames is not None
        return self._frames

    def _check_model(self, system: System) -> None:
        c = self.model.config  # type: ignore[union-attr]
        if (c.n_entities, c.dim) != (system.n_entities, system.dim):
            raise ValueError(
                f"the model expects {c.n_entities} entities of dim {c.dim}; {system.name} has "
                f"{system.n_entities} of dim {system.dim}"
            )

    @staticmethod
    def _error(tq: np.ndarray, tp: np.ndarray, mq: np.ndarray, mp: np.ndarray, model: WorldModel | None) -> np.ndarray:
        """The VPT's normalised error (hwm_studio/metrics.py), scaled by the true trajectory's spread."""
        angular = model is not None and model.angular
        return normalised_error(mq, mp, tq, tp, scale(tq, (0,)), scale(tp, (0,)), angular)

    # --- the phase plane -------------------------------------------------------------------------
    @torch.no_grad()
    def phase_plane(
        self, spec: SceneSpec, entity: int, coord: int, at: tuple[np.ndarray, np.ndarray],
        extent: tuple[float, float, float, float], levels_n: int = 48, arrows_n: int = 15, u: np.ndarray | None = None,
    ) -> dict[str, np.ndarray | None]:  # fmt: skip
        """The model's energy H and one-step flow on the (q, p) plane of one entity coordinate.

        Other coordinates stay at `at` = (q, p) (E, D). `extent` = (q_lo, q_hi, p_lo, p_hi).
        Returns 'H' (levels_n, levels_n) or None (no energy), and arrow start points and the
        displacement per unit time of one model step (works for every model kind). The plane is in
        the system's coordinates; a pixel model's latent is reached through the last run's alignment.
        """
        model = self.model
        if model is None:
            raise ValueError("the phase plane needs a model")
        align = self._alignment if model.sees_pixels else None
        if model.sees_pixels and align is None:
            raise ValueError("run the scene before asking for a pixel model's phase plane")
        q_lo, q_hi, p_lo, p_hi = extent

        def states(n: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]:
            gq, gp = np.meshgrid(np.linspace(q_lo, q_hi, n), np.linspace(p_lo, p_hi, n))
            q = np.repeat(at[0][None], n * n, axis=0)
            p = np.repeat(at[1][None], n * n, axis=0)
            q[:, entity, coord] = gq.ravel()
            p[:, entity, coord] = gp.ravel()
            if align is not None:
                q, p = align.invert(q, p)
            return torch.as_tensor(q, dtype=torch.float32), torch.as_tensor(p, dtype=torch.float32), gq, gp

        h = None
        if model.hamiltonian_field is not None:
            q, p, _, _ = states(levels_n)
            h = model.hamiltonian_field.hamiltonian.energy(model.latent(q, p)).reshape(levels_n, levels_n).numpy()
        q, p, gq, gp = states(arrows_n)
        actions = None
        if u is not None and model.action_dim:
            actions = torch.as_tensor(np.repeat(u[None, None], q.shape[0], axis=0), dtype=torch.float32)
        q1, p1, _ = model.rollout_data(q, p, actions, 1, fused=model.worth_tracing)
        q0, p0, q1, p1 = q.double().numpy(), p.double().numpy(), q1[:, 1].double().numpy(), p1[:, 1].double().numpy()
        if align is not None:  # the step in the system's coordinates
            (q0, p0), (q1, p1) = align.apply(q0, p0), align.apply(q1, p1)
        dq = q1[:, entity, coord] - q0[:, entity, coord]
        if model.angular:
            dq = np.arctan2(np.sin(dq), np.cos(dq))
        dp = p1[:, entity, coord] - p0[:, entity, coord]
        return {"H": h, "q": gq.ravel(), "p": gp.ravel(), "dq": dq / model.dt, "dp": dp / model.dt}

    # --- frames ----------------------------------------------------------------------------------
    def frames(self, result: SceneResult, index: int, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """Rendered (truth, model) RGB frames at one time index, (size, size, 3) uint8 each.

        For state models the model's frame is its predicted state drawn by the system's renderer;
        pixel models decode their own (at their frame size; gray while the model reads the context).
        """
        i = int(np.clip(index, 0, result.steps))
        if result.model_frames is not None and result.truth_frames is not None:
            return result.truth_frames[i], result.model_frames[i]
        system = self._system
        if system is None:
            raise ValueError("run the scene before asking for frames")
        q = torch.as_tensor(np.stack([result.truth_q[i], np.nan_to_num(result.model_q[i])]))
        both = system.render(q, size=size).numpy()
        return both[0], both[1]


def with_initial(spec: SceneSpec, q: np.ndarray, p: np.ndarray) -> SceneSpec:
    """The same scene from another initial state (e.g. a click on the phase plane)."""
    return replace(spec, initial=(tuple(float(x) for x in q.ravel()), tuple(float(x) for x in p.ravel())))
