"""Buckets: which rank owns which part of which parameter, and how gradients and updated
parameters are packed for the collectives (``optim/README.md`` §5).

Two layouts, chosen by the geometry (:class:`optim.registry.Geometry.layout`):

- ``"matrix"``: parameters of one param group with the same 2-D view shape ``A × B``, dtype and
  device form a bucket of n matrices. Rank r owns matrix i iff ``i mod W == r``; the bucket is padded
  to ``W · ceil(n/W)`` slots. The send buffer of the reduce-scatter is ``(W, ceil(n/W), A, B)`` with
  matrix i in slot ``[i mod W, i // W]``.
- ``"elementwise"``: parameter p is cut into W contiguous slices of ``k = ceil(numel/W)`` elements,
  rank r owns elements ``[min(rk, numel), min(rk + k, numel))``. All parameters of a bucket travel in
  one ``(W, Σ_p k_p)`` buffer.

Nothing here communicates or computes an update; :mod:`optim.sharded` does both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor


def matrix_view_shape(p: Tensor) -> tuple[int, int]:
    """``(d_out, d_in)``; ndim > 2 is flattened to ``(shape[0], prod(shape[1:]))`` (convolutions)."""
    return int(p.shape[0]), int(p.numel() // p.shape[0])


class _ReplicatedParts:
    """What both replicated layouts share: state is kept as it is, and a clip scales the averaged buffer."""

    @staticmethod
    def scale(out: Tensor, coef: float) -> Tensor:
        return out.mul_(coef)

    @staticmethod
    def open_state(state: dict[str, Any]) -> dict[str, Any]:
        return state

    @staticmethod
    def close_state(state: dict[str, Any], local: dict[str, Any], p: Tensor) -> None:
        """Nothing to do: ``open_state`` handed out the state itself."""


@dataclass
class MatrixBucket(_ReplicatedParts):
    group_index: int
    shape: tuple[int, int]
    params: list[Tensor]
    world: int
    rank: int
    layout = "matrix"
    partial = False  # the owner holds whole matrices: a whole-tensor norm is local

    @property
    def chunks(self) -> int:
        return math.ceil(len(self.params) / self.world)

    @property
    def owned_indices(self) -> range:
        return range(self.rank, len(self.params), self.world)

    def pack_grads(self) -> Tensor:
        """``(W, chunks, A, B)`` send buffer of the gradients; a missing ``.grad`` and padding are zero."""
        A, B = self.shape
        p0 = self.params[0]
        send = torch.empty((self.world, self.chunks, A, B), dtype=p0.dtype, device=p0.device)
        for r in range(self.world):
            for j in range(self.chunks):
                i = j * self.world + r  # send[r, j] holds matrix j·W + r
                g = self.params[i].grad if i < len(self.params) else None
                if g is None:
                    send[r, j].zero_()
                else:
                    send[r, j].copy_(g.reshape(A, B))
        return send

    def owned(self, out: Tensor) -> list[tuple[Tensor, Tensor, Tensor]]:
        """(param, its 2-D view, its slot of ``out``) for every matrix this rank owns."""
        return [
            (self.params[i], self.params[i].view(self.shape), out[j])
            for j, i in enumerate(self.owned_indices)
        ]

    def pack_owned(self) -> Tensor:
        """``(chunks, A, B)`` buffer of this rank's updated matrices (padding slots are never read)."""
        p0 = self.params[0]
        send = torch.empty((self.chunks, *self.shape), dtype=p0.dtype, device=p0.device)
        for j, i in enumerate(self.owned_indices):
            send[j].copy_(self.params[i].view(self.shape))
        return send

    def unpack(self, full: Tensor) -> None:
        """Copy every other rank's matrices from the all-gathered ``(W, chunks, A, B)`` buffer."""
        for i, p in enumerate(self.params):
            if i % self.world != self.rank:
                p.view(self.shape).copy_(full[i % self.world, i // self.world])

    def state_slice(self, index: int) -> tuple[int, int] | None:
        """State of a matrix is the whole matrix: no slice."""
        return None

    def own_state(self, whole: dict[int, dict[str, Any]], index: dict[int, int]) -> dict[int, dict[str, Any]]:
        """This rank's share of whole-parameter state (``whole``: optimizer index -> state; ``index``:
        id(param) -> optimizer index): the full state of every matrix it owns."""
        own = {}
        for k in self.owned_indices:
            i = index[id(self.params[k])]
            if i in whole:
                own[i] = whole[i]
        return own

    def owner_of(self, index: int) -> int:
        return index % self.world


@dataclass
class FlatBucket(_ReplicatedParts):
    group_index: int
    params: list[Tensor]
    world: int
    rank: int
    shard: list[int] = field(default_factory=list)  # k_p = ceil(numel / W)
    offsets: list[int] = field(default_factory=list)
    total: int = 0
    layout = "elementwise"
    partial = True  # every rank holds a slice: a whole-tensor norm needs an all-reduce

    def __post_init__(self) -> None:
        off = 0
        for p in self.params:
            k = math.ceil(p.numel() / self.world)
            self.shard.append(k)
            self.offsets.append(off)
            off += k
        self.total = off

    def owned_range(self, index: int, rank: int | None = None) -> tuple[int, int]:
        """[lo, hi) of parameter ``index``'s flat elements owned by ``rank`` (default: this rank)."""
        rank = self.rank if rank is None else rank
        k, n = self.shard[index], self.params[index].numel()
        lo = min(rank * k, n)
        return lo, min(lo + k, n)

    def pack_grads(self) -> Tensor:
        """``(W, Σ k_p)`` send buffer; a missing ``.grad`` is zero, the unused tail of a short last
        slice is never read."""
        p0 = self.params[0]
        send = torch.empty((self.world, self.total), dtype=p0.dtype, device=p0.device)
        for index, p in enumerate(self.params):
            off, k = self.offsets[index], self.shard[index]
            if p.grad is None:
                send[:, off : off + k].zero_()
                continue
            flat = p.grad.reshape(-1)
            for r in range(self.world):
                lo, hi = self.owned_range(index, r)
                if hi > lo:
                    send[r, off : off + hi - lo].copy_(flat[lo:hi])
        return send

    def owned(self, out: Tensor) -> list[tuple[Tensor, Tensor, Tensor]]:
        items = []
        for index, p in enumerate(self.params):
            lo, hi = self.owned_range(index)
            if hi > lo:
                off = self.offsets[index]
                items.append((p, p.view(-1)[lo:hi], out[off : off + hi - lo]))
        return items

    def pack_owned(self) -> Tensor:
        p0 = self.params[0]
        send = torch.empty((self.total,), dtype=p0.dtype, device=p0.device)
        for _, view, slot in self.owned(send):
            slot.copy_(view)
        return send

    def unpack(self, full: Tensor) -> None:
        for index, p in enumerate(self.params):
            off, flat = self.offsets[index], p.view(-1)
            for src in range(self.world):
                lo, hi = self.owned_range(index, src)
                if src != self.rank and hi > lo:
                    flat[lo:hi].copy_(full[src, off : off + hi - lo])

    def state_slice(self, index: int) -> tuple[int, int] | None:
        """This rank's [lo, hi) of parameter ``index``: its state tensors hold those elements."""
        return self.owned_range(index)

    def own_state(self, whole: dict[int, dict[str, Any]], index: dict[int, int]) -> dict[int, dict[str, Any]]:
        """This rank's share of whole-parameter state: its element slice of every per-element tensor
        (flat, one entry per element of the parameter); other values (e.g. a step count) as they are."""
        own = {}
        for k, p in enumerate(self.params):
            i = index[id(p)]
            lo, hi = self.owned_range(k)
            if i in whole and hi > lo:
                own[i] = {
                    key: v[lo:hi].clone()
                    if isinstance(v, Tensor) and v.ndim == 1 and v.numel() == p.numel()
                    else v
                    for key, v in whole[i].items()
                }
        return own

    def owner_of(self, index: int) -> int:
        return -1  # every rank owns a slice


Bucket = MatrixBucket | FlatBucket
