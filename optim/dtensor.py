"""Parameters sharded by FSDP2 (DTensors, ``Shard(0)`` on a 1-D device mesh): the buckets of the
``fsdp2`` mode of :class:`optim.sharded.ShardedOptimizer` (``optim/README.md`` §5, "FSDP2").

FSDP2 (``torch.distributed.fsdp.fully_shard``) cuts every parameter by rows: with ``W`` ranks and
``A`` rows, ``c = ceil(A/W)`` and rank r holds rows ``[min(rc, A), min(rc + c, A))`` (``torch.chunk``'s
rule; trailing ranks may hold none). Its backward has already averaged each gradient onto the same
rows. So:

- elementwise work (every estimator, the sign and AdamW steps) runs on the local rows, with no
  communication; an estimator that divides by a whole tensor's norm gets it from one all-reduce of
  the squared norms of a bucket's local parts (``Estimator.norm_input``);
- a geometry with ``layout="matrix"`` (Newton–Schulz) gets whole matrices without any rank gathering
  all of them: a bucket's n same-shape matrices are dealt out, matrix i to rank ``i mod W``. One
  all-to-all moves every rank's rows of matrix i to that owner, which stacks the rows (padded to
  ``c`` each) into whole matrices and transforms its ``ceil(n/W)`` at once; a second all-to-all
  returns every rank's rows of the result.

Optimizer state lives on the local rows, held as DTensors with the parameter's placement, so
``torch.distributed.checkpoint`` saves, loads and re-shards it (W ranks → W′ ranks) like any FSDP2
optimizer state.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .comm import Comm


def is_dtensor(t: Any) -> bool:
    """Whether ``t`` is a DTensor. ``torch.distributed.tensor`` is not imported for it: that costs about
    half a second at every start-up, and no DTensor can exist before something else imported it."""
    module = sys.modules.get("torch.distributed.tensor")
    return module is not None and isinstance(t, module.DTensor)


def local_part(t: Tensor) -> Tensor:
    """This rank's part of a tensor: the local rows of a DTensor (a view), a plain tensor as it is."""
    return t.to_local() if is_dtensor(t) else t


def local_rows(A: int, world: int, rank: int) -> tuple[int, int]:
    """``[lo, hi)``: the rows of an A-row parameter that rank ``rank`` of ``world`` holds under
    ``Shard(0)`` (``c = ceil(A/W)``; rank r: ``[min(rc, A), min(rc + c, A))``)."""
    c = math.ceil(A / world)
    return min(rank * c, A), min(rank * c + c, A)


def rows_here(p: Tensor) -> tuple[int, int]:
    """``[lo, hi)``: the rows of DTensor ``p`` (``Shard(0)`` on a 1-D mesh) that this rank holds."""
    mesh = p.device_mesh
    return local_rows(p.shape[0], mesh.size(), mesh.get_local_rank())


def placed_like(local: Tensor, p: Tensor) -> Tensor:
    """``local``, this rank's rows of a tensor shaped like DTensor ``p``, as a DTensor with ``p``'s
    placement (no communication)."""
    from torch.distributed.tensor import DTensor

    return DTensor.from_local(local, p.device_mesh, p.placements, run_check=False, shape=p.shape,
                              stride=p.stride())


def check_fsdp_param(p: Tensor, where: str) -> None:
    """A DTensor parameter this optimizer can step: ``Shard(0)`` on a 1-D mesh, rows as FSDP2 cuts them."""
    from torch.distributed.tensor import Shard

    mesh, placements = p.device_mesh, tuple(p.placements)
    if mesh.ndim != 1 or placements != (Shard(0),):
        raise ValueError(
            f"Invalid params: {where} is a DTensor placed {placements} on a {mesh.ndim}-D mesh; the "
            "optimizers step DTensors sharded by FSDP2, Shard(0) on a 1-D mesh (fully_shard(model, mesh=...) "
            "with a 1-D mesh). Shard the model with FSDP2 only, or pass plain tensors."
        )
    lo, hi = rows_here(p)
    if p.to_local().shape[0] != hi - lo:
        raise ValueError(
            f"Invalid params: {where} holds {p.to_local().shape[0]} rows on rank {mesh.get_local_rank()}, "
            f"expected {hi - lo} (torch.chunk's rule over {mesh.size()} ranks, as fully_shard cuts them)"
        )


def same_mesh(mesh: Any, p: Tensor, where: str) -> Any:
    """The device mesh of DTensor parameter ``p``, which must equal ``mesh``, the earlier parameters'
    (None: ``p`` is the first): one optimizer steps the parameters of one mesh."""
    if mesh is not None and p.device_mesh != mesh:  # fully_shard makes an equal mesh per call
        raise ValueError(
            f"Invalid params: {where} is sharded over another device mesh than the earlier parameters; one "
            "optimizer steps the parameters of one mesh (pass the same mesh to every fully_shard call, or "
            "make one optimizer per mesh)"
        )
    return p.device_mesh if mesh is None else mesh


def _local_grad(p: Tensor) -> Tensor:
    """This rank's rows of the averaged gradient (zero when ``.grad`` is None)."""
    if p.grad is None:
        return torch.zeros_like(p.to_local())
    return local_part(p.grad)


def open_state(state: dict[str, Any]) -> dict[str, Any]:
    """The state with every DTensor replaced by its local rows (views, not copies)."""
    return {k: local_part(v) if isinstance(v, Tensor) else v for k, v in state.items()}


def close_state(state: dict[str, Any], local: dict[str, Any], p: Tensor) -> None:
    """Write back what an estimator left in ``local``: a tensor shaped like ``p``'s local rows becomes a
    DTensor with ``p``'s placement (no communication); anything else is kept as it is."""
    shape = p.to_local().shape
    state.clear()
    for key, value in local.items():
        if isinstance(value, Tensor) and not is_dtensor(value) and value.shape == shape:
            value = placed_like(value, p)
        state[key] = value


@dataclass
class LocalBucket:
    """Parameters of one param group (for ``"matrix"``: of one 2-D view shape ``A × B``) sharded by FSDP2.

    Every rank "owns" the local rows of every parameter: the estimator and an elementwise geometry run
    there. ``whole_matrices`` is the all-to-all round trip of the matrix layout."""

    group_index: int
    params: list[Tensor]
    comm: Comm
    shape: tuple[int, int] | None  # (A, B) for the matrix layout, None for elementwise
    partial = True  # no rank holds a whole parameter: a whole-tensor norm needs an all-reduce

    def gather_grads(self) -> tuple[list[Tensor], None]:
        """The averaged gradient's local rows (FSDP2 averaged it already): no collective."""
        return [_local_grad(p) for p in self.params], None

    @staticmethod
    def scale(out: list[Tensor], coef: float) -> list[Tensor]:
        return [g * coef for g in out]  # never scales the caller's .grad in place

    def owned(self, out: list[Tensor]) -> list[tuple[Tensor, Tensor, Tensor]]:
        """(param, its local rows to update, their gradient) for every parameter of the bucket; for the
        matrix layout the rows are viewed as ``(rows, B)``."""
        items = []
        for p, g in zip(self.params, out):
            X = p.to_local()
            if self.shape is not None:
                X = X.view(X.shape[0], self.shape[1])
            items.append((p, X, g))
        return items

    def open_state(self, state: dict[str, Any]) -> dict[str, Any]:
        return open_state(state)

    def close_state(self, state: dict[str, Any], local: dict[str, Any], p: Tensor) -> None:
        close_state(state, local, p)

    def whole_matrices(self, directions: list[Tensor], transform: Callable[[Tensor], Tensor]) -> list[Tensor]:
        """``transform`` applied to whole matrices, returned as each rank's rows.

        Matrix i goes to rank ``o = i mod W`` in slot ``j = i // W``. The first all-to-all sends the
        ``(W, ceil(n/W), c, B)`` buffer whose ``[o, j]`` holds this rank's rows of matrix ``jW + o``
        (zero-padded to c rows); the owner reads ``recv[s, j]`` = rank s's rows, so its whole matrix j is
        ``recv[:, j]`` stacked by rank, cut to A rows. It transforms its matrices as one batch, and the
        second all-to-all sends each rank its rows back."""
        assert self.shape is not None
        A, B = self.shape
        W, r = self.comm.world, self.comm.rank
        c, n = math.ceil(A / W), len(self.params)
        chunks = math.ceil(n / W)
        ref = directions[0]
        send = ref.new_zeros((W, chunks, c, B))
        for i, u in enumerate(directions):
            send[i % W, i // W, : u.shape[0]].copy_(u.reshape(-1, B))
        recv = self.comm.all_to_all(send)
        mine = len(range(r, n, W))
        whole = recv.permute(1, 0, 2, 3).reshape(chunks, W * c, B)[:mine, :A]
        back = ref.new_zeros((chunks, W * c, B))
        if mine:
            back[:mine, :A] = transform(whole)
        result = self.comm.all_to_all(back.view(chunks, W, c, B).permute(1, 0, 2, 3).contiguous())
        return [result[i % W, i // W, : u.shape[0]] for i, u in enumerate(directions)]

