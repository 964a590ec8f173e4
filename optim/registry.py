"""The one place where estimators and geometries are registered (``optim/README.md``, "Adding an
estimator or a geometry").

An **estimator** turns the averaged gradient ``g_t`` (and, if it consumes one, the reference gradient
``h_t``) into the direction ``u_t``, keeping whatever state it needs in the per-parameter ``state``
dict. A **geometry** (the LMO, or update map) turns ``u_t`` into the parameter update; it says
whether it needs whole matrices (``layout="matrix"``: the owner of a matrix gets all of it) or works
on element shards (``layout="elementwise"``). :class:`optim.sharded.ShardedOptimizer` consumes both:
it handles routing, sharding, communication, reference hand-over and checkpoints, so a new estimator
or geometry is one function plus one ``register_*`` call here or in your own code.

Estimator function: ``fn(state, g, h, group) -> u``. ``g`` is this rank's owned part of the
averaged gradient (a whole matrix or an element slice), ``h`` the reference gradient of the same part
or ``None`` (t = 1, or an estimator without a reference: ``h_1 := g_1``), ``group`` the param group
(hyperparameters, read every step). It may replace entries of ``state`` (never alias ``g`` or ``h``,
which are communication buffers) and must not touch ``state["step"]`` (the optimizer counts steps
after the call: ``state.get("step", 0) + 1`` is the current t).

Geometry functions: ``transform(U, group) -> D`` maps directions to update directions (for the
``"matrix"`` layout ``U`` stacks all owned matrices of a bucket, ``(n, A, B)``, so Newton–Schulz runs
batched; for ``"elementwise"`` it is one flat slice); ``apply(X, D, group, shape)`` updates the
owned part ``X`` in place (``shape``: the full parameter's shape).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from . import estimators as E
from . import updates as U
from .newton_schulz import default_ns_dtype, newton_schulz
from .validation import Check, boolean, float_in, one_of

EstimatorFn = Callable[[dict[str, Any], Tensor, "Tensor | None", dict[str, Any]], Tensor]


@dataclass(frozen=True)
class Estimator:
    """``fn`` computes u_t; ``state`` names the tensors it keeps per parameter (for ``state_bytes`` and
    docs); ``uses_reference(group)`` says whether it consumes h_t with these hyperparameters (False →
    the optimizer never asks the loop for a reference: one gradient pass per step); ``hparams`` maps each
    hyperparameter it reads to its check, ``defaults`` gives their values when not passed.

    ``whole_norm_of``: for an estimator that divides by the Frobenius norm of a whole parameter's
    tensor (MuonMVR's clip), ``whole_norm_of(group)`` returns ``x(g, h)``, the elementwise tensor whose
    norm it needs, or None when these hyperparameters need none. Where no rank holds the whole
    parameter (elementwise slices, FSDP2 rows), the optimizer sums ``‖x‖²`` of the parts over ranks
    (one all-reduce a bucket) and calls ``fn(state, g, h, group, norm=‖x‖_F)``; elsewhere ``fn`` is
    called without ``norm`` and takes the norm of what it holds."""

    name: str
    fn: EstimatorFn
    state: tuple[str, ...]
    uses_reference: Callable[[dict[str, Any]], bool]
    hparams: dict[str, Check] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    whole_norm_of: Callable[[dict[str, Any]], Callable[[Tensor, Tensor | None], Tensor] | None] | None = None


@dataclass(frozen=True)
class Geometry:
    """``layout`` "matrix" (needs whole matrices, ndim ≥ 2) or "elementwise" (works on shards);
    ``estimator`` set when the geometry brings its own (AdamW's moments), else the optimizer's is used."""

    name: str
    transform: Callable[[Tensor, dict[str, Any]], Tensor]
    apply: Callable[[Tensor, Tensor, dict[str, Any], torch.Size], None]
    layout: Literal["matrix", "elementwise"]
    hparams: dict[str, Check] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    min_ndim: int = 1
    estimator: str | None = None


ESTIMATORS: dict[str, Estimator] = {}
GEOMETRIES: dict[str, Geometry] = {}


def register_estimator(estimator: Estimator, *, replace: bool = False) -> Estimator:
    if not replace and estimator.name in ESTIMATORS:
        raise ValueError(f"an estimator named {estimator.name!r} is already registered (pass replace=True)")
    ESTIMATORS[estimator.name] = estimator
    return estimator


def register_geometry(geometry: Geometry, *, replace: bool = False) -> Geometry:
    if geometry.layout not in ("matrix", "elementwise"):
        raise ValueError(f"Invalid layout: {geometry.layout!r} (must be 'matrix' or 'elementwise')")
    if not replace and geometry.name in GEOMETRIES:
        raise ValueError(f"a geometry named {geometry.name!r} is already registered (pass replace=True)")
    GEOMETRIES[geometry.name] = geometry
    return geometry


def get_estimator(name: str) -> Estimator:
    if name not in ESTIMATORS:
        raise ValueError(f"Invalid estimator: {name!r} (registered: {', '.join(sorted(ESTIMATORS))})")
    return ESTIMATORS[name]


def get_geometry(name: str) -> Geometry:
    if name not in GEOMETRIES:
        raise ValueError(f"Invalid lmo: {name!r} (registered: {', '.join(sorted(GEOMETRIES))})")
    return GEOMETRIES[name]


# ----------------------------------------------------------------------------------------------
# built-in estimators (the equations are in optim/estimators.py and optim/README.md §2)
# ----------------------------------------------------------------------------------------------
def _ema(state: dict, g: Tensor, h: Tensor | None, group: dict) -> Tensor:
    state["momentum"] = M = E.ema(state.get("momentum"), g, group["beta"])
    return M


def _mars(state: dict, g: Tensor, h: Tensor | None, group: dict, norm: Tensor | None = None) -> Tensor:
    beta = group["momentum"]
    c = E.mars_correction(g, h, group["gamma"], beta, group["clip"], norm=norm)
    state["momentum"] = M = E.ema(state.get("momentum"), c, beta)
    return E.nesterov(M, c, beta) if group["nesterov"] else M


def _mars_norm_of(group: dict) -> Callable[[Tensor, Tensor | None], Tensor] | None:
    """The clip divides by ‖c_t‖_F of the whole parameter: c_t before the clip."""
    if not group["clip"]:
        return None
    return lambda g, h: E.mars_correction(g, h, group["gamma"], group["momentum"], clip=False)


def _storm(state: dict, g: Tensor, h: Tensor | None, group: dict) -> Tensor:
    state["momentum"] = M = E.storm(state.get("momentum"), g, h, group["beta"])
    return M


def _mvr2(state: dict, g: Tensor, h: Tensor | None, group: dict) -> Tensor:
    state["G"], state["momentum"] = E.mvr2(
        state.get("G"), state.get("momentum"), g, h, group["beta"], group["q"]
    )
    return state["momentum"]


def _mvr3(state: dict, g: Tensor, h: Tensor | None, group: dict) -> Tensor:
    state["G"], state["momentum"] = E.mvr3(
        state.get("G"), state.get("momentum"), g, h, group["beta"], group["q"], group["alpha"]
    )
    return state["momentum"]


def _adam(state: dict, g: Tensor, h: Tensor | None, group: dict) -> Tensor:
    if "exp_avg" not in state:
        state["exp_avg"], state["exp_avg_sq"] = torch.zeros_like(g), torch.zeros_like(g)
    return E.adam_direction_(
        state["exp_avg"],
        state["exp_avg_sq"],
        g,
        state.get("step", 0) + 1,
        group["adamw_betas"],
        group["adamw_eps"],
    )


def _check_betas(name: str, value: Any) -> None:
    from .validation import bad, check_float

    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise bad(name, value, "must be a pair (beta1, beta2)")
    for b in value:
        check_float(name, b, lo=0.0, hi=1.0, hi_open=True)


# Each hyperparameter's check and default, declared once, beside the estimators that read them.
# The Gluon-MVR paper's beta, q and alpha (its Fig. 4 gives alpha only for Gluon-MVR-3's configs):
_BETA, BETA = {"beta": float_in(0.0, 1.0, hi_open=True)}, {"beta": 0.9}
_Q, Q = {"q": float_in(0.0, 1.0, lo_open=True)}, {"q": 0.5}
_ALPHA, ALPHA = {"alpha": float_in(0.0)}, {"alpha": 0.0}
# The MuonMVR paper's momentum and correction strength, its per-tensor clip; Nesterov off
MARS = {"momentum": 0.95, "gamma": 0.025, "clip": True, "nesterov": False}
ADAM = {"adamw_betas": (0.9, 0.95), "adamw_eps": 1e-8}  # AdamW on the parameters routed to it
_always = lambda group: True  # noqa: E731
_never = lambda group: False  # noqa: E731

for _est in (
    Estimator("ema", _ema, ("momentum",), _never, _BETA, BETA),
    Estimator(
        "mars",
        _mars,
        ("momentum",),
        lambda group: group["gamma"] != 0.0,
        {
            "momentum": float_in(0.0, 1.0, hi_open=True),
            "gamma": float_in(0.0),
            "clip": boolean,
            "nesterov": boolean,
        },
        MARS,
        whole_norm_of=_mars_norm_of,
    ),
    Estimator("storm", _storm, ("momentum",), _always, _BETA, BETA),
    Estimator("mvr2", _mvr2, ("G", "momentum"), _always, {**_BETA, **_Q}, {**BETA, **Q}),
    Estimator(
        "mvr3",
        _mvr3,
        ("G", "momentum"),
        _always,
        {**_BETA, **_Q, **_ALPHA},
        {**BETA, **Q, **ALPHA},
    ),
    Estimator(
        "adam",
        _adam,
        ("exp_avg", "exp_avg_sq"),
        _never,
        {"adamw_betas": _check_betas, "adamw_eps": float_in(0.0, lo_open=True)},
        ADAM,
    ),
):
    register_estimator(_est)


# ----------------------------------------------------------------------------------------------
# built-in geometries (optim/updates.py and optim/README.md §3)
# ----------------------------------------------------------------------------------------------
SPECTRAL_SCALES = ("moonlight", "muon", "unscion")
# unScion's radii (the Gluon-MVR paper's Fig. 4: 50 for hidden matrices, 3000 for the sign step) and Scion's
# constrained form (1 − η) X − η·s·lmo, off: the papers' unconstrained steps
CONSTRAINED = {"constrained": False}


def _orthogonalize(Us: Tensor, group: dict) -> Tensor:
    dtype = group["ns_dtype"] or default_ns_dtype(Us.device)
    return newton_schulz(
        Us, steps=group["ns_steps"], dtype=dtype, coefficients=tuple(group["ns_coefficients"])
    )


def spectral_scale(group: dict, A: int, B: int) -> float:
    """The shape factor of the spectral step: Moonlight, Keller Jordan's Muon, or unScion's radius."""
    if group["scale"] == "moonlight":
        return U.moonlight_scale(A, B)
    if group["scale"] == "muon":
        return U.muon_scale(A, B)
    return U.gluon_spectral_scale(A, B, group["hidden_scale"])


def _spectral_apply(X: Tensor, O: Tensor, group: dict, shape: torch.Size) -> None:
    A, B = int(shape[0]), math.prod(shape[1:])  # the whole parameter's 2-D view; X may be rows of it
    decay = 1.0 if group["constrained"] else group["weight_decay"]  # constrained Scion: (1 − η) X
    U.scaled_spectral_update_(X, O, group["lr"], spectral_scale(group, A, B), decay)


def _sign_apply(X: Tensor, S: Tensor, group: dict, shape: torch.Size) -> None:
    U.sign_update_(X, S, group["lr"], group["embed_scale"], int(shape[-1]), group["constrained"])


def _euclidean_apply(X: Tensor, D: Tensor, group: dict, shape: torch.Size) -> None:
    U.euclidean_update_(X, D, group["lr"], group["weight_decay"])


_positive = float_in(0.0, lo_open=True)
for _geo in (
    Geometry(
        "spectral",
        _orthogonalize,
        _spectral_apply,
        "matrix",
        {"scale": one_of(*SPECTRAL_SCALES), "hidden_scale": _positive, "constrained": boolean},
        {"scale": "moonlight", "hidden_scale": 50.0, **CONSTRAINED},
        min_ndim=2,
    ),
    Geometry(
        "sign",
        lambda u, group: u.sign(),
        _sign_apply,
        "elementwise",
        {"embed_scale": _positive, "constrained": boolean},
        {"embed_scale": 3000.0, **CONSTRAINED},
    ),
    Geometry("adamw", lambda d, group: d, _euclidean_apply, "elementwise", estimator="adam"),
):
    register_geometry(_geo)
