"""Ranks: the process group, signals that ask a run to stop, dying with the launcher, and one construct
that turns a failure on any rank into an error on every rank (so no rank waits forever in a collective).

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK; without it the run is one process. On GPUs the process group
is ``cpu:gloo,cuda:nccl``: NCCL for CUDA tensors, gloo for the trainer's small CPU control collectives.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import signal
import sys
from collections.abc import Iterator

import torch
import torch.distributed as dist

from harness.config import ConfigError, Device

DIST_BACKEND_CUDA = "cpu:gloo,cuda:nccl"  # NCCL alone cannot reduce a CPU tensor


def setup_distributed(device_pref: Device, group_of_one: bool = False):
    """(rank, world_size, device). torchrun sets RANK/WORLD_SIZE. On GPUs the process group has NCCL for
    CUDA tensors and gloo for CPU ones (the trainer's small control collectives: pre-flight agreement,
    checkpoint finiteness, the probe's minimum); on CPUs gloo only. ``group_of_one``: make a process group
    in one process too (FSDP2 needs one; an in-memory store, so nothing listens on a port)."""
    use_cuda = torch.cuda.is_available() if device_pref == Device.auto else device_pref == Device.cuda
    if use_cuda and not torch.cuda.is_available():
        raise ConfigError(
            "config key device='cuda' is invalid: CUDA is not available; use device=cpu or auto"
        )
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    if use_cuda and local_world > torch.cuda.device_count():
        raise ConfigError(
            f"{local_world} processes per node were started but only {torch.cuda.device_count()} GPU(s) are "
            f"visible: use torchrun --nproc_per_node={torch.cuda.device_count()} (or fewer), or device=cpu"
        )
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    backend = DIST_BACKEND_CUDA if use_cuda else "gloo"
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend=backend, device_id=device if use_cuda else None)
    elif group_of_one and not dist.is_initialized():
        dist.init_process_group(backend=backend, store=dist.HashStore(), rank=0, world_size=1)
    return rank, world, device


def exit_with_parent() -> None:
    """Under torchrun, die with the agent: a `kill -9` of the agent must not leave workers training."""
    if "TORCHELASTIC_RUN_ID" not in os.environ or not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the agent died before prctl took effect
        os._exit(1)


class StopSignal:
    """SIGTERM and SIGUSR1 (Slurm's --signal=USR1@120) ask the run to stop after the current step."""

    def __init__(self) -> None:
        self.name: str | None = None
        self._old = {}
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            with contextlib.suppress(ValueError):  # not the main thread (e.g. an embedding test harness)
                self._old[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        self.name = signal.Signals(signum).name

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


class RankFailed(RuntimeError):
    """Raised on a rank whose own work succeeded while another rank's failed (its error is in its output)."""


@contextlib.contextmanager
def fail_together(world: int, what: str = "its pre-flight checks") -> Iterator[None]:
    """Run the block on every rank; if it raised on any rank, raise on every rank: the rank's own error
    where it failed, :class:`RankFailed` elsewhere. One all-reduce of a flag (gloo: CPU tensors), so a
    rank that failed never leaves the others waiting in a later collective. ``SystemExit`` and
    ``KeyboardInterrupt`` pass straight through."""
    error: Exception | None = None
    try:
        yield
    except Exception as e:  # noqa: BLE001 - re-raised below, on every rank
        error = e
    if world > 1:
        flag = torch.tensor([0.0 if error is None else 1.0])
        dist.all_reduce(flag)
        if error is None and flag.item() > 0:
            raise RankFailed(f"another rank failed {what}; its error is in its output")
    if error is not None:
        raise error


def mean_over_ranks(x: torch.Tensor, world: int) -> float:
    """The mean of a 0-d tensor over ranks, as a float."""
    if world > 1:
        x = x.clone()
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
        x /= world
    return float(x)


def barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


def teardown() -> None:
    """End the process group, after a barrier so no rank tears down while another has collectives in
    flight (a no-op in one process)."""
    if dist.is_initialized():
        with contextlib.suppress(Exception):
            dist.barrier()
        gc.collect()  # FSDP2's modules hold the group: free them before it goes (else an abort at exit)
        dist.destroy_process_group()
