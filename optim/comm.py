"""The two collectives the sharded optimizer needs, with world size 1 as the identity.

Averages are a SUM followed by a 1/W scale (gloo has no AVG reduction), on flat 1-D buffers so the
same calls run on gloo (CPU) and NCCL (CUDA). Every launched collective keeps its input and output
tensors referenced, by this object and then by a small module-level ring that outlives it: a process
that tears down right after ``step()`` (``destroy_process_group``, interpreter exit), even after the
optimizer itself was collected, must never leave gloo's worker thread holding the last reference to a
tensor while Python finalizes (seen as "terminate called without an active exception", SIGABRT, in
about 1 of 8 exits before this).
"""

from __future__ import annotations

import warnings
from collections import deque
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

# The last few batches of collective buffers of every Comm, kept by the module rather than by the object:
# an optimizer may be garbage-collected before the process group is destroyed (a loop over optimizers, a
# function returning), and its last buffers must still outlive gloo's worker thread's references to them.
_RETIRED: deque[list[Any]] = deque(maxlen=8)


class Comm:
    def __init__(self, process_group: Any = None) -> None:
        if dist.is_available() and dist.is_initialized():
            self.group = process_group
            self.world = dist.get_world_size(process_group)
            self.rank = dist.get_rank(process_group)
        else:
            self.group, self.world, self.rank = None, 1, 0
        self._current: list[Any] = []  # (work, tensors...) launched since begin_step()
        self._previous: list[Any] = []  # the last step's, kept alive until the next step starts

    def begin_step(self) -> None:
        """Start a new batch of collectives. The batch before the previous one is released: every one of its
        collectives was waited on a step ago. Only a Comm that dies hands its batches to the module's ring
        (handing every step's there kept 8 steps of gradient-sized buffers alive: a GPT-124M benchmark on 2
        ranks ran out of 24 GB)."""
        self._previous, self._current = self._current, []

    def __del__(self) -> None:
        for batch in (getattr(self, "_previous", None), getattr(self, "_current", None)):
            if batch:
                _RETIRED.append(batch)

    def reduce_scatter_mean(self, send: Tensor) -> tuple[Tensor, Any]:
        """Launch: rank r receives ``mean over ranks of send[r]``; finish with :meth:`wait_mean`."""
        if self.world == 1:
            return send[0], None
        out = torch.empty(send[0].numel(), dtype=send.dtype, device=send.device)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # renamed in torch 2.13; kept for 2.11
            work = dist.reduce_scatter_tensor(
                out, send.reshape(-1), op=dist.ReduceOp.SUM, group=self.group, async_op=True
            )
        self._current.append((work, send, out))
        return out.view(send.shape[1:]), work

    def wait_mean(self, out: Tensor, work: Any) -> None:
        if work is not None:
            work.wait()
            out.mul_(1.0 / self.world)

    def all_reduce_sum(self, x: Tensor) -> Tensor:
        """Blocking sum over ranks of a small tensor (e.g. a squared norm); identity at world size 1."""
        if self.world == 1:
            return x
        x = x.clone()
        dist.all_reduce(x, op=dist.ReduceOp.SUM, group=self.group)
        return x

    def all_gather(self, inp: Tensor) -> tuple[Tensor, Any]:
        """Launch: returns a (W, ...) tensor whose row r is rank r's ``inp`` once ``work.wait()`` ran."""
        if self.world == 1:
            return inp.unsqueeze(0), None
        out = torch.empty(self.world * inp.numel(), dtype=inp.dtype, device=inp.device)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            work = dist.all_gather_into_tensor(out, inp.reshape(-1), group=self.group, async_op=True)
        self._current.append((work, inp, out))
        return out.view(self.world, *inp.shape), work

    def all_to_all(self, send: Tensor) -> Tensor:
        """Blocking: ``send`` is ``(W, ...)``; returns ``recv`` with ``recv[s]`` = rank s's ``send[r]``
        (r: this rank). Identity at world size 1."""
        if self.world == 1:
            return send
        send = send.contiguous()
        recv = torch.empty_like(send)
        work = dist.all_to_all_single(recv, send, group=self.group, async_op=True)
        self._current.append((work, send, recv))
        work.wait()
        return recv
