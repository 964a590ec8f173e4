"""Helpers shared by the optimizer tests, and top-level (spawn-able) distributed workers.

A "case" is a parameter set covering every geometry, random main gradients ``g_t`` and random
reference gradients ``h_t`` per step, and a way of driving an optimizer through them with one of
the hand-over modes (none | prev_step | last | lookahead).
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import torch

from optim import GluonMVR, MuonMVR

# shape, lmo for MuonMVR, lmo for GluonMVR. 3 matrices of (6, 4): not a multiple of 2; a 3-D tensor
# (conv-like, orthogonalized as 3 × 4); an embedding-like matrix; vectors. Index 9 never has a grad.
SHAPES = [(6, 4), (6, 4), (6, 4), (4, 6), (5, 5), (5, 5), (3, 2, 2), (7, 4), (5,), (4, 4), (1,)]
MUON_LMOS = ["spectral"] * 7 + ["adamw", "adamw", "spectral", "adamw"]
GLUON_LMOS = ["spectral"] * 7 + ["sign", "adamw", "spectral", "adamw"]
NEVER_GRAD = 9
SOMETIMES_NONE = 4  # grad None at step 2 (single process) / on rank 1 (distributed)

MUON_CONFIGS: dict[str, dict[str, Any]] = {
    "mars_clip_moonlight": dict(
        momentum=0.9, gamma=0.1, clip=True, nesterov=False, scale="moonlight", weight_decay=0.1
    ),
    "mars_noclip_muon": dict(
        momentum=0.8, gamma=0.3, clip=False, nesterov=False, scale="muon", weight_decay=0.0
    ),
    "mars_nesterov": dict(
        momentum=0.95, gamma=0.025, clip=True, nesterov=True, scale="moonlight", weight_decay=0.0
    ),
    "ema_baseline": dict(momentum=0.95, gamma=0.0, clip=False, nesterov=True, scale="muon", weight_decay=0.0),
}
GLUON_CONFIGS: dict[str, dict[str, Any]] = {
    "gluon": dict(variant="gluon", beta=0.9),
    "mvr1": dict(variant="mvr1", beta=0.9),
    "mvr2": dict(variant="mvr2", beta=0.9, q=0.5),
    "mvr3": dict(variant="mvr3", beta=0.9, q=0.5, alpha=0.8),
}
# hand-over mode -> reference source
MODES = {
    "none": "none",
    "prev_step": "prev_step",
    "last_prev_params": "prev_params",
    "lookahead_prev_params": "prev_params",
    "last_prev_batch": "prev_batch",
}
ADAMW = dict(lr=0.02, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.01)


def make_case(steps: int, seed: int, dtype: torch.dtype = torch.float64) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(seed)

    def rnd(shape: tuple[int, ...], i: int) -> torch.Tensor:
        scale = 0.05 if i % 3 == 1 else 1.0  # some tensors below the clip threshold, some above
        return (torch.randn(shape, generator=gen, dtype=torch.float64) * scale).to(dtype)

    X0 = [rnd(s, 0) for s in SHAPES]
    grads = [[None if i == NEVER_GRAD else rnd(s, i) for i, s in enumerate(SHAPES)] for _ in range(steps)]
    refs = [
        [None if t == 0 or i == NEVER_GRAD else rnd(s, i) for i, s in enumerate(SHAPES)] for t in range(steps)
    ]
    return {"X0": X0, "grads": grads, "refs": refs}


def oracle_refs(case: dict[str, Any], mode: str) -> list[list[torch.Tensor | None]]:
    """The h_t each step must see under a hand-over mode (None: no reference, h_t := g_t)."""
    grads, refs = case["grads"], case["refs"]
    if mode == "none":
        return [[None] * len(SHAPES) for _ in grads]
    if mode == "prev_step":
        out = [[None] * len(SHAPES)]
        for gs in grads[:-1]:
            out.append([torch.zeros(s, dtype=torch.float64) if g is None else g for g, s in zip(gs, SHAPES)])
        return out
    # handed-over references: a None grad in the hand-over is a zero reference
    return [
        [
            None if t == 0 else (torch.zeros(s, dtype=torch.float64) if h is None else h)
            for h, s in zip(hs, SHAPES)
        ]
        for t, hs in enumerate(refs)
    ]


def build(
    kind: str,
    params: list[torch.Tensor],
    config: dict[str, Any],
    mode: str,
    ns_dtype: torch.dtype = torch.float64,
    group_extra: dict[str, dict[str, Any]] | None = None,
) -> MuonMVR | GluonMVR:
    """``group_extra``: a geometry's group's own hyperparameters, e.g. ``{"sign": {"variant": "gluon"}}``."""
    lmos = MUON_LMOS if kind == "muon_mvr" else GLUON_LMOS
    groups: dict[str, list[torch.Tensor]] = {}
    for p, lmo in zip(params, lmos):
        groups.setdefault(lmo, []).append(p)
    extra = group_extra or {}
    param_groups = [{"params": ps, "lmo": lmo, **extra.get(lmo, {})} for lmo, ps in groups.items()]
    common = dict(
        reference=MODES[mode],
        ns_dtype=ns_dtype,
        adamw_lr=ADAMW["lr"],
        adamw_betas=ADAMW["betas"],
        adamw_eps=ADAMW["eps"],
        adamw_weight_decay=ADAMW["weight_decay"],
    )
    if kind == "muon_mvr":
        return MuonMVR(param_groups, lr=0.05, **config, **common)
    return GluonMVR(param_groups, lr=0.01, hidden_scale=2.0, embed_scale=3.0, **config, **common)


def oracle_hparams(kind: str, config: dict[str, Any]) -> dict[str, Any]:
    if kind == "muon_mvr":
        return dict(lr=0.05, ns_steps=5, **config)
    return dict(dict(q=0.5, alpha=0.0), lr=0.01, hidden_scale=2.0, embed_scale=3.0, ns_steps=5, **config)


def _set_grads(params: list[torch.Tensor], grads: list[torch.Tensor | None], none_at: set[int]) -> None:
    for i, (p, g) in enumerate(zip(params, grads)):
        p.grad = None if g is None or i in none_at else g.to(p.dtype).clone()


def drive(
    opt: Any,
    params: list[torch.Tensor],
    case: dict[str, Any],
    mode: str,
    *,
    start: int = 0,
    stop: int | None = None,
    local: Any = None,
    none_at: Any = None,
) -> list[list[torch.Tensor]]:
    """Steps ``start..stop-1`` of a case. ``local(tensor, t, i, kind)`` maps a global gradient to this
    rank's local one (default: identity); ``none_at(t, kind)`` gives indices whose grad is None."""
    grads, refs = case["grads"], case["refs"]
    stop = len(grads) if stop is None else stop
    local = local or (lambda x, t, i, kind: x)
    none_at = none_at or (lambda t, kind: {SOMETIMES_NONE} if (t == 1 and kind == "g") else set())

    def loc(gs: list[torch.Tensor | None], t: int, kind: str) -> list[torch.Tensor | None]:
        return [None if g is None else local(g, t, i, kind) for i, g in enumerate(gs)]

    history = []
    for t in range(start, stop):
        if mode.startswith("last") and t > 0:
            _set_grads(params, loc(refs[t], t, "h"), none_at(t, "h"))
            opt.update_last_grad()
        if mode.startswith("lookahead") and t + 1 < len(grads):
            _set_grads(params, loc(refs[t + 1], t + 1, "h"), none_at(t + 1, "h"))
            opt.update_lookahead_grad()
        _set_grads(params, loc(grads[t], t, "g"), none_at(t, "g"))
        opt.step()
        history.append([p.detach().clone() for p in params])
    return history


def leaf_params(X0: list[torch.Tensor], dtype: torch.dtype) -> list[torch.Tensor]:
    return [torch.nn.Parameter(x.detach().to(dtype).clone()) for x in X0]


# ------------------------------------------------------------------------------------------------
# distributed workers (spawned by torch.multiprocessing.spawn; rank is the first argument)
# ------------------------------------------------------------------------------------------------
def rank_noise(shape: tuple[int, ...], t: int, i: int, kind: str, rank: int, world: int) -> torch.Tensor:
    """Per-rank deviation with zero mean over ranks, identical on every rank (seeded)."""
    gen = torch.Generator().manual_seed(1000 * t + 10 * i + (kind == "h"))
    noise = torch.randn((world, *shape), generator=gen, dtype=torch.float64)
    return noise[rank] - noise.mean(0)


def dist_variants() -> list[tuple[str, str, str]]:
    """(kind, config name, mode) for every estimator, covering every reference mode."""
    out = []
    for name in MUON_CONFIGS:
        for mode in MODES:
            if name in ("mars_clip_moonlight", "mars_nesterov") or mode in ("none", "prev_step"):
                out.append(("muon_mvr", name, mode))
    for name in GLUON_CONFIGS:
        for mode in MODES:
            if name != "gluon" or mode == "none":
                out.append(("gluon", name, mode))
    return out


def run_variant(
    kind: str,
    name: str,
    mode: str,
    steps: int,
    rank: int = 0,
    world: int = 1,
    dtype: torch.dtype = torch.float32,
    resume_at: int | None = None,
    ckpt_dir: str | None = None,
    imitate_world: int = 2,
) -> tuple[list[torch.Tensor], int]:
    """Run one variant for ``steps`` steps as rank ``rank`` of ``world``; returns (params, state bytes).

    With ``resume_at``, the optimizer is checkpointed after that many steps (this rank's own file),
    rebuilt from scratch and loaded before continuing."""
    config = (MUON_CONFIGS if kind == "muon_mvr" else GLUON_CONFIGS)[name]
    case = make_case(steps, seed=7)
    params = leaf_params(case["X0"], dtype)

    def local(x: torch.Tensor, t: int, i: int, k: str) -> torch.Tensor:
        if world == 1:
            return x
        return x + rank_noise(tuple(x.shape), t, i, k, rank, world).to(x.dtype)

    def none_at(t: int, k: str) -> set[int]:
        # the same parameter has no grad on rank 1 only: its global mean is (sum of the others) / W
        return {SOMETIMES_NONE} if (world > 1 and rank == 1 and k == "g") else set()

    global_case = case
    if world == 1:
        # the single-process equivalent of "rank 1 has no grad": mean of the other ranks' grads
        global_case = _single_process_case(case, imitate_world)
    opt = build(kind, params, config, mode, ns_dtype=torch.float32)
    split = steps if resume_at is None else resume_at
    drive(opt, params, global_case, mode, stop=split, local=local, none_at=none_at)
    if resume_at is not None:
        path = os.path.join(ckpt_dir, f"opt_{kind}_{name}_{mode}_{rank}.pt")
        torch.save(opt.state_dict(), path)
        opt = build(kind, params, config, mode, ns_dtype=torch.float32)
        opt.load_state_dict(torch.load(path, weights_only=False))
        drive(opt, params, global_case, mode, start=split, local=local, none_at=none_at)
    return [p.detach().clone() for p in params], opt.state_bytes()


def _single_process_case(case: dict[str, Any], W: int) -> dict[str, Any]:
    """The global-batch gradients a W-rank run sees, where rank 1 has no grad for SOMETIMES_NONE."""
    grads = []
    for t, gs in enumerate(case["grads"]):
        row = list(gs)
        g = row[SOMETIMES_NONE]
        # rank 1 contributes zero: mean = Σ_{r≠1} (x + n_r) / W
        total = sum(g + rank_noise(tuple(g.shape), t, SOMETIMES_NONE, "g", r, W) for r in range(W) if r != 1)
        row[SOMETIMES_NONE] = total / W
        grads.append(row)
    return {**case, "grads": grads}


def dist_worker(
    rank: int,
    world: int,
    store: str,
    out_dir: str,
    variants: list[tuple[str, str, str]],
    steps: int,
    resume_variants: list[tuple[str, str, str]],
) -> None:
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", FutureWarning)
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        results = {}
        for v in variants:
            results[v] = run_variant(*v, steps=steps, rank=rank, world=world)
        for v in resume_variants:
            results[("resume", *v)] = run_variant(
                *v, steps=steps, rank=rank, world=world, resume_at=2, ckpt_dir=out_dir
            )
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


# ------------------------------------------------------------------------------------------------
# re-sharding: save at one world size, resume at another
# ------------------------------------------------------------------------------------------------
RESHARD_VARIANTS = [
    ("muon_mvr", "mars_clip_moonlight", "lookahead_prev_params"),  # matrix state + AdamW slices + h_next
    ("gluon", "mvr3", "last_prev_batch"),  # G, momentum on matrices and sign slices
    ("muon_mvr", "mars_nesterov", "prev_step"),  # h kept by the optimizer
]


def _no_none(t: int, kind: str) -> set[int]:
    return set()


def reshard_phase(
    rank: int,
    world: int,
    store: str | None,
    out_dir: str,
    phase: str,
    steps: int,
    split: int,
    saved_world: int,
) -> None:
    """``phase="save"``: steps [0, split) at ``world`` ranks, then each rank writes its optimizer state
    and the parameters. ``phase="load"``: every rank loads all ``saved_world`` state dicts, re-shards
    them with ``load_sharded_state_dicts`` and runs steps [split, steps). No rank ever lacks a grad,
    so the global gradient is the same at every world size."""
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", FutureWarning)
    import torch.distributed as dist

    if world > 1:
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        for kind, name, mode in RESHARD_VARIANTS:
            config = (MUON_CONFIGS if kind == "muon_mvr" else GLUON_CONFIGS)[name]
            case = make_case(steps, seed=11)

            def local(x: torch.Tensor, t: int, i: int, k: str) -> torch.Tensor:
                return x if world == 1 else x + rank_noise(tuple(x.shape), t, i, k, rank, world).to(x.dtype)

            tag = f"{kind}_{name}_{mode}"
            if phase == "save":
                params = leaf_params(case["X0"], torch.float32)
                opt = build(kind, params, config, mode, ns_dtype=torch.float32)
                drive(opt, params, case, mode, stop=split, local=local, none_at=_no_none)
                torch.save(opt.state_dict(), os.path.join(out_dir, f"{tag}_opt{rank}.pt"))
                torch.save([p.detach() for p in params], os.path.join(out_dir, f"{tag}_params.pt"))
            else:
                saved = torch.load(os.path.join(out_dir, f"{tag}_params.pt"), weights_only=False)
                params = leaf_params(saved, torch.float32)
                opt = build(kind, params, config, mode, ns_dtype=torch.float32)
                sds = [
                    torch.load(os.path.join(out_dir, f"{tag}_opt{r}.pt"), weights_only=False)
                    for r in range(saved_world)
                ]
                opt.load_sharded_state_dicts(sds)
                history = drive(opt, params, case, mode, start=split, local=local, none_at=_no_none)
                torch.save(history[-1], os.path.join(out_dir, f"{tag}_final{rank}.pt"))
    finally:
        if world > 1:
            dist.destroy_process_group()


def uninterrupted(kind: str, name: str, mode: str, steps: int) -> list[torch.Tensor]:
    config = (MUON_CONFIGS if kind == "muon_mvr" else GLUON_CONFIGS)[name]
    case = make_case(steps, seed=11)
    params = leaf_params(case["X0"], torch.float32)
    opt = build(kind, params, config, mode, ns_dtype=torch.float32)
    return drive(opt, params, case, mode, none_at=_no_none)[-1]


# ------------------------------------------------------------------------------------------------
# global gradient-norm clipping (train.grad_clip)
# ------------------------------------------------------------------------------------------------
def _lookahead_run(rank: int, world: int, store: str | None, out: str | None, steps: int, seed: int,
                   dtype: torch.dtype, make_opt: Any) -> list[torch.Tensor]:
    """One case driven with the look-ahead hand-over on ``world`` gloo ranks (per-rank noise averages to
    the single-process gradient); ``make_opt(params)`` builds the optimizer. Saves the final parameters
    to ``out`` when given."""
    import torch.distributed as dist

    if world > 1:
        torch.set_num_threads(1)
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        case = make_case(steps, seed=seed)
        params = leaf_params(case["X0"], dtype)
        opt = make_opt(params)

        def local(x: torch.Tensor, t: int, i: int, k: str) -> torch.Tensor:
            return x if world == 1 else x + rank_noise(tuple(x.shape), t, i, k, rank, world).to(x.dtype)

        final = drive(opt, params, case, "lookahead_prev_params", local=local, none_at=_no_none)[-1]
        if out is not None:
            torch.save(final, out.format(rank=rank))
        return final
    finally:
        if world > 1:
            dist.destroy_process_group()


def clip_run(rank: int, world: int, store: str | None, out: str | None, steps: int = 3,
             dtype: torch.dtype = torch.float32, clip: float = 0.5) -> list[torch.Tensor]:
    """MVR2 (look-ahead hand-over) with grad_clip on both passes."""

    def make_opt(params):
        opt = build("muon_mvr", params, MUON_CONFIGS["mars_clip_moonlight"], "lookahead_prev_params",
                    ns_dtype=dtype)
        opt.grad_clip = clip
        return opt

    return _lookahead_run(rank, world, store, out, steps, 5, dtype, make_opt)


def mixed_estimators_run(rank: int, world: int, store: str | None, out: str | None, steps: int = 4,
                         sign_variant: str = "gluon", variant: str = "mvr1") -> list[torch.Tensor]:
    """Gluon-MVR-1 on the spectral matrices with the sign-routed parameter on another estimator (its group's
    own ``variant``), look-ahead hand-over."""

    def make_opt(params):
        return build("gluon", params, GLUON_CONFIGS[variant], "lookahead_prev_params",
                     group_extra={"sign": {"variant": sign_variant}})

    return _lookahead_run(rank, world, store, out, steps, 7, torch.float64, make_opt)
