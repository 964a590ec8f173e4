"""Update maps (geometries) of ALGORITHMS.md §3. They modify the parameter ``X`` in place.

``X`` is a parameter (or a shard of one), ``O = NS(u_t)`` the orthogonalized direction, ``u_t`` the
estimator's direction, ``η`` the learning rate, ``λ`` the weight decay, ``A × B = (d_out, d_in)``.
"""

from __future__ import annotations

import math

from torch import Tensor


def muon_scale(A: int, B: int) -> float:
    """Keller Jordan's Muon shape factor ``sqrt(max(1, A/B))``."""
    return math.sqrt(max(1.0, A / B))


def moonlight_scale(A: int, B: int) -> float:
    """Moonlight's shape factor ``0.2 · sqrt(max(A, B))`` (lets AdamW learning rates carry over)."""
    return 0.2 * math.sqrt(max(A, B))


def gluon_spectral_scale(A: int, B: int, s_hidden: float) -> float:
    """unScion spectral radius factor ``s_hidden · sqrt(A/B)``."""
    return s_hidden * math.sqrt(A / B)


def scaled_spectral_update_(X: Tensor, O: Tensor, eta: float, scale: float, weight_decay: float) -> Tensor:
    """Muon / Moonlight update (``scale`` from :func:`muon_scale` or :func:`moonlight_scale`):

    Muon: ``X ← (1 − ηλ) X − η · sqrt(max(1, A/B)) · NS(u_t)``;
    Moonlight: ``X ← (1 − ηλ) X − η · 0.2 · sqrt(max(A, B)) · NS(u_t)`` (weight decay uses the
    unscaled η). ``O`` is ``NS(u_t)``.
    """
    if weight_decay != 0.0:
        X.mul_(1.0 - eta * weight_decay)
    return X.add_(O, alpha=-eta * scale)


def gluon_spectral_update_(X: Tensor, O: Tensor, eta: float, s_hidden: float) -> Tensor:
    """Gluon / unScion spectral LMO step on a hidden matrix (radius ``t_i = η · s_hidden``, no decay):

    ``X ← X − η · s_hidden · sqrt(A/B) · NS(u_t)``; ``O`` is ``NS(u_t)``, ``A × B`` the matrix shape.
    """
    A, B = O.shape[-2], O.shape[-1]
    return X.add_(O, alpha=-eta * gluon_spectral_scale(A, B, s_hidden))


def sign_update_(X: Tensor, u: Tensor, eta: float, s_embed: float, d_model: int) -> Tensor:
    """Gluon / unScion sign LMO step on the embedding / tied output head (no weight decay):

    ``X ← X − η · s_embed · (1/d_model) · sign(u_t)``. Elementwise, so ``X`` and ``u`` may be
    matching shards of the parameter; ``d_model`` is the full parameter's last dimension.
    """
    return X.add_(u.sign(), alpha=-eta * s_embed / d_model)


def adamw_update_(
    X: Tensor,
    m: Tensor,
    v: Tensor,
    g: Tensor,
    t: int,
    eta: float,
    betas: tuple[float, float],
    eps: float,
    weight_decay: float,
) -> Tensor:
    """AdamW (decoupled weight decay, bias-corrected) for what the Muon geometry does not cover:

    ``m_t = β₁ m_{t−1} + (1−β₁) g_t``, ``v_t = β₂ v_{t−1} + (1−β₂) g_t²``,
    ``m̂_t = m_t / (1−β₁ᵗ)``, ``v̂_t = v_t / (1−β₂ᵗ)``,
    ``X ← (1 − ηλ) X − η · m̂_t / (sqrt(v̂_t) + ε)``.
    ``m`` and ``v`` are updated in place (they are optimizer state); elementwise, so shards work.
    """
    beta1, beta2 = betas
    m.lerp_(g, 1.0 - beta1)
    v.mul_(beta2).addcmul_(g, g, value=1.0 - beta2)
    bias1 = 1.0 - beta1**t
    bias2 = 1.0 - beta2**t
    denom = (v / bias2).sqrt_().add_(eps)
    if weight_decay != 0.0:
        X.mul_(1.0 - eta * weight_decay)
    return X.addcdiv_(m, denom, value=-eta / bias1)
