"""Update maps (geometries) of ``optim/README.md`` §3. They modify the parameter ``X`` in place.

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
    unscaled η). ``O`` is ``NS(u_t)``. Constrained Scion's spectral step is this with λ = 1 and the
    unScion scale: ``X ← (1 − η) X − η · s_hidden · sqrt(A/B) · NS(u_t)``.
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


def sign_update_(
    X: Tensor, u: Tensor, eta: float, s_embed: float, d_model: int, constrained: bool = False
) -> Tensor:
    """Gluon / unScion sign LMO step on the embedding / tied output head (no weight decay):

    ``X ← X − η · s_embed · (1/d_model) · sign(u_t)``; constrained Scion:
    ``X ← (1 − η) X − η · s_embed · (1/d_model) · sign(u_t)``. Elementwise, so ``X`` and ``u`` may be
    matching shards of the parameter; ``d_model`` is the full parameter's last dimension.
    """
    if constrained:
        X.mul_(1.0 - eta)
    return X.add_(u.sign(), alpha=-eta * s_embed / d_model)


def euclidean_update_(X: Tensor, D: Tensor, eta: float, weight_decay: float) -> Tensor:
    """The step of AdamW (its direction ``D = u_t`` comes from :func:`optim.estimators.adam_direction_`):

    ``X ← (1 − ηλ) X − η · u_t``. Elementwise, so ``X`` and ``D`` may be matching shards.
    """
    if weight_decay != 0.0:
        X.mul_(1.0 - eta * weight_decay)
    return X.add_(D, alpha=-eta)
