"""Fused inference rollouts: chunks of integrator steps traced once into TorchScript graphs.

Why: a batch-1 eager step runs hundreds of tiny tensor ops, each paying Python and dispatch
overhead (~0.2-0.8 ms per step on these CPUs), which makes a 300-step interactive rollout too slow
for a slider. Tracing `chunk` steps into one graph removes the Python layer; the traced graph's
arithmetic is the eager rollout's, bit for bit (tested), and so is a frozen graph's (see `_freeze`).

What may change between calls without re-tracing: the state, the actions, dt, and the field's
dissipation and residual scales, which are graph inputs. Every integrator here iterates a fixed
number of times (no data-dependent control flow), so the traced graph is exact. Weights are read
from the live modules while they change, so a model being trained stays current; once the weights
have stayed the same over two calls (a slider moving over a fixed model), the graph is frozen
(`torch.jit.freeze`: weights become constants, so everything computed from weights alone, such as
softplus(theta) or L L^T, is folded away; ~80 ms once) and the frozen graph is used until any
weight changes in place (tensor version counters, which optimisers and load_state_dict bump).
Inference only (no autograd); a new graph is traced per (batch, shape, dtype, device, integrator,
action use), which costs ~0.3 s the first time. torch 2.13 marks `torch.jit.trace` deprecated in
favour of `torch.compile`/`torch.export`; we measured `torch.compile` here at ~23 s to compile one
step, recompiling as inputs changed: too slow to start for an interactive session.

Graphs are shared between processes' sessions where they can be: torch never frees a traced or
frozen graph (pytorch#35600: ~20 MB a studio scene), so a server that traced per session grew
~70 MB with every browser tab opened. A rollout given `shared_as` (what its field computes: a
checkpoint's identity, a system's parameters) keeps its graphs in one process-wide registry, so
every session on the same checkpoint reuses one set; the knobs stay per caller (graph inputs).
"""

from __future__ import annotations

import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from hwm_studio.physics.field import VectorField
from hwm_studio.physics.held import holding_weights, weights_version
from hwm_studio.physics.integrators.base import Integrator
from hwm_studio.physics.integrators.discrete_gradient import DiscreteGradient
from hwm_studio.physics.port_hamiltonian import PortHamiltonianField
from hwm_studio.state import PhaseState

# Tracing warns where Python branches on tensors; every branch here depends on configuration only
# (see above). Filtered for good rather than around each trace: warning filters are process-wide
# and not thread-safe, and scenes trace on a worker thread.
warnings.filterwarnings("ignore", category=torch.jit.TracerWarning, module=r"hwm_studio\.")


class _Chunk(nn.Module):
    """`n` integrator steps with dt and the field's knobs as tensor inputs (traced once)."""

    def __init__(self, field: VectorField, integrator: Integrator, n: int, with_actions: bool) -> None:
        super().__init__()
        self.field = field
        self.integrator = integrator
        self.n = n
        self.with_actions = with_actions

    def forward(self, q: Tensor, p: Tensor, u: Tensor, dt: Tensor, scales: Tensor) -> tuple[Tensor, Tensor]:
        field = self.field
        if isinstance(field, PortHamiltonianField):  # knobs as graph inputs (restored by the tracer)
            field.dissipation_scale = scales[0]
            field.residual_scale = scales[1]
        qs, ps = [], []
        state = PhaseState(q, p)
        step = self.integrator.stepper(field, dt)
        with holding_weights():  # traced once per chunk, then folded away when the graph is frozen
            for k in range(self.n):
                state = step(state, u[:, k] if self.with_actions else None)
                qs.append(state.q)
                ps.append(state.p)
        return torch.stack(qs, dim=1), torch.stack(ps, dim=1)


class NotFusable(RuntimeError):
    """The field cannot be traced (e.g. an energy term whose gradient needs autograd): roll out eagerly."""


def _freeze(traced: torch.jit.ScriptModule) -> torch.jit.ScriptModule:
    """Weights as constants, folded, with the eager numerics kept (`optimize_numerics=False`, no
    oneDNN prepacking): the frozen graph's numbers are the traced graph's bit for bit. Why: the
    prepacked graph was ~10% faster but rounded differently (1e-7 relative, 2e-4 after 300 pendulum
    steps), and since graphs are shared, whether a session saw the frozen or the traced rounding
    depended on what other sessions had just done; now a session's numbers depend on its inputs alone."""
    return torch.jit.freeze(traced.eval(), optimize_numerics=False)


def _knob_inputs(field: VectorField, like: Tensor) -> Tensor:
    """The field's knobs (dissipation and residual scales) as the graph input they are traced as."""
    if isinstance(field, PortHamiltonianField):
        return torch.tensor(
            [float(field.dissipation_scale), float(field.residual_scale)], dtype=like.dtype, device=like.device
        )
    return torch.ones(2, dtype=like.dtype, device=like.device)


def _trace(module: nn.Module, field: VectorField, example: tuple[Tensor, ...]) -> _Graph:
    """Trace `module` (which runs `field`) on `example` with every optional branch of the field on,
    since its knobs are graph inputs; autograd inside the step cannot be traced (`NotFusable`)."""
    saved = (field.dissipation_scale, field.residual_scale) if isinstance(field, PortHamiltonianField) else None
    if saved is not None:
        field.dissipation_scale, field.residual_scale = 1.0, 1.0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
            warnings.simplefilter("ignore", category=DeprecationWarning)  # see the module docstring
            return _Graph(torch.jit.trace(module, example, check_trace=False))
    except RuntimeError as exc:
        raise NotFusable(f"cannot trace this field's step: {exc}") from exc
    finally:
        if saved is not None:
            field.dissipation_scale, field.residual_scale = saved


class _Graph:
    """One traced chunk, and its frozen twin while the weights it was frozen with stay unchanged."""

    def __init__(self, traced: torch.jit.ScriptModule) -> None:
        self.traced = traced
        self.frozen: torch.jit.ScriptModule | None = None
        self.frozen_at: tuple[int, ...] | None = None
        self.seen: tuple[int, ...] | None = None
        self._lock = threading.Lock()  # a shared graph is frozen once, whichever session asks first

    def runnable(self, version: tuple[int, ...]) -> torch.jit.ScriptModule:
        with self._lock:
            if self.frozen is not None and self.frozen_at == version:
                return self.frozen
            if self.seen == version:  # same weights as the last rollout: worth folding them in
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", category=DeprecationWarning)  # see the module docstring
                    self.frozen, self.frozen_at = _freeze(self.traced), version
                return self.frozen
            self.frozen = self.frozen_at = None
            self.seen = version
            return self.traced


class _Graphs:
    """Traced graphs by key: this rollout's own, or, given `shared_as`, the process-wide set every
    rollout of the same function uses (see the module docstring)."""

    MAX_SHARED = 256  # a bound, not a cache size: dropping a graph does not give its memory back

    _shared: ClassVar[OrderedDict[tuple, _Graph]] = OrderedDict()
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, shared_as: Hashable | None) -> None:
        self.shared_as = shared_as
        self._own: dict[tuple, _Graph] = {}

    def get(self, key: tuple, build: Callable[[], _Graph]) -> _Graph:
        graph = self._own.get(key)
        if graph is not None:
            return graph
        if self.shared_as is None:
            graph = build()
        else:
            shared_key = (self.shared_as, *key)
            with _Graphs._lock:  # held while tracing: two sessions asking at once trace once
                graph = _Graphs._shared.get(shared_key)
                if graph is None:
                    graph = _Graphs._shared[shared_key] = build()
                    if len(_Graphs._shared) > self.MAX_SHARED:
                        _Graphs._shared.popitem(last=False)
        self._own[key] = graph
        return graph

    def __len__(self) -> int:
        return len(self._own)

    def values(self) -> list[_Graph]:
        """The graphs this rollout has run (its own, or its share of the process-wide ones)."""
        return list(self._own.values())


def shared_graph_count() -> int:
    """How many graphs the process-wide registry holds (what a served studio traced in all)."""
    return len(_Graphs._shared)


class FusedRollout:
    """Roll a field out with traced chunks; same result as `physics.rollout` without the ledger.

    `integrator` is anything with a `name` and `stepper(field, dt)`: the continuous integrators,
    or a discrete map's step. `shared_as`: a key naming the function `field` computes, the same
    for every field that computes it with the same tensors or constants (a checkpoint's identity,
    a system's parameters); their rollouts then share traced graphs process-wide. None: this
    rollout's own graphs (a model being trained, whose weights nobody else has).
    """

    def __init__(
        self, field: VectorField, integrator: Integrator, chunk: int = 10, shared_as: Hashable | None = None
    ) -> None:
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        self.field, self.integrator, self.chunk = field, integrator, chunk
        self._graphs = _Graphs(shared_as)

    def _graph(self, q: Tensor, p: Tensor, u: Tensor, dt: Tensor, scales: Tensor, with_actions: bool) -> _Graph:
        n = u.shape[1]  # steps per chunk
        key = ("chunk", tuple(q.shape), tuple(u.shape[1:]), q.dtype, q.device, self.integrator.name, with_actions)
        return self._graphs.get(
            key, lambda: _trace(_Chunk(self.field, self.integrator, n, with_actions), self.field, (q, p, u, dt, scales))
        )

    @torch.no_grad()
    def __call__(self, z0: PhaseState, actions: Tensor | None, dt: float, steps: int) -> tuple[Tensor, Tensor]:
        """States (B, steps + 1, E, D) from z0 (B, E, D) under actions (B, >= steps, A) or None."""
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        if not dt > 0:
            raise ValueError(f"dt must be > 0, got {dt}")
        q, p = z0.q, z0.p
        b = q.shape[0]
        with_actions = actions is not None and getattr(self.field, "action_dim", 0) > 0
        if with_actions:
            assert actions is not None
            if actions.ndim != 3 or actions.shape[1] < steps or actions.shape[0] not in (1, b):
                raise ValueError(f"actions must be ({b}, >= {steps}, A), got {tuple(actions.shape)}")
            actions = actions.expand(b, -1, -1).to(q.dtype)
        # as few chunks as `self.chunk` allows, all of one length: 12 steps run as 2 x 6, not 2 x 10
        n_chunks = -(-steps // self.chunk)
        chunk = -(-steps // n_chunks) if n_chunks else self.chunk
        u_all = torch.zeros(
            b, n_chunks * chunk, actions.shape[2] if with_actions else 1, dtype=q.dtype, device=q.device
        )
        if with_actions:
            u_all[:, :steps] = actions[:, :steps]
        dt_t = torch.tensor(float(dt), dtype=q.dtype, device=q.device)
        scales = _knob_inputs(self.field, q)
        qs, ps = [q[:, None]], [p[:, None]]
        with torch.inference_mode(False), torch.no_grad():  # trace and freeze with plain tensors
            example = (q.clone(), p.clone(), u_all[:, :chunk].clone(), dt_t.clone(), scales.clone())
            graph = self._graph(*example, with_actions)
            run = graph.runnable(weights_version(self.field))  # every chunk has the same shapes
        # Inference mode skips autograd and version-counter bookkeeping on every op: ~15% less
        # per-step overhead. The chunks' outputs are inference tensors; the torch.cat below, run
        # outside it, returns ordinary tensors that callers may use anywhere.
        with torch.inference_mode():
            for c in range(n_chunks):
                u = u_all[:, c * chunk : (c + 1) * chunk]
                cq, cp = run(q, p, u, dt_t, scales)
                qs.append(cq)
                ps.append(cp)
                q, p = cq[:, -1], cp[:, -1]
        return torch.cat(qs, dim=1)[:, : steps + 1], torch.cat(ps, dim=1)[:, : steps + 1]


class _ExactStep(nn.Module):
    """One discrete-gradient step of a fixed number of sweeps, with the step's exact work and energy
    change (`DiscreteGradient.interval_work`) and how far its last sweep moved (traced once)."""

    def __init__(
        self, field: PortHamiltonianField, integrator: DiscreteGradient, sweeps: int, with_actions: bool
    ) -> None:
        super().__init__()
        self.field, self.integrator, self.sweeps, self.with_actions = field, integrator, sweeps, with_actions

    def forward(self, q: Tensor, p: Tensor, u: Tensor, dt: Tensor, scales: Tensor) -> tuple[Tensor, ...]:
        field = self.field
        field.dissipation_scale, field.residual_scale = scales[0], scales[1]
        action = u if self.with_actions else None
        start = PhaseState(q, p)
        with holding_weights():
            end, moved = self.integrator.fixed_sweeps(field, start, action, dt, self.sweeps)
            work = self.integrator.interval_work(field, start, end, action, dt)  # type: ignore[arg-type]
            gained = field.hamiltonian.energy(end) - field.hamiltonian.energy(start)
        return end.q, end.p, moved, gained, work["dissipated"], work["control"], work["residual"]


@dataclass
class LiveSteps:
    """`steps` steps of a live loop: the states after each, (B, steps, E, D), and the ledger's
    increments over them, each (B,): 'dissipated', 'control_work', 'residual_work', 'balance_error'
    (the energy change minus the ports' work: the solver's tolerance and rounding)."""

    q: Tensor
    p: Tensor
    ledger: dict[str, Tensor]


class FusedExactStep:
    """The discrete-gradient step a live loop takes, traced once: `sweeps` sweeps and the step's
    exact work in one graph, then one host sync to check the last sweep against the integrator's
    tolerance; a step that has not converged by then is taken again eagerly by the integrator's own
    tolerance loop (counted in `eager_steps`), so every step meets the tolerance either way.

    Why: eagerly, a batch-1 step of the pendulum HWM (about five sweeps) and its ledger cost ~10 ms
    of Python and dispatch overhead, half a frame's budget; traced and frozen, ~3 ms
    (`python benchmarks/play_fps.py --ledger-only`). Frozen and re-traced on the same rules as
    `FusedRollout` (weights read live until they stop changing; dt and the knobs are inputs).
    """

    def __init__(
        self, field: PortHamiltonianField, integrator: DiscreteGradient, sweeps: int = 6,
        shared_as: Hashable | None = None,
    ) -> None:  # fmt: skip
        """`shared_as`: as for `FusedRollout` (the integrator's settings are part of the key)."""
        if integrator.tolerance is None:
            raise ValueError("a live exact step needs a DiscreteGradient with a tolerance")
        if sweeps < 1:
            raise ValueError(f"sweeps must be >= 1, got {sweeps}")
        self.field, self.integrator, self.sweeps = field, integrator, sweeps
        self.eager_steps = 0
        self._graphs = _Graphs(shared_as)

    def _graph(self, example: tuple[Tensor, ...], with_actions: bool) -> _Graph:
        q, u = example[0], example[2]
        i = self.integrator
        integ = (type(i).__name__, i.iterations, i.tolerance, i.max_iterations, getattr(i, "memory", None))
        key = ("exact", tuple(q.shape), tuple(u.shape), q.dtype, q.device, with_actions, self.sweeps, integ)
        return self._graphs.get(
            key, lambda: _trace(_ExactStep(self.field, self.integrator, self.sweeps, with_actions), self.field, example)
        )

    @torch.no_grad()
    def __call__(self, z0: PhaseState, actions: Tensor | None, dt: float, steps: int) -> LiveSteps:
        """`steps` steps from z0 (B, E, D) under actions (B, >= steps, A) or None."""
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if not dt > 0:
            raise ValueError(f"dt must be > 0, got {dt}")
        f, integ = self.field, self.integrator
        q, p = z0.q, z0.p
        with_actions = actions is not None and f.action_dim > 0
        u_all = actions.to(q.dtype) if with_actions else q.new_zeros(q.shape[0], steps, 1)
        dt_t = torch.tensor(float(dt), dtype=q.dtype, device=q.device)
        scales = _knob_inputs(f, q)
        with torch.inference_mode(False):
            graph = self._graph((q.clone(), p.clone(), u_all[:, 0].clone(), dt_t.clone(), scales.clone()), with_actions)
            run = graph.runnable(weights_version(f))
        tolerance = float(integ.tolerance)  # type: ignore[arg-type]
        qs, ps = [], []
        keys = ("dissipated", "control_work", "residual_work", "balance_error")
        total = {k: torch.zeros(q.shape[0], dtype=q.dtype, device=q.device) for k in keys}
        for t in range(steps):
            u = u_all[:, t]
            q1, p1, moved, gained, dissipated, control, residual = run(q, p, u, dt_t, scales)
            integ.sweeps += self.sweeps
            if not bool((moved <= tolerance).all()):  # not converged in `sweeps`: the eager loop's answer
                self.eager_steps += 1
                start = PhaseState(q, p)
                end = integ.step(f, start, u if with_actions else None, dt)
                work = integ.interval_work(f, start, end, u if with_actions else None, float(dt))
                q1, p1 = end.q, end.p
                gained = f.hamiltonian.energy(end) - f.hamiltonian.energy(start)
                dissipated, control, residual = work["dissipated"], work["control"], work["residual"]
            total["dissipated"] = total["dissipated"] + dissipated
            total["control_work"] = total["control_work"] + control
            total["residual_work"] = total["residual_work"] + residual
            total["balance_error"] = total["balance_error"] + gained + dissipated - control - residual
            qs.append(q1)
            ps.append(p1)
            q, p = q1, p1
        return LiveSteps(torch.stack(qs, 1), torch.stack(ps, 1), total)
