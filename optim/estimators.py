"""Momentum estimators of ``optim/README.md`` §2, as small pure functions.

Notation (``optim/README.md``): ``g_t = ∇f(X_t; ξ_t)`` is the gradient of step t, ``h_t`` the reference
gradient of step t (§1), ``M_t`` the momentum, ``G_t`` the inner MVR estimator of Gluon-MVR-2/3.
Every function is out-of-place (inputs are never modified) and elementwise, except the MARS clip,
which normalizes by the Frobenius norm of the whole tensor it is given (call it per parameter).

First step: at t = 1 no reference exists, so callers pass ``h=None`` and the correction term is
zero (``h_1 := g_1``); ``M_prev=None`` / ``G_prev=None`` mark the first step of an estimator.
"""

from __future__ import annotations

from torch import Tensor


def reference_or_gradient(g: Tensor, h: Tensor | None) -> Tensor:
    """``h_t`` if a reference exists, else ``h_1 := g_1`` (zero correction on the first step)."""
    return g if h is None else h


def mars_correction(
    g: Tensor, h: Tensor | None, gamma: float, beta: float, clip: bool, norm: Tensor | None = None
) -> Tensor:
    """MARS-corrected gradient of MuonMVR (the MuonMVR paper):

    ``c_t = g_t + γ · β/(1−β) · (g_t − h_t)``, then per tensor ``c_t ← c_t / max(1, ‖c_t‖_F)``
    (only when ``clip``). γ = 0 with the clip off gives ``c_t = g_t``. ``g`` and ``h`` may be a part of
    the tensor (a shard); ``norm`` is then ``‖c_t‖_F`` of the whole tensor (None: the norm of ``c_t``
    as given).
    """
    h = reference_or_gradient(g, h)
    c = g if gamma == 0.0 or h is g else g + (gamma * beta / (1.0 - beta)) * (g - h)
    if clip:
        norm = c.norm() if norm is None else norm
        c = c / norm.clamp_min(1.0)  # ÷ max(1, ‖c_t‖_F) without a host sync
    return c


def ema(M_prev: Tensor | None, g: Tensor, beta: float) -> Tensor:
    """Exponential moving average: ``M_t = β M_{t−1} + (1−β) g_t``, ``M_0 = 0``."""
    if M_prev is None:
        return (1.0 - beta) * g
    return M_prev.lerp(g, 1.0 - beta)


def nesterov(M: Tensor, g: Tensor, beta: float) -> Tensor:
    """Nesterov direction of the Muon baseline: ``u_t = β M_t + (1−β) g_t``."""
    return g.lerp(M, beta)


def storm(M_prev: Tensor | None, g: Tensor, h: Tensor | None, beta: float) -> Tensor:
    """Gluon-MVR-1 (the Gluon-MVR paper, Algorithm 2; STORM):

    ``M_t = g_t + β (M_{t−1} − h_t)``, ``M_1 = g_1``."""
    if M_prev is None:
        return g.clone()
    h = reference_or_gradient(g, h)
    return g + beta * (M_prev - h)


def mvr2(
    G_prev: Tensor | None, M_prev: Tensor | None, g: Tensor, h: Tensor | None, beta: float, q: float
) -> tuple[Tensor, Tensor]:
    """Gluon-MVR-2 (the Gluon-MVR paper, Algorithm 4): an MVR estimator under ordinary momentum,

    ``G_t = g_t + (1−q)(G_{t−1} − h_t)``, ``G_1 = g_1``; ``M_t = β M_{t−1} + (1−β) G_t`` (``M_0 = 0``).
    q = 1 gives Gluon. Returns ``(G_t, M_t)``.
    """
    if G_prev is None:
        G = g.clone()
    else:
        h = reference_or_gradient(g, h)
        G = g + (1.0 - q) * (G_prev - h)
    return G, ema(M_prev, G, beta)


def mvr3(
    G_prev: Tensor | None,
    M_prev: Tensor | None,
    g: Tensor,
    h: Tensor | None,
    beta: float,
    q: float,
    alpha: float,
) -> tuple[Tensor, Tensor]:
    """Gluon-MVR-3 (the Gluon-MVR paper, Algorithm 5) — **our reading**, its text could not be read:

    Gluon-MVR-2 plus an extra same-batch correction with coefficient α,
    ``G_t = g_t + (1−q)(G_{t−1} − h_t)``, ``G_1 = g_1``;
    ``M_t = β M_{t−1} + (1−β) G_t + α (g_t − h_t)``. Returns ``(G_t, M_t)``.
    The three readings of the paper's Figure 4 (A: β = 0.9, α = 0.8; B: β = α = 0.8; C: β = α = 0.2)
    are configurations of this one function (``optim/README.md`` §2, README "Assumptions").
    """
    G, M = mvr2(G_prev, M_prev, g, h, beta, q)
    h = reference_or_gradient(g, h)
    if alpha != 0.0 and h is not g:
        M = M + alpha * (g - h)
    return G, M


def adam_direction_(
    m: Tensor, v: Tensor, g: Tensor, t: int, betas: tuple[float, float], eps: float
) -> Tensor:
    """Adam's direction (the estimator half of AdamW; the step is :func:`optim.updates.euclidean_update_`):

    ``m_t = β₁ m_{t−1} + (1−β₁) g_t``, ``v_t = β₂ v_{t−1} + (1−β₂) g_t²``,
    ``m̂_t = m_t / (1−β₁ᵗ)``, ``v̂_t = v_t / (1−β₂ᵗ)``, ``u_t = m̂_t / (sqrt(v̂_t) + ε)``.
    ``m`` and ``v`` (optimizer state) are updated in place; elementwise, so shards work.
    """
    beta1, beta2 = betas
    m.lerp_(g, 1.0 - beta1)
    v.mul_(beta2).addcmul_(g, g, value=1.0 - beta2)
    denom = (v / (1.0 - beta2**t)).sqrt_().add_(eps)
    return (m / (1.0 - beta1**t)).div_(denom)
