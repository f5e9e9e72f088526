"""Quantities computed from weights alone, computed once per rollout instead of once per call.

Why: an integrator asks for dH/dp and the friction several times a step, and their constant parts
(the inverse mass A = L L^T from its factor, softplus of a friction parameter) cost more tensor ops
than the products that use them. Inside `holding_weights()`, `held(module, name, compute)` keeps
the first result for the rest of the block, so a training rollout builds (and backpropagates
through) each once. Thread-local: a scene's worker and a training thread never see each other's
values. Weights must not change inside the block; a rollout never changes them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from torch import Tensor, nn

_local = threading.local()


@contextmanager
def holding_weights() -> Iterator[None]:
    """Keep weight-only quantities for the duration of the block (nested blocks share the outer one)."""
    if getattr(_local, "memo", None) is not None:
        yield
        return
    _local.memo = {}
    try:
        yield
    finally:
        _local.memo = None


def held(module: nn.Module, name: str, compute: Callable[[], Tensor]) -> Tensor:
    """`compute()`, once per `holding_weights` block for this module and name (every call outside one)."""
    memo = getattr(_local, "memo", None)
    if memo is None:
        return compute()
    key = (id(module), name)
    value = memo.get(key)
    if value is None:
        value = memo[key] = compute()
    return value


def weights_version(module: nn.Module) -> tuple[int, ...]:
    """The in-place version counters of a module's parameters and buffers: it changes whenever an
    optimiser step or load_state_dict writes them, so a copy or a compiled graph made from the
    weights can tell it is stale without comparing values (no host sync, no copy)."""
    return tuple(t._version for t in (*module.parameters(), *module.buffers()))
