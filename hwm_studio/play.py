"""Playing a world model: the learned model and the truth stepped side by side, live, under the
actions a person holds, with the model's energy ledger kept step by step.

`Player` is the loop's state without any UI: a Play view calls `hold` when the held keys change,
`advance` on each tick (as many steps as its `Pacer` says are due), `resync` when asked, and
`episode` to save what was played. The model never sees the truth except through `resync`, so its
drift stays visible (`divergence`). A state model re-encodes the true state; a pixel model reads
the last k true frames, its dt apart (the truth steps that long at rest after a reset, so there are
k to read), and its view is its own decoded frame. A model with an energy plays at `live_dt`, a
fraction of its dt, so that a frame, which only ever shows a new state, can come 30+ times a
second. It is stepped by the discrete-gradient scheme (physics/integrators/discrete_gradient.py,
traced with its exact work as physics.fused.FusedExactStep) unless told otherwise: its ledger is exact per
step, so the balance error on screen is the solver's tolerance and rounding whatever was pressed,
where the leapfrog the models train with leaves an O(dt^2) error that grows with the energy a held
key pumps in. That field steps in float64 (a copy of the model's that follows its knobs and, by
the tensors' version counters, its weights): a held torque spins a pendulum to q of hundreds of
radians, where float32 rounding alone left the balance at 5e-4 of the energy range after a minute.
The ledger sums those steps' exact work (or, stepped otherwise, the rollout ledger of
`physics.rollout`) over the ticks.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from hwm_studio.data.format import TrajectoryData
from hwm_studio.frames import frames_to_uint8
from hwm_studio.metrics import normalised_error
from hwm_studio.models.base import WorldModel
from hwm_studio.physics.fused import FusedExactStep
from hwm_studio.physics.held import weights_version
from hwm_studio.physics.integrators import DiscreteGradient, Integrator
from hwm_studio.physics.port_hamiltonian import PortHamiltonianField
from hwm_studio.physics.rollout import rollout
from hwm_studio.planning.rollouts import true_step
from hwm_studio.state import PhaseState
from hwm_studio.systems.base import System

LEDGER_KEYS = ("dissipated", "control_work", "residual_work", "balance_error")
ENERGY_KEYS = ("kinetic", "potential", "interaction", "total")
MAX_EPISODE_STEPS = 100_000  # a recording stops growing here (an hour at 30 steps/s)


LIVE_STATES_HZ = 30  # a live loop shows at least this many new states a second at real time, where it can


def live_dt(model: WorldModel) -> float:
    """The step a live loop takes: for a model with an energy (a continuous-time field, which any
    step samples) dt / k, with k the fewest substeps that give LIVE_STATES_HZ states a second at
    real time; the model's dt for a model without one (a map learned at its dt). Why: a frame only
    shows a new state, so the pendulum's dt of 0.05 s alone caps it at 20 frames a second and the
    spring pixel model's 0.125 s at 8. A pixel model still reads its frames dt apart (`Player`)."""
    if model.hamiltonian_field is None:
        return float(model.dt)
    return float(model.dt) / math.ceil(LIVE_STATES_HZ * float(model.dt) - 1e-9)


class Pacer:
    """How many steps of dt a tick should advance for a real-time factor: elapsed wall time x rtf /
    dt, carrying the fraction to the next tick. A late tick catches up at most `max_steps`; the rest
    is dropped, never queued (a slow machine plays slower instead of lagging ever further)."""

    def __init__(self, dt: float, rtf: float = 1.0, max_steps: int = 4) -> None:
        if not dt > 0:
            raise ValueError(f"dt must be > 0, got {dt}")
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        self.dt, self.max_steps = float(dt), int(max_steps)
        self.rtf = rtf
        self._last: float | None = None
        self._carry = 0.0

    @property
    def rtf(self) -> float:
        return self._rtf

    @rtf.setter
    def rtf(self, value: float) -> None:
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"the real-time factor must be > 0, got {value}")
        self._rtf = float(value)

    def due(self, now: float) -> int:
        """Steps to take at wall time `now` (seconds, monotonic); 0 on the first call."""
        if self._last is None:
            self._last = now
            return 0
        self._carry += max(0.0, now - self._last) * self._rtf / self.dt
        self._last = now
        steps = max(0, int(self._carry + 1e-9))  # 0.1 s / 0.05 s is two steps, not 1.999...
        self._carry -= steps  # negative while a borrowed step is repaid
        if steps > self.max_steps:
            steps, self._carry = self.max_steps, 0.0
        return steps

    def borrow(self) -> int:
        """One step now, ahead of its time, when none is borrowed yet (else 0): a key just changed,
        and its effect should show at the next frame instead of up to a dt later (125 ms for the
        spring pixel model). Repaid from the time that follows, so the pace stays real time."""
        if self._last is None or self._carry < -1e-9:
            return 0
        self._carry -= 1.0
        return 1

    def pause(self) -> None:
        """Forget the time that passes until the next `due` (a paused loop does not catch up)."""
        self._last, self._carry = None, 0.0


@dataclass
class _Recording:
    q: list[np.ndarray] = field(default_factory=list)  # true states, (E, D) each
    p: list[np.ndarray] = field(default_factory=list)
    u: list[np.ndarray] = field(default_factory=list)  # the action held from each state to the next
    model_start: int = 0  # the true state the model's record starts at (a pixel model reads k frames first)
    zq: list[Tensor] = field(default_factory=list)  # the model's latent at each true state from there, (E, D)
    zp: list[Tensor] = field(default_factory=list)


class Player:
    """A played episode: model and truth from one start, stepped together under held actions.

    Actions are held as fractions of the system's bound in [-1, 1] per action dim, times `gain`,
    clipped to the bound. A pixel model must be played on the system it was trained on (its
    parameters), since it reads that system's frames. `integrator` steps a model with an energy
    (default: the discrete-gradient scheme, solved to 1e-13; `model.integrator`: the model's own); a model
    without one steps by its own rule. A discrete-gradient step with a tolerance runs traced
    (`physics.fused.FusedExactStep`, a third of the eager cost) unless `traced` is False.
    """

    def __init__(
        self,
        model: WorldModel,
        system: System,
        dt: float | None = None,
        seed: int = 0,
        gain: float = 1.0,
        integrator: Integrator | None = None,
        traced: bool = True,
    ) -> None:
        trained_on = model.config.system_params or {}
        if model.sees_pixels and any(system.params.get(k) != v for k, v in trained_on.items()):
            raise ValueError(
                f"the {model.kind} model reads frames of {model.config.system} with {model.config.system_params}: "
                "play it on that system"
            )
        if model.config.n_entities != system.n_entities or model.config.dim != system.dim:
            raise ValueError(
                f"the {model.kind} model has {model.config.n_entities} x {model.config.dim} coordinates, "
                f"{system.name} has {system.n_entities} x {system.dim}"
            )
        if model.action_dim not in (0, system.action_dim):
            raise ValueError(f"the model takes {model.action_dim} action dims, {system.name} has {system.action_dim}")
        self.model, self.system = model, system
        self.dt = float(model.dt if dt is None else dt)
        if not self.dt > 0:
            raise ValueError(f"dt must be > 0, got {dt}")
        if self.dt != float(model.dt) and model.hamiltonian_field is None:
            raise ValueError(f"the {model.kind} model steps only at its dt of {model.dt} (it has no energy field)")
        # a pixel model reads frames its dt apart: every `stride`-th state of a loop stepping finer
        self.stride = round(float(model.dt) / self.dt) if model.sees_pixels else 1
        if model.sees_pixels and not (self.stride >= 1 and math.isclose(self.stride * self.dt, float(model.dt))):
            raise ValueError(f"the {model.kind} model reads frames {model.dt} apart: play it at that dt / an integer")
        self.gain = gain
        # one Yoshida-4 step per dt (4th order): the data's simulator takes four, a quarter of the speed,
        # which left the double pendulum's truth alone at 22 ms a step against the 10 ms real time allows
        self._truth_step = true_step(system, self.dt, substeps=1)
        has_energy = model.hamiltonian_field is not None
        self.integrator = (integrator or DiscreteGradient(iterations=1, tolerance=1e-13)) if has_energy else None
        # The float64 copy that steps (see the module doc) and its traced step, made once per player:
        # a reset keeps both (the copy follows the model's knobs and weights at every step), so the
        # R key does not pay a new trace and freeze (~0.7 s on the pendulum).
        source = model.hamiltonian_field
        self._field: PortHamiltonianField | None = None if source is None else copy.deepcopy(source).double()
        self._weights_seen = None if source is None else weights_version(source)
        solves = isinstance(self.integrator, DiscreteGradient) and self.integrator.tolerance is not None
        exact = traced and solves and self._field is not None
        # a read-only shared model's float64 copies are equal in every session: one traced step for all
        shared = None if model.shared_as is None else (*model.shared_as, "play", "float64")
        self._exact = FusedExactStep(self._field, self.integrator, shared_as=shared) if exact else None  # type: ignore[arg-type]
        self._dtype = next(model.parameters()).dtype
        self._held = np.zeros(system.action_dim)
        self.pixels = model.sees_pixels
        self.frame_size = int(model.config.frame_size) if self.pixels else 0
        self.context = int(model.config.context_frames) if self.pixels else 1
        self._pixel_view: tuple[np.ndarray, np.ndarray] | None = None  # (decoded, true) frames now
        self.version = 0  # bumped whenever the states change (a step, a resync): a view redraws only then
        self.reset(seed)

    # --- controls ---------------------------------------------------------------------------
    def reset(self, seed: int = 0) -> None:
        """A new episode from the system's sampler at `seed`: the model encodes the true start."""
        start = self.system.sample_initial(1, torch.Generator().manual_seed(int(seed)))
        self.truth = start
        self.steps = 0
        self._recording = _Recording()
        self._record_state()
        rest = torch.zeros(1, self.system.action_dim, dtype=torch.float64)
        for _ in range((self.context - 1) * self.stride):  # the frames a pixel model reads before it can predict
            self.truth = PhaseState(*self._truth_step(self.truth.q, self.truth.p, rest))
            self._record_state(rest[0].numpy())
        self.resync()
        self.ledger = dict.fromkeys(LEDGER_KEYS, 0.0)
        self.energy0 = self.energy()

    def hold(self, fractions: np.ndarray | list[float]) -> None:
        """The action fractions held from now on, one per action dim, each clipped to [-1, 1]."""
        a = np.asarray(fractions, dtype=np.float64).reshape(-1)
        if a.shape != (self.system.action_dim,):
            raise ValueError(f"{self.system.name} takes {self.system.action_dim} action dim(s), got {a.size}")
        if not np.isfinite(a).all():
            raise ValueError(f"actions must be finite, got {a.tolist()}")
        self._held = np.clip(a, -1.0, 1.0)

    @property
    def action(self) -> np.ndarray:
        """The action applied now, in the system's units: fraction x gain x bound, within the bound."""
        bound = self.system.action_bound
        return np.clip(self._held * self.gain * bound, -bound, bound)

    def resync(self) -> None:
        """Re-encode the model from the truth (the only time the model sees it): the true state, or
        for a pixel model the last k true frames, its dt apart, and the action held at the start of
        each interval between them."""
        rec = self._recording
        with torch.no_grad():
            if not self.pixels:
                z = self.model.latent(self.truth.q.to(self._dtype), self.truth.p.to(self._dtype))
            else:
                read = range(len(rec.q) - 1 - (self.context - 1) * self.stride, len(rec.q), self.stride)
                frames = self.system.render(torch.as_tensor(np.stack([rec.q[i] for i in read])), size=self.frame_size)
                frames = frames[None]
                actions = None
                if self.model.action_dim:
                    actions = torch.as_tensor(np.stack([rec.u[i] for i in read[:-1]]), dtype=self._dtype)[None]
                z = self.model.state_from_positions(self.model.locate(frames), actions)  # type: ignore[attr-defined]
        self._z = self._stepping(z)
        self._pixel_view = None
        self.version += 1
        if not rec.zq:  # the episode's first encoding
            rec.model_start = len(rec.q) - 1
        elif len(rec.zq) == len(rec.q) - rec.model_start:  # the model's state now is replaced
            rec.zq.pop(), rec.zp.pop()
        self._record_latent(self._z.q[0][None], self._z.p[0][None])

    def _follow_model(self) -> None:
        """The float64 copy takes the model's knobs now, and its weights when they changed in place
        (an optimiser step or load_state_dict: a model training live, or a checkpoint reloaded)."""
        source, field = self.model.hamiltonian_field, self._field
        assert source is not None
        assert field is not None
        field.dissipation_scale, field.residual_scale = source.dissipation_scale, source.residual_scale
        version = weights_version(source)
        if version != self._weights_seen:
            field.load_state_dict(source.state_dict())  # cast into the float64 copy
            self._weights_seen = version

    def _stepping(self, z: PhaseState) -> PhaseState:
        """A latent state in the dtype the loop steps in (float64 for a model with an energy)."""
        return z.to(torch.float64) if self._field is not None else z

    def _latent(self) -> PhaseState:
        """The latent state now, in the model's own dtype (what its decoders read)."""
        return self._z.to(self._dtype)

    def advance(self, steps: int = 1) -> None:
        """Step model and truth `steps` steps of dt under the held action."""
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        if steps == 0:
            return
        u = torch.as_tensor(self.action, dtype=torch.float64)[None]  # (1, A)
        q, p = self.truth.q, self.truth.p
        for _ in range(steps):
            q, p = self._truth_step(q, p, u)
            self.truth = PhaseState(q, p)
            self._record_state(u[0].numpy())
        actions = u.to(self._dtype)[:, None].expand(1, steps, -1) if self.model.action_dim else None
        field = self._field
        if field is not None:
            self._follow_model()
        with torch.no_grad():
            acts = None if actions is None or field is None or not field.action_dim else actions.double()
            if self._exact is not None:  # the traced discrete-gradient step and its exact work
                live = self._exact(self._z, acts, self.dt, steps)
                q, p, gained = live.q[:, -1], live.p[:, -1], {k: float(v[0]) for k, v in live.ledger.items()}
                self._z = PhaseState(q, p)
                self._record_latent(live.q[0], live.p[0])
            else:
                if field is not None and self.integrator is not None:  # a model with an energy, stepped otherwise
                    traj = rollout(field, self.integrator, self._z, acts, self.dt, steps, record_energy=True)
                else:
                    traj = self.model.rollout_latent(self._z, actions, steps, record_energy=False)  # no energy
                gained = {k: float(traj.ledger[k][0, -1]) for k in LEDGER_KEYS if k in traj.ledger}
                self._z = traj.state(steps)
                self._record_latent(traj.q[0, 1:], traj.p[0, 1:])
        self._pixel_view = None
        self.version += 1
        for k, v in gained.items():
            self.ledger[k] += v
        self.steps += steps

    @property
    def eager_steps(self) -> int:
        """Steps the traced step had not solved to the tolerance, re-solved eagerly (0 untraced)."""
        return 0 if self._exact is None else self._exact.eager_steps

    # --- what is shown ----------------------------------------------------------------------
    def model_state(self) -> tuple[np.ndarray, np.ndarray]:
        """The model's state in data coordinates, (E, D) each; a pixel model's own latent (q, p)
        (its coordinates are those its encoder learned, not the system's)."""
        if self.pixels:
            return self._z.q[0].double().numpy(), self._z.p[0].double().numpy()
        with torch.no_grad():
            z = self._latent()
            q, p = self.model.coder.to_data(self.model.decode(z.q, z.p))
        return q[0].double().numpy(), p[0].double().numpy()

    def true_state(self) -> tuple[np.ndarray, np.ndarray]:
        return self.truth.q[0].numpy(), self.truth.p[0].numpy()

    def frames(self, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
        """(model, truth), (size, size, 3) uint8 each. A state model: its predicted state and the
        true one drawn by the system's renderer in one batched call. A pixel model: its decoded
        frame and the true frame at the model's resolution (what it reads), both enlarged."""
        if self.pixels:
            model_frame, truth_frame = self._pixel_frames()
            rows = np.arange(size) * self.frame_size // size  # nearest-neighbour enlargement
            return model_frame[rows][:, rows], truth_frame[rows][:, rows]
        mq, _ = self.model_state()
        q = torch.as_tensor(np.stack([np.nan_to_num(mq), self.true_state()[0]]))
        both = self.system.render(q, size=size).numpy()
        return both[0], both[1]

    def _pixel_frames(self) -> tuple[np.ndarray, np.ndarray]:
        """The decoded and the true frame now, at the model's size: made once per state, since the
        view and the divergence both read them each tick."""
        if self._pixel_view is None:
            with torch.no_grad():
                decoded = self.model.decode_frames(self._latent().q)[0]  # type: ignore[attr-defined]
            truth = self.system.render(self.truth.q[0], size=self.frame_size).numpy()
            self._pixel_view = (frames_to_uint8(decoded), truth)
        return self._pixel_view

    def energy(self) -> dict[str, float]:
        """The model's energy terms (kinetic, potential, interaction, total) now, and the true H."""
        out: dict[str, float] = {"true": float(self.system.energy(self.truth)[0])}
        if self._field is not None:
            self._follow_model()
            with torch.no_grad():
                parts = self._field.hamiltonian.decompose(self._z)
            out.update({k: float(parts[k][0]) for k in ENERGY_KEYS})
        return out

    @property
    def divergence_measure(self) -> str:
        return "pixel MSE" if self.pixels else "normalised state error"

    def divergence(self) -> float:
        """How far the model has drifted from the truth: the normalised state error (metrics.py),
        each coordinate in units of its spread in the model's training data; for a pixel model the
        mean squared difference of its decoded frame and the true one, in [0, 1] pixel units."""
        if self.pixels:
            model_frame, truth_frame = self._pixel_frames()
            return float((((model_frame.astype(np.float64) - truth_frame) / 255.0) ** 2).mean())
        mq, mp = self.model_state()
        tq, tp = self.true_state()
        shape = (self.system.n_entities, self.system.dim)
        sq = np.broadcast_to(np.asarray(self.model.config.q_scale, dtype=np.float64), shape)
        sp = np.broadcast_to(np.asarray(self.model.config.p_scale, dtype=np.float64), shape)
        return float(normalised_error(mq, mp, tq, tp, sq, sp, self.model.angular))

    # --- recording --------------------------------------------------------------------------
    def _record_state(self, u_before: np.ndarray | None = None) -> None:
        rec = self._recording
        if len(rec.q) >= MAX_EPISODE_STEPS:
            return
        if u_before is not None:
            rec.u.append(u_before.copy())
        rec.q.append(self.truth.q[0].numpy().copy())
        rec.p.append(self.truth.p[0].numpy().copy())

    def _record_latent(self, q: Tensor, p: Tensor) -> None:
        """The model's latents (n, E, D) at the newest n true states, as far as those were recorded."""
        rec = self._recording
        room = len(rec.q) - rec.model_start - len(rec.zq)
        n = min(room, q.shape[0])
        if n > 0:
            rec.zq.extend(q[q.shape[0] - n :].unbind(0))
            rec.zp.extend(p[p.shape[0] - n :].unbind(0))

    def video(self, size: int = 128, last: int | None = None, chunk: int = 256) -> Iterator[np.ndarray]:
        """The played episode as uint8 frames, model | truth side by side, (n, size, 2 size + 2, 3)
        chunks in time order: what the Play view showed (a state model's predicted state and the
        true one through the system's renderer; a pixel model's decoded frame beside the true frame
        it reads, enlarged). `last`: only the newest that many frames. Chunked, so a long episode
        is drawn and written a piece at a time, never held whole."""
        rec = self._recording
        total = len(rec.zq)
        if total < 2:
            raise ValueError("nothing has been played yet: a video needs at least one step")
        first = 0 if last is None else max(0, total - int(last))
        gap = np.full((size, 2, 3), 255, dtype=np.uint8)
        for lo in range(first, total, chunk):
            hi = min(total, lo + chunk)
            zq = torch.stack(rec.zq[lo:hi]).to(self._dtype)
            zp = torch.stack(rec.zp[lo:hi]).to(self._dtype)
            tq = torch.as_tensor(np.stack(rec.q[rec.model_start + lo : rec.model_start + hi]))
            with torch.no_grad():
                if self.pixels:
                    model_px = frames_to_uint8(self.model.decode_frames(zq))  # type: ignore[attr-defined]
                    truth_px = self.system.render(tq, size=self.frame_size).numpy()
                    rows = np.arange(size) * self.frame_size // size  # nearest-neighbour enlargement
                    model_px, truth_px = model_px[:, rows][:, :, rows], truth_px[:, rows][:, :, rows]
                else:
                    mq, _ = self.model.coder.to_data(self.model.decode(zq, zp))
                    both = self.system.render(torch.cat([torch.nan_to_num(mq.double()), tq]), size=size).numpy()
                    model_px, truth_px = both[: hi - lo], both[hi - lo :]
            yield np.concatenate([model_px, np.broadcast_to(gap, (hi - lo, *gap.shape)), truth_px], axis=2)

    def episode(self) -> TrajectoryData:
        """What was played, as one trajectory of the project's format: the true states, the held
        actions (u[t] from point t to t+1) and the true energy, with the system's meta."""
        rec = self._recording
        if len(rec.q) < 2:
            raise ValueError("nothing has been played yet: an episode needs at least one step")
        q, p = np.stack(rec.q)[None], np.stack(rec.p)[None]  # (1, T, E, D)
        u = None
        if self.system.action_dim:
            u = np.zeros((1, q.shape[1], self.system.action_dim))
            u[0, : len(rec.u)] = np.stack(rec.u)
        with torch.no_grad():
            energy = self.system.energy(PhaseState(torch.as_tensor(q[0]), torch.as_tensor(p[0]))).numpy()[None]
        frames = None
        if self.pixels:  # what a pixel model reads, so it can train on what was played
            frames = self.system.render(torch.as_tensor(q[0]), size=self.frame_size).numpy()[None]
        meta = {**self.system.meta(), "played": {"model": self.model.kind, "gain": self.gain}}
        return TrajectoryData(q=q, p=p, dt=self.dt, u=u, frames=frames, energy=energy, meta=meta)
