"""Shared machinery of MuonMVR and GluonMVR: parameter routing, sharding over ranks, communication,
reference hand-over and (sharded) state. The math lives in ``newton_schulz``, ``estimators`` and
``updates``; the subclasses only choose the estimator and the update map.

Distributed execution (ALGORITHMS.md §5), one code path for world size 1..N (world size 1 when
``torch.distributed`` is not initialized, where every collective below is the identity):

- Matrix parameters (lmo ``"spectral"``) are bucketed by (param group, exact 2-D shape, dtype,
  device). In a bucket of n matrices, rank r owns matrix i iff ``i mod W == r``; the bucket is padded
  with zero matrices to a multiple of W. Gradients are reduce-scattered to the owner and averaged;
  the owner keeps the estimator state (M, G, h), orthogonalizes all its matrices of the bucket in
  one batched Newton–Schulz call, updates them, and the updated parameters are all-gathered
  asynchronously (overlapping the next bucket's work).
- Elementwise parameters (lmo ``"sign"`` and ``"adamw"``) are sharded by elements: parameter p with
  ``k = ceil(numel/W)`` is split into W contiguous slices of k elements, rank r owns slice r. All
  parameters of a bucket travel in one reduce-scatter and one all-gather.
- Optimizer state therefore lives only on the owner: bytes per rank ≈ replicated bytes / W.

Gradients are never read from other ranks by the trainer: each rank leaves its *local mean*
gradient in ``.grad`` and the optimizer averages. A parameter whose ``.grad`` is None contributes a
zero gradient, so collectives stay matched across ranks.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from .newton_schulz import default_ns_dtype, newton_schulz

LMOS = ("spectral", "sign", "adamw")
REFERENCE_SOURCES = ("none", "prev_step", "prev_params", "prev_batch")
TWO_PASS_SOURCES = ("prev_params", "prev_batch")


# ----------------------------------------------------------------------------------------------
# communication
# ----------------------------------------------------------------------------------------------
class Comm:
    """The two collectives the optimizers need, with world size 1 as the identity.

    Uses SUM followed by a 1/W scale (gloo has no AVG reduction), and stacked tensors of shape
    (W, ...) so the same calls run on gloo (CPU) and NCCL (CUDA).
    """

    def __init__(self, process_group: Any = None) -> None:
        if dist.is_available() and dist.is_initialized():
            self.group = process_group
            self.world = dist.get_world_size(process_group)
            self.rank = dist.get_rank(process_group)
        else:
            self.group, self.world, self.rank = None, 1, 0

    def reduce_scatter_mean(self, send: Tensor) -> tuple[Tensor, Any]:
        """Launch: rank r receives ``mean over ranks of send[r]``; finish with :meth:`wait_mean`."""
        if self.world == 1:
            return send[0], None
        out = torch.empty(send[0].numel(), dtype=send.dtype, device=send.device)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # renamed in torch 2.13; kept for 2.11
            work = dist.reduce_scatter_tensor(  # flat 1-D buffers: gloo wants the concatenated form
                out, send.reshape(-1), op=dist.ReduceOp.SUM, group=self.group, async_op=True
            )
        return out.view(send.shape[1:]), (work, send)  # keep the input alive until the wait

    def wait_mean(self, out: Tensor, work: Any) -> None:
        if work is not None:
            work[0].wait()
            out.mul_(1.0 / self.world)

    def all_gather(self, inp: Tensor) -> tuple[Tensor, Any]:
        """Launch: returns a (W, ...) tensor whose row r is rank r's ``inp`` once the work is done."""
        if self.world == 1:
            return inp.unsqueeze(0), None
        out = torch.empty(self.world * inp.numel(), dtype=inp.dtype, device=inp.device)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            work = dist.all_gather_into_tensor(out, inp.reshape(-1), group=self.group, async_op=True)
        return out.view(self.world, *inp.shape), (work, inp)  # keep the input alive until the wait


# ----------------------------------------------------------------------------------------------
# buckets
# ----------------------------------------------------------------------------------------------
def matrix_view_shape(p: Tensor) -> tuple[int, int]:
    """2-D shape a parameter takes in the spectral geometry: ``(d_out, d_in)``; ndim > 2 is flattened
    to ``(shape[0], prod(shape[1:]))`` (convolutions)."""
    return int(p.shape[0]), int(p.numel() // p.shape[0])


@dataclass
class MatrixBucket:
    group_index: int
    shape: tuple[int, int]
    params: list[Tensor]
    owned: list[int]  # indices i with i % W == rank, ascending; owned[j] = j * W + rank
    world: int

    @property
    def chunks(self) -> int:
        return math.ceil(len(self.params) / self.world)


@dataclass
class FlatBucket:
    group_index: int
    lmo: str
    params: list[Tensor]
    world: int
    rank: int
    shard: list[int] = field(default_factory=list)  # k_p = ceil(numel / W)
    offsets: list[int] = field(default_factory=list)
    total: int = 0

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


# ----------------------------------------------------------------------------------------------
# validation helpers
# ----------------------------------------------------------------------------------------------
def _bad(name: str, value: Any, why: str) -> ValueError:
    return ValueError(f"Invalid {name}: {value!r} ({why})")


def check_float(
    name: str,
    value: Any,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _bad(name, value, "must be a finite number")
    if lo is not None and (value < lo or (lo_open and value == lo)):
        raise _bad(name, value, f"must be {'>' if lo_open else '>='} {lo}")
    if hi is not None and (value > hi or (hi_open and value == hi)):
        raise _bad(name, value, f"must be {'<' if hi_open else '<='} {hi}")


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> None:
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        raise _bad(name, value, f"must be one of {', '.join(map(repr, choices))}")


def check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise _bad(name, value, "must be True or False")


# ----------------------------------------------------------------------------------------------
# the base optimizer
# ----------------------------------------------------------------------------------------------
class ShardedLMOOptimizer(torch.optim.Optimizer):
    """Base class: routing, validation, sharded step loop, reference hand-over, state_dict.

    Subclasses implement :meth:`_validate_hparams`, :meth:`_group_reference`, :meth:`_direction`
    (the estimator), :meth:`_apply_spectral` and, if they support it, :meth:`_apply_sign`.
    """

    supported_lmos: tuple[str, ...] = LMOS

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        defaults: dict[str, Any],
        *,
        adamw_overrides: dict[str, Any],
        process_group: Any = None,
    ) -> None:
        self._validate_common(defaults, "")
        self._validate_hparams(defaults, "")
        for key in ("lr", "weight_decay"):
            if adamw_overrides.get(key) is not None:
                check_float(f"adamw_{key}", adamw_overrides[key], lo=0.0)
        self._comm = Comm(process_group)
        self._adamw_overrides = {k: v for k, v in adamw_overrides.items() if v is not None}
        self._plan: list[MatrixBucket | FlatBucket] | None = None
        self._warned: set[str] = set()
        params = list(params)
        if not params:
            raise ValueError("Invalid params: the optimizer got an empty parameter list")
        super().__init__(params, defaults)
        refs = {g["reference"] for g in self.param_groups if g["lmo"] != "adamw"}
        if len(refs) > 1:
            raise ValueError(
                f"Invalid reference: every param group must use the same reference source, got {sorted(refs)}"
            )

    # ---------------------------------------------------------------- groups and validation
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group; a group without ``"lmo"`` is split into a ``"spectral"`` group (ndim ≥ 2) and
        an ``"adamw"`` group (ndim < 2). AdamW groups take ``adamw_lr`` / ``adamw_weight_decay``
        unless they set ``lr`` / ``weight_decay`` themselves."""
        param_group = dict(param_group)
        ps = param_group["params"]
        ps = [ps] if isinstance(ps, Tensor) else list(ps)
        ps = [p[1] if isinstance(p, tuple) else p for p in ps]  # accept (name, tensor) pairs
        seen = {id(p) for g in getattr(self, "param_groups", []) for p in g["params"]}
        for k, p in enumerate(ps):
            if not isinstance(p, Tensor):
                raise TypeError(f"Invalid params: element {k} is a {type(p).__name__}, not a Tensor")
            if id(p) in seen:
                raise ValueError(
                    f"Invalid params: parameter of shape {tuple(p.shape)} appears more than once "
                    "(every parameter must be covered by exactly one param group)"
                )
            seen.add(id(p))
        if "lmo" in param_group:
            routed = [{**param_group, "params": ps}]
        else:
            mats = [p for p in ps if p.ndim >= 2]
            vecs = [p for p in ps if p.ndim < 2]
            routed = [
                {**param_group, "params": sub, "lmo": lmo}
                for lmo, sub in (("spectral", mats), ("adamw", vecs))
                if sub
            ]
        for group in routed:
            check_choice("lmo", group["lmo"], self.supported_lmos)
            if group["lmo"] == "adamw":
                for key, value in self._adamw_overrides.items():
                    group.setdefault(key, value)
            super().add_param_group(group)
            group = self.param_groups[-1]
            group.setdefault("initial_lr", group["lr"])
            self._validate_common(group, " (param group)")
            self._validate_hparams(group, " (param group)")
            for p in group["params"]:
                if group["lmo"] == "spectral" and p.ndim < 2:
                    raise _bad(
                        "lmo", "spectral", f"needs parameters with ndim >= 2, got shape {tuple(p.shape)}"
                    )
                if group["lmo"] == "sign" and p.ndim < 1:
                    raise _bad("lmo", "sign", "needs parameters with ndim >= 1")
                if not p.is_contiguous():
                    raise ValueError(f"Invalid params: parameter of shape {tuple(p.shape)} is not contiguous")
        self._plan = None

    @staticmethod
    def _validate_common(group: dict[str, Any], where: str) -> None:
        check_float("lr" + where, group["lr"], lo=0.0)
        check_float("weight_decay" + where, group["weight_decay"], lo=0.0)
        check_choice("reference" + where, group["reference"], REFERENCE_SOURCES)
        steps = group["ns_steps"]
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise _bad("ns_steps" + where, steps, "must be an int >= 1")
        ns_dtype = group["ns_dtype"]
        if ns_dtype is not None and not (isinstance(ns_dtype, torch.dtype) and ns_dtype.is_floating_point):
            raise _bad("ns_dtype" + where, ns_dtype, "must be None or a floating torch.dtype")
        betas = group["adamw_betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise _bad("adamw_betas" + where, betas, "must be a pair (beta1, beta2)")
        for b in betas:
            check_float("adamw_betas" + where, b, lo=0.0, hi=1.0, hi_open=True)
        check_float("adamw_eps" + where, group["adamw_eps"], lo=0.0, lo_open=True)

    def _validate_hparams(self, group: dict[str, Any], where: str) -> None:
        raise NotImplementedError

    # ---------------------------------------------------------------- trainer-facing properties
    def _group_reference(self, group: dict[str, Any]) -> str:
        """Reference source the estimator of ``group`` actually uses (``"none"`` if it ignores h)."""
        raise NotImplementedError

    @property
    def reference_source(self) -> str:
        """``"none" | "prev_step" | "prev_params" | "prev_batch"``: what the training loop must hand over."""
        used = {self._group_reference(g) for g in self.param_groups} - {"none"}
        return used.pop() if used else "none"

    @property
    def grad_evals_per_step(self) -> int:
        """Gradient evaluations (forward + backward over a global batch) one step costs: 1 or 2."""
        return 2 if self.reference_source in TWO_PASS_SOURCES else 1

    @property
    def world_size(self) -> int:
        return self._comm.world

    @property
    def rank(self) -> int:
        return self._comm.rank

    def state_bytes(self) -> int:
        """Bytes of optimizer state held by this rank."""
        return sum(
            v.numel() * v.element_size()
            for s in self.state.values()
            for v in s.values()
            if isinstance(v, Tensor)
        )

    # ---------------------------------------------------------------- plan
    def _get_plan(self) -> list[MatrixBucket | FlatBucket]:
        if self._plan is None:
            W, r = self._comm.world, self._comm.rank
            plan: list[MatrixBucket | FlatBucket] = []
            for gi, group in enumerate(self.param_groups):
                buckets: dict[tuple, list[Tensor]] = {}
                for p in group["params"]:
                    if not p.requires_grad:
                        continue  # frozen: never updated, identical decision on every rank
                    shape = matrix_view_shape(p) if group["lmo"] == "spectral" else ()
                    buckets.setdefault((shape, p.dtype, str(p.device)), []).append(p)
                for (shape, _, _), ps in buckets.items():
                    if group["lmo"] == "spectral":
                        owned = list(range(r, len(ps), W))
                        plan.append(MatrixBucket(gi, shape, ps, owned, W))
                    else:
                        plan.append(FlatBucket(gi, group["lmo"], ps, W, r))
            self._plan = plan
        return self._plan

    # ---------------------------------------------------------------- communication per bucket
    def _scatter(self, bucket: MatrixBucket | FlatBucket) -> tuple[Tensor, Any]:
        """Launch the averaging reduce-scatter of the current ``.grad`` of a bucket (None → zero)."""
        W = self._comm.world
        p0 = bucket.params[0]
        if isinstance(bucket, MatrixBucket):
            A, B = bucket.shape
            send = torch.zeros((W, bucket.chunks, A, B), dtype=p0.dtype, device=p0.device)
            for i, p in enumerate(bucket.params):
                if p.grad is not None:
                    send[i % W, i // W].copy_(p.grad.reshape(A, B))
        else:
            send = torch.zeros((W, bucket.total), dtype=p0.dtype, device=p0.device)
            for index, p in enumerate(bucket.params):
                if p.grad is None:
                    continue
                flat, off = p.grad.reshape(-1), bucket.offsets[index]
                for r in range(W):
                    lo, hi = bucket.owned_range(index, r)
                    if hi > lo:
                        send[r, off : off + hi - lo].copy_(flat[lo:hi])
        return self._comm.reduce_scatter_mean(send)

    def _owned(self, bucket: MatrixBucket | FlatBucket, out: Tensor) -> list[tuple[Tensor, Tensor, Tensor]]:
        """(param, owned part of the param as a view, owned part of ``out``) for this rank."""
        items = []
        if isinstance(bucket, MatrixBucket):
            for j, i in enumerate(bucket.owned):
                p = bucket.params[i]
                items.append((p, p.view(bucket.shape), out[j]))
        else:
            for index, p in enumerate(bucket.params):
                lo, hi = bucket.owned_range(index)
                if hi > lo:
                    off = bucket.offsets[index]
                    items.append((p, p.view(-1)[lo:hi], out[off : off + hi - lo]))
        return items

    def _gather(self, bucket: MatrixBucket | FlatBucket) -> tuple[Tensor | None, Any]:
        """Launch the all-gather of this rank's updated parameters (nothing to do at world size 1)."""
        if self._comm.world == 1:
            return None, None
        p0 = bucket.params[0]
        if isinstance(bucket, MatrixBucket):
            send = torch.zeros((bucket.chunks, *bucket.shape), dtype=p0.dtype, device=p0.device)
        else:
            send = torch.zeros((bucket.total,), dtype=p0.dtype, device=p0.device)
        for _, view, slot in self._owned(bucket, send):
            slot.copy_(view)
        return self._comm.all_gather(send)

    def _write_back(self, bucket: MatrixBucket | FlatBucket, full: Tensor | None, work: Any) -> None:
        if full is None:
            return
        work[0].wait()
        W, r = self._comm.world, self._comm.rank
        if isinstance(bucket, MatrixBucket):
            for i, p in enumerate(bucket.params):
                if i % W != r:
                    p.view(bucket.shape).copy_(full[i % W, i // W])
        else:
            for index, p in enumerate(bucket.params):
                off, flat = bucket.offsets[index], p.view(-1)
                for src in range(W):
                    lo, hi = bucket.owned_range(index, src)
                    if src != r and hi > lo:
                        flat[lo:hi].copy_(full[src, off : off + hi - lo])

    # ---------------------------------------------------------------- reference hand-over
    def update_last_grad(self) -> None:
        """Seed 000's hand-over: the current ``.grad`` (averaged over ranks) becomes ``h_t`` of the
        **next** ``step()``. A no-op for the one-pass sources (``prev_step``, ``none``), as in seed
        000's approximate mode. Call on every rank."""
        self._hand_over("h")

    def update_lookahead_grad(self) -> None:
        """Copy-free ``prev_params`` loop: the current ``.grad`` (averaged over ranks) becomes ``h`` of
        the step **after** the next one (it is promoted at the end of the coming ``step()``). At step
        t with parameters X_t, accumulate ∇f(X_t; ξ_{t+1}), call this, zero, accumulate g_t on ξ_t,
        ``step()``: step t+1 then uses ``h_{t+1} = ∇f(X_t; ξ_{t+1})``. Call on every rank."""
        self._hand_over("h_next")

    @torch.no_grad()
    def _hand_over(self, key: str) -> None:
        if self.reference_source not in TWO_PASS_SOURCES:
            return
        plan = [
            b for b in self._get_plan() if self._group_reference(self.param_groups[b.group_index]) != "none"
        ]
        launched = [(b, *self._scatter(b)) for b in plan]
        for bucket, out, work in launched:
            self._comm.wait_mean(out, work)
            for p, _, g in self._owned(bucket, out):
                state = self.state[p]
                if key in state:
                    state[key].copy_(g)
                else:
                    state[key] = g.clone()  # owned buffer, never an alias of p.grad

    def _take_reference(self, group: dict[str, Any], state: dict[str, Any]) -> Tensor | None:
        source = self._group_reference(group)
        if source == "none":
            return None
        if source == "prev_step":
            return state.get("h")
        h = state.pop("h", None)
        if h is None and state.get("step", 0) > 0 and "missing_reference" not in self._warned:
            self._warned.add("missing_reference")
            warnings.warn(
                f"step() with reference source {source!r} but no reference gradient was handed over "
                "(update_last_grad / update_lookahead_grad); using a zero correction (h_t := g_t).",
                RuntimeWarning,
                stacklevel=4,
            )
        return h

    def _finish_reference(self, group: dict[str, Any], state: dict[str, Any], g: Tensor) -> None:
        source = self._group_reference(group)
        if source == "prev_step":
            if "h" in state:
                state["h"].copy_(g)
            else:
                state["h"] = g.clone()
        elif "h_next" in state:
            state["h"] = state.pop("h_next")
        state["step"] = state.get("step", 0) + 1

    # ---------------------------------------------------------------- subclass hooks
    def _direction(self, group: dict[str, Any], state: dict[str, Any], g: Tensor, h: Tensor | None) -> Tensor:
        raise NotImplementedError

    def _apply_spectral(self, group: dict[str, Any], X: Tensor, O: Tensor) -> None:
        raise NotImplementedError

    def _apply_sign(self, group: dict[str, Any], X: Tensor, u: Tensor, d_model: int) -> None:
        raise NotImplementedError

    # ---------------------------------------------------------------- the step
    def _update_bucket(self, bucket: MatrixBucket | FlatBucket, out: Tensor) -> None:
        from .updates import adamw_update_

        group = self.param_groups[bucket.group_index]
        owned = self._owned(bucket, out)
        if isinstance(bucket, FlatBucket) and bucket.lmo == "adamw":
            for p, X, g in owned:
                state = self.state[p]
                if "exp_avg" not in state:
                    state["exp_avg"] = torch.zeros_like(g)
                    state["exp_avg_sq"] = torch.zeros_like(g)
                state["step"] = state.get("step", 0) + 1
                adamw_update_(
                    X,
                    state["exp_avg"],
                    state["exp_avg_sq"],
                    g,
                    state["step"],
                    group["lr"],
                    tuple(group["adamw_betas"]),
                    group["adamw_eps"],
                    group["weight_decay"],
                )
            return
        directions = []
        for p, _, g in owned:
            state = self.state[p]
            h = self._take_reference(group, state)
            directions.append(self._direction(group, state, g, h))
            self._finish_reference(group, state, g)
        if isinstance(bucket, MatrixBucket):
            if directions:
                O = newton_schulz(
                    torch.stack(directions),
                    steps=group["ns_steps"],
                    dtype=group["ns_dtype"] or default_ns_dtype(out.device),
                )
                for (_, X, _), O_j in zip(owned, O):
                    self._apply_spectral(group, X, O_j)
        else:
            for (p, X, _), u in zip(owned, directions):
                self._apply_sign(group, X, u, int(p.shape[-1]))

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One optimizer step on every parameter (collective: call on every rank)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        plan = self._get_plan()
        if all(p.grad is None for b in plan for p in b.params) and "no_grad" not in self._warned:
            self._warned.add("no_grad")
            warnings.warn(
                "step() called while no parameter has a .grad on this rank; every gradient is "
                "treated as zero.",
                RuntimeWarning,
                stacklevel=2,
            )
        launched = [(b, *self._scatter(b)) for b in plan]
        gathers = []
        for bucket, out, work in launched:
            self._comm.wait_mean(out, work)
            self._update_bucket(bucket, out)
            gathers.append((bucket, *self._gather(bucket)))
        for bucket, full, work in gathers:
            self._write_back(bucket, full, work)
        return loss

    # ---------------------------------------------------------------- checkpointing
    def state_dict(self) -> dict[str, Any]:
        """This rank's state (what it owns) plus the sharding it was saved under."""
        sd = super().state_dict()
        sd["sharding"] = {"world_size": self._comm.world, "rank": self._comm.rank}
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        meta = state_dict.pop("sharding", None)
        if meta is not None and (meta["world_size"] != self._comm.world or meta["rank"] != self._comm.rank):
            raise ValueError(
                f"Optimizer state was saved by rank {meta['rank']} of world size {meta['world_size']} but is "
                f"loaded by rank {self._comm.rank} of world size {self._comm.world}: the state is sharded by "
                "owner, resume with the same world size and load each rank's own file."
            )
        super().load_state_dict(state_dict)
        self._plan = None
