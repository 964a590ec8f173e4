"""The one sharded optimizer: routing, validation, the step loop, reference hand-over and
checkpoints. The math lives in the registered estimators and geometries (:mod:`optim.registry`),
the layout in :mod:`optim.buckets`, the collectives in :mod:`optim.comm`.

Distributed execution (``optim/README.md`` §5), one code path for world size 1..N (world size 1
when ``torch.distributed`` is not initialized, where every collective is the identity), in one of two
modes chosen by the parameters themselves:

- **replicated** (plain tensors, DDP-style: every rank holds every parameter and its own local
  gradient): gradients are reduce-scattered to their owner and averaged; the owner runs the estimator
  and the geometry on its part and keeps its state; updated parameters are all-gathered
  asynchronously, overlapping the next bucket's work. Each rank leaves its *local mean* gradient in
  ``.grad``; a parameter whose ``.grad`` is None contributes a zero gradient, so collectives stay
  matched across ranks.
- **fsdp2** (DTensors sharded by ``fully_shard``, whose gradients FSDP2 has already averaged): every
  rank works on its own rows, and whole matrices travel by all-to-all (:mod:`optim.dtensor`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from .buckets import Bucket, FlatBucket, MatrixBucket, matrix_view_shape
from .comm import Comm
from .dtensor import LocalBucket, check_fsdp_param, is_dtensor, local_part, same_mesh
from .newton_schulz import NS_COEFFICIENTS, NS_STEPS
from .registry import ESTIMATORS, Estimator, Geometry, get_estimator, get_geometry
from .validation import UnknownHyperparameter, as_dtype, bad, check_choice, check_float, check_int

REFERENCE_SOURCES = ("none", "prev_step", "prev_params", "prev_batch")
TWO_PASS_SOURCES = ("prev_params", "prev_batch")
# The hyperparameters every estimator and geometry shares. reference "none": no correction (h_t unused);
# ns_dtype None: bfloat16 on CUDA, float32 elsewhere (optim/newton_schulz.py `default_ns_dtype`).
COMMON_DEFAULTS: dict[str, Any] = dict(
    lr=1e-3,
    weight_decay=0.0,
    reference="none",
    ns_steps=NS_STEPS,
    ns_coefficients=NS_COEFFICIENTS,
    ns_dtype=None,
)


def _finite_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


STATE_FORMAT = 2  # state_dict layout version (keyed by parameter index, with element slices)


class ShardedOptimizer(torch.optim.Optimizer):
    """Any registered estimator under any registered geometries, sharded over DDP ranks.

    ``params``: tensors or param groups; a group may name its geometry with ``"lmo"`` (default: split
    into ``"spectral"`` for ndim ≥ 2 and ``"adamw"`` for ndim < 2). ``estimator``: the registered
    estimator of every group whose geometry does not bring its own. Every other keyword is a
    hyperparameter of the estimator, a geometry or the common set (``lr``, ``weight_decay``,
    ``reference``, ``ns_steps``, ``ns_coefficients``, ``ns_dtype``); an unknown keyword is an
    :class:`~optim.validation.UnknownHyperparameter` (a ``TypeError`` naming the closest known ones).
    ``adamw_lr`` / ``adamw_weight_decay`` (None: ``lr`` / ``weight_decay``) apply to ``"adamw"`` groups.

    Parameters are either all plain tensors (replicated mode; ``process_group``: the ranks to shard
    over, default the world) or all DTensors sharded by FSDP2 on one device mesh (``fsdp2`` mode, on the
    mesh's group); :attr:`sharding` says which.
    """

    supported_lmos: tuple[str, ...] | None = None  # None: every registered geometry
    preset_defaults: dict[str, Any] = {}  # a preset's own keys and values (e.g. GluonMVR's "variant")
    param_routing = "muon"  # the table (optim/param_groups.py) a trainer builds this class's param groups by

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        estimator: str = "ema",
        *,
        adamw_lr: float | None = None,
        adamw_weight_decay: float | None = None,
        process_group: Any = None,
        **hparams: Any,
    ) -> None:
        defaults = self._defaults(estimator, hparams)
        self._check_all(defaults, "")
        for key, value in (("lr", adamw_lr), ("weight_decay", adamw_weight_decay)):
            if value is not None:
                check_float(f"adamw_{key}", value, lo=0.0)
        self._adamw_overrides = {
            k: v for k, v in (("lr", adamw_lr), ("weight_decay", adamw_weight_decay)) if v is not None
        }
        self._comm = Comm(process_group)
        self._mode: str | None = None  # "replicated" | "fsdp2", fixed by the first param group
        self._mesh: Any = None  # fsdp2: the one device mesh of every parameter
        self._grad_clip: float | None = None
        self._plan: list[Bucket] | None = None
        self._warned: set[str] = set()
        params = list(params)
        if not params:
            raise ValueError("Invalid params: the optimizer got an empty parameter list")
        super().__init__(params, defaults)
        if self._mode == "fsdp2":
            group = self._mesh.get_group()
            if process_group is not None and process_group is not group:
                raise ValueError(
                    "Invalid process_group: the parameters are DTensors, which are stepped over their device "
                    "mesh's group; pass no process_group (or mesh.get_group())"
                )
            self._comm = Comm(group)
        refs = {g["reference"] for g in self.param_groups if self._geometry(g).estimator is None}
        if len(refs) > 1:
            raise ValueError(
                f"Invalid reference: every param group must use the same reference source, got {sorted(refs)}"
            )

    # ---------------------------------------------------------------- hyperparameters
    def _defaults(self, estimator: str, hparams: dict[str, Any]) -> dict[str, Any]:
        check_choice("estimator", estimator, tuple(ESTIMATORS))
        defaults = dict(COMMON_DEFAULTS, estimator=estimator, **self.preset_defaults)
        for part in (*self._estimator_pool(estimator), *self._geometries(), *self._geometry_estimators()):
            for key, value in part.defaults.items():
                defaults.setdefault(key, value)
        unknown = set(hparams) - set(defaults)
        if unknown:
            raise UnknownHyperparameter(unknown, [*defaults, "adamw_lr", "adamw_weight_decay"])
        defaults.update(hparams)
        return defaults

    def _geometries(self) -> list[Geometry]:
        from .registry import GEOMETRIES

        names = self.supported_lmos if self.supported_lmos is not None else tuple(GEOMETRIES)
        return [get_geometry(n) for n in names]

    def _geometry_estimators(self) -> list[Estimator]:
        return [get_estimator(g.estimator) for g in self._geometries() if g.estimator]

    def _check_all(self, group: dict[str, Any], where: str) -> None:
        """Common checks, then every hyperparameter any usable estimator or geometry reads."""
        check_float("lr" + where, group["lr"], lo=0.0)
        check_float("weight_decay" + where, group["weight_decay"], lo=0.0)
        check_choice("reference" + where, group["reference"], REFERENCE_SOURCES)
        check_int("ns_steps" + where, group["ns_steps"], 1)
        abc = group["ns_coefficients"]
        if not (isinstance(abc, (tuple, list)) and len(abc) == 3 and all(_finite_number(v) for v in abc)):
            raise bad("ns_coefficients" + where, abc, "must be three finite numbers (a, b, c)")
        group["ns_dtype"] = as_dtype("ns_dtype" + where, group["ns_dtype"])
        parts = [*self._estimator_pool(group["estimator"]), *self._geometries(), *self._geometry_estimators()]
        for part in parts:
            for key, check in part.hparams.items():
                check(key + where, group[key])
        self._validate_group(group, where)

    def _estimator_pool(self, estimator: str) -> list[Estimator]:
        """Estimators whose hyperparameters this optimizer knows and checks (a preset that switches
        between several per group, like GluonMVR's variants, returns all of them)."""
        return [get_estimator(estimator)]

    def _validate_group(self, group: dict[str, Any], where: str) -> None:
        """Preset-specific rules across hyperparameters (override)."""

    def _estimator_name(self, group: dict[str, Any]) -> str:
        return group["estimator"]

    def _geometry(self, group: dict[str, Any]) -> Geometry:
        return get_geometry(group["lmo"])

    def _estimator(self, group: dict[str, Any]) -> Estimator:
        geometry = self._geometry(group)
        return get_estimator(geometry.estimator or self._estimator_name(group))

    # ---------------------------------------------------------------- groups
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
            mode = "fsdp2" if is_dtensor(p) else "replicated"
            if self._mode is not None and mode != self._mode:
                kinds = {"fsdp2": "a DTensor", "replicated": "a plain tensor"}
                raise ValueError(
                    f"Invalid params: parameter of shape {tuple(p.shape)} is {kinds[mode]} but earlier ones "
                    f"are {kinds[self._mode]}s; one optimizer steps either replicated parameters or "
                    "parameters sharded by fully_shard (apply fully_shard to the root module too, so that "
                    "every parameter is sharded)"
                )
            self._mode = mode
            if mode == "fsdp2":
                check_fsdp_param(p, f"parameter of shape {tuple(p.shape)}")
                self._mesh = same_mesh(self._mesh, p, f"parameter of shape {tuple(p.shape)}")
            if id(p) in seen:
                raise ValueError(
                    f"Invalid params: parameter of shape {tuple(p.shape)} appears more than once "
                    "(every parameter must be covered by exactly one param group)"
                )
            seen.add(id(p))
        if "lmo" in param_group:
            routed = [{**param_group, "params": ps}]
        else:
            split = (("spectral", [p for p in ps if p.ndim >= 2]), ("adamw", [p for p in ps if p.ndim < 2]))
            routed = [{**param_group, "params": sub, "lmo": lmo} for lmo, sub in split if sub]
        supported = tuple(g.name for g in self._geometries())
        for group in routed:
            check_choice("lmo", group["lmo"], supported)
            if "estimator" in group:  # a group's own estimator brings its own defaults
                check_choice("estimator", group["estimator"], tuple(ESTIMATORS))
                for key, value in get_estimator(group["estimator"]).defaults.items():
                    group.setdefault(key, value)
            if group["lmo"] == "adamw":
                for key, value in self._adamw_overrides.items():
                    group.setdefault(key, value)
            super().add_param_group(group)
            group = self.param_groups[-1]
            group.setdefault("initial_lr", group["lr"])
            self._check_all(group, " (param group)")
            geometry = self._geometry(group)
            for p in group["params"]:
                if p.ndim < geometry.min_ndim:
                    raise bad(
                        "lmo",
                        group["lmo"],
                        f"needs parameters with ndim >= {geometry.min_ndim}, got shape {tuple(p.shape)}",
                    )
                if not p.is_contiguous():
                    raise ValueError(f"Invalid params: parameter of shape {tuple(p.shape)} is not contiguous")
        self._plan = None

    # ---------------------------------------------------------------- trainer-facing properties
    def _group_reference(self, group: dict[str, Any]) -> str:
        """Reference source the estimator of ``group`` actually uses (``"none"`` if it ignores h)."""
        return group["reference"] if self._estimator(group).uses_reference(group) else "none"

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
    def grad_clip(self) -> float | None:
        """Clip the global norm of every averaged gradient pass (main and reference) to this value,
        as ``torch.nn.utils.clip_grad_norm_`` would on the global gradient (the MuonMVR paper's loop
        uses 1.0); None: no clipping. See :meth:`_clip_`."""
        return self._grad_clip

    @grad_clip.setter
    def grad_clip(self, value: float | None) -> None:
        if value is not None:
            check_float("grad_clip", value, lo=0.0, lo_open=True)
        self._grad_clip = value

    @property
    def sharding(self) -> str:
        """``"replicated"`` (plain tensors, DDP-style) or ``"fsdp2"`` (DTensors sharded by
        ``fully_shard``)."""
        return self._mode or "replicated"

    @property
    def world_size(self) -> int:
        return self._comm.world

    @property
    def rank(self) -> int:
        return self._comm.rank

    def state_bytes(self) -> int:
        """Bytes of optimizer state held by this rank."""
        return sum(
            local_part(v).numel() * v.element_size()
            for s in self.state.values()
            for v in s.values()
            if isinstance(v, Tensor)
        )

    # ---------------------------------------------------------------- plan
    def _get_plan(self) -> list[Bucket]:
        if self._plan is None:
            W, r = self._comm.world, self._comm.rank
            plan: list[Bucket] = []
            for gi, group in enumerate(self.param_groups):
                matrix = self._geometry(group).layout == "matrix"
                buckets: dict[tuple, list[Tensor]] = {}
                for p in group["params"]:
                    if not p.requires_grad:
                        continue  # frozen: never updated, identical decision on every rank
                    shape = matrix_view_shape(p) if matrix else ()
                    buckets.setdefault((shape, p.dtype, str(p.device)), []).append(p)
                for (shape, _, _), ps in buckets.items():
                    if self._mode == "fsdp2":  # every rank updates its own rows (optim/dtensor.py)
                        plan.append(LocalBucket(gi, ps, self._comm, shape if matrix else None))
                    elif matrix:
                        plan.append(MatrixBucket(gi, shape, ps, W, r))
                    else:
                        plan.append(FlatBucket(gi, ps, W, r))
            self._plan = plan
        return self._plan

    def _averaged(self, bucket: Bucket | LocalBucket) -> tuple[Any, Any]:
        """Launch the averaging of a bucket's gradients: a reduce-scatter to the owners (replicated), or
        nothing (fsdp2: FSDP2 averaged them). Finish with ``self._comm.wait_mean``."""
        if isinstance(bucket, LocalBucket):
            return bucket.gather_grads()
        return self._comm.reduce_scatter_mean(bucket.pack_grads())

    # ---------------------------------------------------------------- reference hand-over
    def update_last_grad(self) -> None:
        """The MuonMVR paper's hand-over: the current ``.grad`` (averaged over ranks) becomes ``h_t`` of
        the **next** ``step()``. A no-op for the one-pass sources (``prev_step``, ``none``), as in the
        paper's approximate mode. Call on every rank."""
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
        self._comm.begin_step()
        uses = {
            b.group_index: self._group_reference(self.param_groups[b.group_index]) != "none"
            for b in self._get_plan()
        }
        # Clipping needs the norm of the whole pass (the paper's loop clips every parameter's gradient),
        # so with grad_clip every bucket is reduced; without it, only those that keep a reference.
        plan = [b for b in self._get_plan() if uses[b.group_index] or self._grad_clip is not None]
        launched = [(b, *self._averaged(b)) for b in plan]
        if self._grad_clip is not None:
            self._clip_(launched)
        for bucket, out, work in launched:
            self._comm.wait_mean(out, work)
            if not uses[bucket.group_index]:
                continue
            for p, _, g in bucket.owned(out):
                state = bucket.open_state(self.state[p])
                if key in state:
                    state[key].copy_(g)
                else:
                    state[key] = g.clone()  # owned buffer, never an alias of p.grad
                if key == "h":
                    state["h_ready"] = True
                bucket.close_state(self.state[p], state, p)

    def _take_reference(self, source: str, state: dict[str, Any]) -> Tensor | None:
        """h_t of this step. A two-pass source keeps ``h`` allocated from its first step on, with
        ``h_ready`` saying whether a hand-over filled it since it was last used: the state's keys then
        do not change from step to step, which ``torch.distributed.checkpoint`` needs (it loads into the
        keys a fresh optimizer's first step creates)."""
        if source == "none":
            return None
        if source == "prev_step":
            return state.get("h")
        if state.get("h_ready", "h" in state):  # a state saved before h_ready: h present means handed over
            state["h_ready"] = False
            return state["h"]
        if state.get("step", 0) > 0 and "missing_reference" not in self._warned:
            self._warned.add("missing_reference")
            warnings.warn(
                f"step() with reference source {source!r} but no reference gradient was handed over "
                "(update_last_grad / update_lookahead_grad); using a zero correction (h_t := g_t).",
                RuntimeWarning,
                stacklevel=4,
            )
        return None

    @staticmethod
    def _finish_reference(source: str, state: dict[str, Any], g: Tensor) -> None:
        if source == "prev_step":
            if "h" in state:
                state["h"].copy_(g)
            else:
                state["h"] = g.clone()
        elif source in TWO_PASS_SOURCES:
            if "h_next" in state:  # update_lookahead_grad's h becomes the next step's h_t
                state["h"] = state.pop("h_next")
                state["h_ready"] = True
            else:
                state.setdefault("h", torch.zeros_like(g))
                state["h_ready"] = False
        state["step"] = state.get("step", 0) + 1

    # ---------------------------------------------------------------- gradient clipping
    def _clip_(self, launched: list[tuple[Any, Any, Any]]) -> None:
        """Global-norm clipping of one averaged gradient pass, on the owned parts only:

        ``n = sqrt(Σ_p ‖ḡ_p‖_F²)`` over every parameter of the pass (ḡ: the mean over ranks), then
        ``ḡ_p ← ḡ_p · c/(n + 1e-6)`` when ``c/(n + 1e-6) < 1`` (c = ``grad_clip``), the rule of
        ``torch.nn.utils.clip_grad_norm_``. Ownership is disjoint, so the squared norms of the owned
        parts summed over ranks (one scalar all-reduce) are exactly ``n²``."""
        comm = self._comm
        total = None
        for bucket, out, work in launched:
            comm.wait_mean(out, work)
            for _, _, g in bucket.owned(out):
                sq = g.detach().square().sum()
                total = sq if total is None else total + sq
        if total is None:
            total = torch.zeros((), device=launched[0][0].params[0].device if launched else "cpu")
        total = comm.all_reduce_sum(total)
        coef = self._grad_clip / (total.sqrt().item() + 1e-6)
        for i, (bucket, out, _work) in enumerate(launched):
            if coef < 1.0:
                out = bucket.scale(out, coef)
            launched[i] = (bucket, out, None)  # already waited

    # ---------------------------------------------------------------- the step
    def _update_bucket(self, bucket: Bucket | LocalBucket, out: Any) -> None:
        group = self.param_groups[bucket.group_index]
        geometry, estimator = self._geometry(group), self._estimator(group)
        source = self._group_reference(group)
        owned = [(p, X, g, bucket.open_state(self.state[p])) for p, X, g in bucket.owned(out)]
        hs = [self._take_reference(source, state) for _, _, _, state in owned]
        norms = self._whole_norms(bucket, estimator, owned, hs, group)
        directions = []
        for (p, _, g, state), h, norm in zip(owned, hs, norms):
            directions.append(estimator.fn(state, g, h, group, **({} if norm is None else {"norm": norm})))
            self._finish_reference(source, state, g)
            bucket.close_state(self.state[p], state, p)
        if not directions:
            return
        if geometry.layout == "elementwise":
            updates = [geometry.transform(u, group) for u in directions]
        elif isinstance(bucket, LocalBucket):  # whole matrices by all-to-all, batched per owner
            updates = bucket.whole_matrices(directions, lambda U: geometry.transform(U, group))
        else:
            updates = geometry.transform(torch.stack(directions), group)  # batched (Newton–Schulz)
        for (p, X, _, _), D in zip(owned, updates):
            geometry.apply(X, D, group, p.shape)

    def _whole_norms(
        self, bucket: Any, estimator: Estimator, owned: list, hs: list, group: dict[str, Any]
    ) -> list[Tensor | None]:
        """``‖x(g, h)‖_F`` of every whole parameter (``Estimator.whole_norm_of``) where this rank holds
        only parts of them: the parts' squared norms, one all-reduce for the bucket. None: the estimator
        takes the norm of what it holds (it holds whole tensors, or needs no norm)."""
        of = estimator.whole_norm_of(group) if estimator.whole_norm_of is not None else None
        if of is None or not bucket.partial:
            return [None] * len(owned)
        index = {id(p): k for k, p in enumerate(bucket.params)}
        dtype = torch.promote_types(bucket.params[0].dtype, torch.float32)
        sq = torch.zeros(len(bucket.params), dtype=dtype, device=bucket.params[0].device)
        for (p, _, g, _), h in zip(owned, hs):
            sq[index[id(p)]] = of(g, h).square().sum()
        norms = self._comm.all_reduce_sum(sq).sqrt()
        return [norms[index[id(p)]].to(g.dtype) for p, _, g, _ in owned]

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
                "step() called while no parameter has a .grad on this rank; "
                "every gradient is treated as zero.",
                RuntimeWarning,
                stacklevel=2,
            )
        comm = self._comm
        comm.begin_step()
        launched = [(b, *self._averaged(b)) for b in plan]
        if self._grad_clip is not None:
            self._clip_(launched)
        gathers = []
        for bucket, out, work in launched:
            comm.wait_mean(out, work)
            self._update_bucket(bucket, out)
            if comm.world > 1 and not isinstance(bucket, LocalBucket):
                gathers.append((bucket, *comm.all_gather(bucket.pack_owned())))
        for bucket, full, work in gathers:
            work.wait()
            bucket.unpack(full)
        return loss

    # ---------------------------------------------------------------- checkpointing
    def state_dict(self) -> dict[str, Any]:
        """This rank's state (what it owns), the sharding it was saved under and, per parameter index,
        the element slice ``[lo, hi)`` of the flattened parameter that elementwise state covers (absent:
        the whole parameter). :meth:`load_sharded_state_dicts` re-shards a list of them.

        In ``fsdp2`` mode: torch's own layout, with state held as DTensors, for
        ``torch.distributed.checkpoint`` (which saves, loads and re-shards it)."""
        sd = super().state_dict()
        if self._mode == "fsdp2":
            return sd
        slices = {}
        index = {id(p): i for i, p in enumerate(p for g in self.param_groups for p in g["params"])}
        for bucket in self._get_plan():
            for k, p in enumerate(bucket.params):
                rng = bucket.state_slice(k)
                if rng is not None and p in self.state:
                    slices[index[id(p)]] = (rng[0], rng[1], p.numel())
        sd["sharding"] = {"world_size": self._comm.world, "rank": self._comm.rank}
        sd["format"] = STATE_FORMAT
        sd["slices"] = slices
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load this rank's own state, saved at the same world size and rank. To resume on another
        number of ranks, pass every rank's state dict to :meth:`load_sharded_state_dicts`."""
        if self._mode == "fsdp2":
            super().load_state_dict(state_dict)
            self._fill_missing_hparams()
            self._plan = None
            return
        state_dict = dict(state_dict)
        meta = state_dict.pop("sharding", None)
        state_dict.pop("slices", None)
        state_dict.pop("format", None)
        if meta is not None and (meta["world_size"] != self._comm.world or meta["rank"] != self._comm.rank):
            raise ValueError(
                f"Optimizer state was saved by rank {meta['rank']} of world size {meta['world_size']} but is "
                f"loaded by rank {self._comm.rank} of world size {self._comm.world}: the state is sharded by "
                "owner; load every rank's state dict with load_sharded_state_dicts([...]) to re-shard it."
            )
        super().load_state_dict(state_dict)
        self._fill_missing_hparams()
        self._plan = None

    def load_sharded_state_dicts(self, state_dicts: list[dict[str, Any]]) -> None:
        """Re-shard: merge the state dicts of all W ranks of a checkpoint (any W) into whole
        per-parameter state, then keep what this rank owns under the current world size.

        Matrix state is whole on its owner; elementwise state is stitched from the saved ``[lo, hi)``
        slices. The result equals the state an uninterrupted run at the new world size would hold."""
        if self._mode == "fsdp2":
            raise ValueError(
                "load_sharded_state_dicts is for replicated parameters; parameters sharded by fully_shard "
                "keep DTensor state: load it with torch.distributed.checkpoint (get_state_dict / dcp.load "
                "/ set_state_dict), which re-shards to any number of ranks"
            )
        if not state_dicts:
            raise ValueError("load_sharded_state_dicts needs the state dicts of every saved rank")
        saved_world = {sd.get("sharding", {}).get("world_size") for sd in state_dicts}
        ranks = sorted(sd.get("sharding", {}).get("rank") for sd in state_dicts)
        if (
            len(saved_world) != 1
            or ranks != list(range(len(state_dicts)))
            or saved_world != {len(state_dicts)}
        ):
            raise ValueError(
                "load_sharded_state_dicts needs exactly one state dict per saved rank 0..W-1; got ranks "
                f"{ranks} of world size(s) {sorted(map(str, saved_world))}"
            )
        merged: dict[int, dict[str, Any]] = {}
        for sd in state_dicts:
            slices = sd.get("slices", {})
            for i, st in sd["state"].items():
                whole = merged.setdefault(i, {})
                for key, value in st.items():
                    if not isinstance(value, Tensor) or i not in slices:
                        whole.setdefault(key, value)
                        continue
                    lo, hi, numel = slices[i]
                    if key not in whole:
                        whole[key] = torch.zeros(numel, dtype=value.dtype)
                    whole[key][lo:hi] = value.reshape(-1).cpu()
        params = [p for g in self.param_groups for p in g["params"]]
        index = {id(p): i for i, p in enumerate(params)}
        own: dict[int, dict[str, Any]] = {}
        for bucket in self._get_plan():
            own.update(bucket.own_state(merged, index))
        first = state_dicts[0]
        super().load_state_dict({"state": own, "param_groups": first["param_groups"]})
        self._fill_missing_hparams()
        self._plan = None

    def _fill_missing_hparams(self) -> None:
        """A checkpoint older than a hyperparameter (e.g. ``ns_coefficients``) gets its default."""
        for group in self.param_groups:
            for key, value in self.defaults.items():
                group.setdefault(key, value)
