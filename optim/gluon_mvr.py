"""Gluon-MVR-1/2/3 (the Gluon-MVR paper: Qian, Rammal, Kovalev, Richtárik, "Muon is Provably Faster
with Momentum Variance Reduction", arXiv 2512.16598) and the Gluon baseline: a named preset of
:class:`optim.sharded.ShardedOptimizer`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from torch import Tensor

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

    Keyword arguments beyond ``lr`` and ``variant`` are the hyperparameters of the estimators and the
    geometries (``beta``, ``q``, ``alpha``, ``hidden_scale``, ``embed_scale``, ``constrained``,
    ``reference``, ``ns_*``, ``adamw_*``); each default is declared once, in ``optim/registry.py``.
    """

    # unScion's spectral radius, two gradients on the same batch (the paper's setting), no weight decay on
    # the LMO steps; `variant` is set per group (a group may keep plain momentum)
    preset_defaults = {"variant": "mvr1", "scale": "unscion", "reference": "prev_params"}
    param_routing = "gluon"

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 3.6e-4,
        *,
        variant: Variant = "mvr1",
        process_group: Any = None,
        **hparams: Any,
    ) -> None:
        check_choice("variant", variant, VARIANTS)
        estimator = VARIANT_ESTIMATORS[variant]
        super().__init__(params, estimator, lr=lr, variant=variant, process_group=process_group, **hparams)

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
