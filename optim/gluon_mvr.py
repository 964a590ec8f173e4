"""Gluon-MVR-1/2/3 (the Gluon-MVR paper: Qian, Rammal, Kovalev, Richtárik, "Muon is Provably Faster
with Momentum Variance Reduction", arXiv 2512.16598) and the Gluon baseline: a named preset of
:class:`optim.sharded.ShardedOptimizer`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import torch
from torch import Tensor

from .defaults import HPARAM_DEFAULTS as D
from .registry import Estimator, get_estimator
from .sharded import ShardedOptimizer
from .validation import bad, check_choice

Variant = Literal["gluon", "mvr1", "mvr2", "mvr3"]
VARIANT_ESTIMATORS = {"gluon": "ema", "mvr1": "storm", "mvr2": "mvr2", "mvr3": "mvr3"}
VARIANTS = tuple(VARIANT_ESTIMATORS)


class GluonMVR(ShardedOptimizer):
    """Gluon (unScion LMOs) with momentum variance reduction, DDP-sharded.

    Estimators (β = ``beta``, q = ``q``, α = ``alpha``; h_t from ``reference``, h_1 := g_1)::

        gluon: M_t = β M_{t−1} + (1−β) g_t,  M_0 = 0                  (estimator "ema"; 1 gradient/step)
        mvr1:  M_t = g_t + β (M_{t−1} − h_t),  M_1 = g_1              (Algorithm 2, STORM; "storm")
        mvr2:  G_t = g_t + (1−q)(G_{t−1} − h_t),  G_1 = g_1;  M_t = β M_{t−1} + (1−β) G_t   (Algorithm 4)
        mvr3:  mvr2's G_t;  M_t = β M_{t−1} + (1−β) G_t + α (g_t − h_t)  (our reading of Algorithm 5)

    Update maps (radius t_i = η · scale_i, η = ``lr``, no weight decay)::

        spectral (hidden matrices):          X ← X − η · s_hidden · sqrt(A/B) · NS(u_t)
        sign (embedding / tied output head): X ← X − η · s_embed · (1/d_model) · sign(u_t)
        constrained=True (Scion's default form): both start from (1 − η) X instead of X

    with u_t = M_t, s_hidden = ``hidden_scale``, s_embed = ``embed_scale``, d_model = last dimension
    of the parameter. Parameters routed to ``"adamw"`` (default: ndim < 2) take AdamW with
    ``adamw_betas``, ``adamw_eps``, ``adamw_lr`` (None: ``lr``), ``adamw_weight_decay`` (None: 0).
    The paper's setting: η = 3.6e-4, s_hidden = 50, s_embed = 3000, β = 0.9 and
    ``reference="prev_params"`` (two gradients on the same batch).
    """

    preset_defaults = {"variant": "mvr1"}

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 3.6e-4,
        variant: Variant = "mvr1",
        beta: float = D["beta"],
        q: float = D["q"],
        alpha: float = D["alpha"],
        hidden_scale: float = D["hidden_scale"],
        embed_scale: float = D["embed_scale"],
        constrained: bool = D["constrained"],
        reference: Literal["none", "prev_step", "prev_params", "prev_batch"] = "prev_params",
        ns_steps: int = D["ns_steps"],
        ns_coefficients: tuple[float, float, float] = D["ns_coefficients"],
        ns_dtype: torch.dtype | None = None,
        adamw_betas: tuple[float, float] = D["adamw_betas"],
        adamw_eps: float = D["adamw_eps"],
        adamw_lr: float | None = None,
        adamw_weight_decay: float | None = None,
        *,
        process_group: Any = None,
    ) -> None:
        check_choice("variant", variant, VARIANTS)
        super().__init__(
            params,
            VARIANT_ESTIMATORS[variant],
            lr=lr,
            variant=variant,
            beta=beta,
            q=q,
            alpha=alpha,
            scale="unscion",
            hidden_scale=hidden_scale,
            embed_scale=embed_scale,
            constrained=constrained,
            reference=reference,
            weight_decay=0.0,
            ns_steps=ns_steps,
            ns_coefficients=ns_coefficients,
            ns_dtype=ns_dtype,
            adamw_betas=adamw_betas,
            adamw_eps=adamw_eps,
            adamw_lr=adamw_lr,
            adamw_weight_decay=adamw_weight_decay,
            process_group=process_group,
        )

    def _estimator_name(self, group: dict[str, Any]) -> str:
        return VARIANT_ESTIMATORS[group["variant"]]

    def _estimator_pool(self, estimator: str) -> list[Estimator]:
        return [get_estimator(name) for name in VARIANT_ESTIMATORS.values()]

    def _validate_group(self, group: dict[str, Any], where: str) -> None:
        check_choice("variant" + where, group["variant"], VARIANTS)
        check_choice("scale" + where, group["scale"], ("unscion",))
        if group.get("lmo") in ("spectral", "sign") and group["weight_decay"] != 0.0:
            raise bad(
                "weight_decay" + where,
                group["weight_decay"],
                "Gluon LMO steps have no weight decay; only lmo='adamw' groups may set it",
            )
