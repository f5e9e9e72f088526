"""Data-parallel training with torch.distributed: every distributed concern of training, in one place.

Launch with torchrun (or `hwm-studio train --processes N`, which runs it for you):

    torchrun --standalone --nproc-per-node 2 -m hwm_studio train --system pendulum --out runs/p

Each process holds the whole model and data; torchrun's environment (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR, MASTER_PORT) says which one it is. `process_group` joins them (gloo on
cpu, nccl on cuda: one GPU per process, that of LOCAL_RANK), and `fit` (training/fit.py) trains
through DistributedDataParallel whenever a group of more than one process is initialised:

  - the global batch is split, not resampled: every rank draws the same B windows from the same
    seeded generator and keeps its B/N of them (`shard`). The loss is a mean over windows and DDP
    averages the gradients, so N ranks take the very steps one process takes on batch B (the same
    numbers up to float summation order), and a run's result does not depend on N;
  - what steers training is agreed: the step's losses are averaged over ranks (`mean_over_ranks`:
    a non-finite loss on any rank is non-finite on all, so every rank stops at the same step, and
    the divergence test sees the loss of the whole batch); gradients need no extra flag, DDP has
    already averaged them, so a non-finite gradient on one rank is one on every rank; a callback
    asking to stop on any rank stops all (`any_rank`); validation and structure decisions are
    taken on rank 0 and broadcast (`on_writer`). Weights are identical on every rank, so the last
    good weights restored on divergence are too;
  - rank 0 alone writes (`is_writer`): the run directory, checkpoints, the progress bar, reports.

Out of scope: pixel models (their window loss calibrates the image geometry from one batch at a
step each rank would choose by itself), and the coupling-sparsity prior of HWMs of multi-entity
systems with distinct entities (the RMS over the batch of each pair's force, a square root of a
batch mean) is under N ranks the mean of N per-shard RMS values: a slightly different estimate of
the same penalty, the only term that is not a mean over windows.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from hwm_studio.device import resolve_device

T = TypeVar("T")

# torchrun's variables that name this process; present (WORLD_SIZE > 1) when torchrun started us
ENV_WORLD_SIZE, ENV_RANK, ENV_LOCAL_RANK = "WORLD_SIZE", "RANK", "LOCAL_RANK"


def launched_size() -> int:
    """How many processes torchrun started together with this one (1: not started by torchrun)."""
    return int(os.environ.get(ENV_WORLD_SIZE, "1"))


def launched() -> bool:
    """Whether torchrun started this process as one of several (its environment says so)."""
    return launched_size() > 1


def active() -> bool:
    """Whether a process group of more than one process is initialised: fit() then trains with DDP."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_writer() -> bool:
    """Rank 0 (or the only process): the one that writes files and talks to the user."""
    return rank() == 0


def local_device(name: str = "auto") -> torch.device:
    """The device this process trains on: `name` resolved, and on cuda the GPU of LOCAL_RANK."""
    device = resolve_device(name)
    if device.type != "cuda" or not launched():
        return device
    if device.index is not None:
        raise ValueError(f"device {name!r} names one GPU; with several processes give 'cuda' (each takes its own)")
    index = int(os.environ.get(ENV_LOCAL_RANK, "0"))
    if index >= torch.cuda.device_count():
        raise ValueError(f"process {index} on this machine has no GPU of its own ({torch.cuda.device_count()} found)")
    return torch.device("cuda", index)


@contextmanager
def process_group(device: str = "auto") -> Iterator[None]:
    """Join torchrun's process group for the body (gloo on cpu, nccl on cuda), leave it after.
    Does nothing in a process torchrun did not start as one of several."""
    if not launched() or dist.is_initialized():
        yield
        return
    dev = local_device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")  # env://: torchrun's variables
    try:
        yield
    finally:
        dist.destroy_process_group()


# --- what the ranks agree on -------------------------------------------------------------------
def _comm_device() -> torch.device:
    """Where collectives' tensors live: nccl only moves cuda tensors."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def shard(batch_size: int) -> slice | None:
    """This rank's rows of a global batch of `batch_size` (None: a single process keeps them all)."""
    if not active():
        return None
    n = world_size()
    if batch_size % n:
        raise ValueError(f"batch size {batch_size} does not split evenly over {n} processes")
    per = batch_size // n
    return slice(rank() * per, (rank() + 1) * per)


def mean_over_ranks(values: Sequence[float]) -> list[float]:
    """The mean of each value over the ranks (one all-reduce); a non-finite value anywhere is
    non-finite everywhere. The values themselves in a single process."""
    if not active():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=_comm_device())
    dist.all_reduce(t)
    return (t / world_size()).tolist()


def any_rank(*flags: bool) -> tuple[bool, ...]:
    """Each flag, true if it is true on any rank (one all-reduce for all of them)."""
    if not active():
        return tuple(flags)
    t = torch.tensor([float(f) for f in flags], device=_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return tuple(bool(v) for v in t.tolist())


def on_writer(compute: Callable[[], T]) -> T:
    """compute() on rank 0 alone, its result sent to every rank: decisions all ranks must share
    (validation, structure). Other ranks wait meanwhile. In a single process: compute()."""
    if not active():
        return compute()
    box = [compute() if is_writer() else None]
    dist.broadcast_object_list(box, src=0, device=_comm_device())
    return box[0]  # type: ignore[return-value]


def data_parallel(module: torch.nn.Module) -> torch.nn.Module:
    """`module` wrapped in DistributedDataParallel when training is distributed, else itself.

    find_unused_parameters: an energy network's output bias never gets a gradient (dynamics see
    only dH/dz), and DDP must be told not to wait for it; such parameters keep no gradient, as in
    one process. Buffers are made rank 0's once, when wrapping, not before every step: they are set
    from the data, alike on every rank.
    """
    if not active():
        return module
    device = next(module.parameters()).device
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=True, forward_sync_buffers=False)
