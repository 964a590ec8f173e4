"""Gluon-MVR-1/2/3 (seed 001: Qian, Rammal, Kovalev, Richtárik, arXiv 2512.16598) and the Gluon baseline."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import torch
from torch import Tensor

from .estimators import ema, mvr2, mvr3, storm
from .sharded import REFERENCE_SOURCES, ShardedLMOOptimizer, check_choice, check_float
from .updates import gluon_spectral_update_, sign_update_

Variant = Literal["gluon", "mvr1", "mvr2", "mvr3"]
VARIANTS = ("gluon", "mvr1", "mvr2", "mvr3")


class GluonMVR(ShardedLMOOptimizer):
    """Gluon (unScion LMOs) with momentum variance reduction, DDP-sharded.

    Estimators (β = ``beta``, q = ``q``, α = ``alpha``; h_t from ``reference``, h_1 := g_1)::

        gluon: M_t = β M_{t−1} + (1−β) g_t,  M_0 = 0                  (ignores h; 1 gradient/step)
        mvr1:  M_t = g_t + β (M_{t−1} − h_t),  M_1 = g_1              (Algorithm 2, STORM)
        mvr2:  G_t = g_t + (1−q)(G_{t−1} − h_t),  G_1 = g_1;  M_t = β M_{t−1} + (1−β) G_t   (Algorithm 4)
        mvr3:  mvr2's G_t;  M_t = β M_{t−1} + (1−β) G_t + α (g_t − h_t)  (our reading of Algorithm 5)

    Update maps (radius t_i = η · scale_i, η = ``lr``, no weight decay)::

        spectral (hidden matrices):          X ← X − η · s_hidden · sqrt(A/B) · NS(u_t)
        sign (embedding / tied output head): X ← X − η · s_embed · (1/d_model) · sign(u_t)

    with u_t = M_t, s_hidden = ``hidden_scale``, s_embed = ``embed_scale``, d_model = last dimension
    of the parameter. Parameters routed to ``"adamw"`` (default: ndim < 2) take AdamW with
    ``adamw_betas``, ``adamw_eps``, ``adamw_lr`` (None: ``lr``), ``adamw_weight_decay`` (None: 0).
    Seed 001's paper setting: η = 3.6e-4, s_hidden = 50, s_embed = 3000, β = 0.9 and
    ``reference="prev_params"`` (two gradients on the same batch).
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 3.6e-4,
        variant: Variant = "mvr1",
        beta: float = 0.9,
        q: float = 0.5,
        alpha: float = 0.0,
        hidden_scale: float = 50.0,
        embed_scale: float = 3000.0,
        reference: Literal["none", "prev_step", "prev_params", "prev_batch"] = "prev_params",
        ns_steps: int = 5,
        ns_dtype: torch.dtype | None = None,
        adamw_betas: tuple[float, float] = (0.9, 0.95),
        adamw_eps: float = 1e-8,
        adamw_lr: float | None = None,
        adamw_weight_decay: float | None = None,
        *,
        process_group: Any = None,
    ) -> None:
        defaults = dict(
            lr=lr,
            variant=variant,
            beta=beta,
            q=q,
            alpha=alpha,
            hidden_scale=hidden_scale,
            embed_scale=embed_scale,
            reference=reference,
            weight_decay=0.0,
            ns_steps=ns_steps,
            ns_dtype=ns_dtype,
            adamw_betas=adamw_betas,
            adamw_eps=adamw_eps,
        )
        super().__init__(
            params,
            defaults,
            adamw_overrides={"lr": adamw_lr, "weight_decay": adamw_weight_decay},
            process_group=process_group,
        )

    def _validate_hparams(self, group: dict[str, Any], where: str) -> None:
        check_choice("variant" + where, group["variant"], VARIANTS)
        check_float("beta" + where, group["beta"], lo=0.0, hi=1.0, hi_open=True)
        check_float("q" + where, group["q"], lo=0.0, hi=1.0, lo_open=True)
        check_float("alpha" + where, group["alpha"], lo=0.0)
        check_float("hidden_scale" + where, group["hidden_scale"], lo=0.0, lo_open=True)
        check_float("embed_scale" + where, group["embed_scale"], lo=0.0, lo_open=True)
        check_choice("reference" + where, group["reference"], REFERENCE_SOURCES)
        if group.get("lmo") in ("spectral", "sign") and group["weight_decay"] != 0.0:
            raise ValueError(
                f"Invalid weight_decay{where}: {group['weight_decay']!r} (Gluon LMO steps "
                "have no weight decay; only lmo='adamw' groups may set it)"
            )

    def _group_reference(self, group: dict[str, Any]) -> str:
        if group["lmo"] == "adamw" or group["variant"] == "gluon":
            return "none"
        return group["reference"]

    def _direction(self, group: dict[str, Any], state: dict[str, Any], g: Tensor, h: Tensor | None) -> Tensor:
        variant, beta = group["variant"], group["beta"]
        M_prev = state.get("momentum")
        if variant == "gluon":
            M = ema(M_prev, g, beta)
        elif variant == "mvr1":
            M = storm(M_prev, g, h, beta)
        elif variant == "mvr2":
            state["G"], M = mvr2(state.get("G"), M_prev, g, h, beta, group["q"])
        else:
            state["G"], M = mvr3(state.get("G"), M_prev, g, h, beta, group["q"], group["alpha"])
        state["momentum"] = M
        return M

    def _apply_spectral(self, group: dict[str, Any], X: Tensor, O: Tensor) -> None:
        gluon_spectral_update_(X, O, group["lr"], group["hidden_scale"])

    def _apply_sign(self, group: dict[str, Any], X: Tensor, u: Tensor, d_model: int) -> None:
        sign_update_(X, u, group["lr"], group["embed_scale"], d_model)
