"""MuonMVR (the MuonMVR paper: Chang, Liu, Yuan, "On the Convergence of Muon and Beyond",
arXiv 2509.15816): a named preset of :class:`optim.sharded.ShardedOptimizer` with the paper's API."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from torch import Tensor

from .sharded import ShardedOptimizer
from .validation import check_bool, check_choice

ReferenceSource = Literal["none", "prev_step", "prev_params", "prev_batch"]


MUON_SCALES = ("moonlight", "muon")  # the spectral scales MuonMVR offers (optim/README.md §3)


class MuonMVR(ShardedOptimizer):
    """Muon with MARS-style momentum variance reduction (MVR1/2/3 of the MuonMVR paper), DDP-sharded.

    Matrices (lmo ``"spectral"``), with β = ``momentum``, γ = ``gamma``, η = ``lr``, λ = ``weight_decay``
    (estimator ``"mars"``, ``optim/README.md`` §2–3)::

        c_t = g_t + γ · β/(1−β) · (g_t − h_t),   then per tensor  c_t ← c_t / max(1, ‖c_t‖_F)  (clip=True)
        M_t = β M_{t−1} + (1−β) c_t,   u_t = M_t   (nesterov=True: u_t = β M_t + (1−β) c_t)
        moonlight: X ← (1 − ηλ) X − η · 0.2 · sqrt(max(A, B)) · NS(u_t)
        muon:      X ← (1 − ηλ) X − η · sqrt(max(1, A/B)) · NS(u_t)

    The reference gradient h_t depends on ``reference`` (``optim/README.md`` §1): ``None`` derives it
    from ``is_approx`` (True → ``"prev_step"``, MVR1, one pass: h_t = g_{t−1}, kept by the optimizer;
    False → ``"prev_params"``, MVR2: h_t = ∇f(X_{t−1}; ξ_t) handed over by the loop);
    ``"prev_batch"`` is MVR3 (h_t = ∇f(X_t; ξ_{t−1})); ``"none"`` drops the correction (with
    ``clip=False`` and ``gamma=0`` this is the plain EMA Muon baseline). At t = 1, h_1 := g_1.

    Everything else (lmo ``"adamw"``: by default parameters with ndim < 2) takes AdamW with
    ``adamw_betas``, ``adamw_eps``, ``adamw_lr`` (None: ``lr``) and ``adamw_weight_decay``
    (None: ``weight_decay``); no variance reduction there.

    Keyword arguments beyond ``lr``, ``is_approx`` and ``reference`` are the hyperparameters of the
    ``"mars"`` estimator and the geometries (``momentum``, ``gamma``, ``clip``, ``nesterov``, ``scale``,
    ``weight_decay``, ``ns_steps``, ``ns_coefficients``, ``ns_dtype``, ``adamw_*``); each default is
    declared once, in ``optim/registry.py`` beside the code that reads it.
    """

    supported_lmos = ("spectral", "adamw")

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 3e-3,
        *,
        is_approx: bool = True,
        reference: ReferenceSource | None = None,
        process_group: Any = None,
        **hparams: Any,
    ) -> None:
        check_bool("is_approx", is_approx)
        if reference is None:
            reference = "prev_step" if is_approx else "prev_params"
        super().__init__(params, "mars", lr=lr, reference=reference, process_group=process_group, **hparams)

    def _validate_group(self, group: dict[str, Any], where: str) -> None:
        check_choice("scale" + where, group["scale"], MUON_SCALES)
