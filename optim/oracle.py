"""Slow, literal float64 oracle of ``optim/README.md`` (the test oracle; never used for training).

Every line follows an equation of the spec, one parameter at a time, with no batching, sharding,
in-place tricks or shared code with the fast path. ``refs[t][i] is None`` means "no reference
gradient at this step" (h_t := g_t); a gradient of None is a zero gradient.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor


def ns_literal(G: Tensor, steps: int = 5) -> Tensor:
    """``transpose if A > B, X ← X / (‖X‖_F + 1e-7)``, then ``A = X Xᵀ; B = bA + cA²; X = aX + BX``."""
    a, b, c = 3.4445, -4.7750, 2.0315
    X = G.to(torch.float64)
    transposed = X.shape[0] > X.shape[1]
    if transposed:
        X = X.T
    X = X / (torch.sqrt((X * X).sum()) + 1e-7)
    for _ in range(steps):
        A = X @ X.T
        B = b * A + c * (A @ A)
        X = a * X + B @ X
    if transposed:
        X = X.T
    return X


def _adamw(X: Tensor, g: Tensor, st: dict[str, Any], t: int, hp: dict[str, Any]) -> Tensor:
    b1, b2 = hp["betas"]
    st["m"] = b1 * st.get("m", torch.zeros_like(X)) + (1 - b1) * g
    st["v"] = b2 * st.get("v", torch.zeros_like(X)) + (1 - b2) * g * g
    m_hat = st["m"] / (1 - b1**t)
    v_hat = st["v"] / (1 - b2**t)
    return (1 - hp["lr"] * hp["weight_decay"]) * X - hp["lr"] * m_hat / (torch.sqrt(v_hat) + hp["eps"])


def oracle_run(
    kind: str,
    X0: list[Tensor],
    lmos: list[str],
    grads: list[list[Tensor | None]],
    refs: list[list[Tensor | None]],
    hp: dict[str, Any],
    adamw: dict[str, Any],
) -> list[list[Tensor]]:
    """Run ``len(grads)`` steps of ``kind`` ∈ {"muon_mvr", "gluon"}; return the parameters after each.

    ``hp`` for muon_mvr: lr, momentum, gamma, weight_decay, clip, nesterov, scale, ns_steps;
    for gluon: lr, variant, beta, q, alpha, hidden_scale, embed_scale, ns_steps.
    ``adamw``: lr, betas, eps, weight_decay (for parameters whose lmo is "adamw").
    """
    X = [x.detach().to(torch.float64).clone() for x in X0]
    state: list[dict[str, Any]] = [{} for _ in X]
    history = []
    for t, (gs, hs) in enumerate(zip(grads, refs), start=1):
        for i in range(len(X)):
            g = torch.zeros_like(X[i]) if gs[i] is None else gs[i].to(torch.float64)
            h = g if hs[i] is None else hs[i].to(torch.float64)
            st = state[i]
            if lmos[i] == "adamw":
                X[i] = _adamw(X[i], g, st, t, adamw)
                continue
            A = X[i].shape[0]
            Bdim = X[i].numel() // A
            if kind == "muon_mvr":
                beta, gamma = hp["momentum"], hp["gamma"]
                c = g + gamma * beta / (1 - beta) * (g - h)
                if hp["clip"]:
                    c = c / max(1.0, float(torch.sqrt((c * c).sum())))
                st["M"] = beta * st.get("M", torch.zeros_like(g)) + (1 - beta) * c
                u = beta * st["M"] + (1 - beta) * c if hp["nesterov"] else st["M"]
                O = ns_literal(u.reshape(A, Bdim), hp["ns_steps"]).reshape(X[i].shape)
                if hp["scale"] == "moonlight":
                    s = 0.2 * math.sqrt(max(A, Bdim))
                else:
                    s = math.sqrt(max(1.0, A / Bdim))
                X[i] = (1 - hp["lr"] * hp["weight_decay"]) * X[i] - hp["lr"] * s * O
                continue
            beta, q, variant = hp["beta"], hp["q"], hp["variant"]
            if variant == "gluon":
                st["M"] = beta * st.get("M", torch.zeros_like(g)) + (1 - beta) * g
            elif variant == "mvr1":
                st["M"] = g if t == 1 else g + beta * (st["M"] - h)
            else:
                st["G"] = g if t == 1 else g + (1 - q) * (st["G"] - h)
                st["M"] = beta * st.get("M", torch.zeros_like(g)) + (1 - beta) * st["G"]
                if variant == "mvr3":
                    st["M"] = st["M"] + hp["alpha"] * (g - h)
            if lmos[i] == "spectral":
                O = ns_literal(st["M"].reshape(A, Bdim), hp["ns_steps"]).reshape(X[i].shape)
                X[i] = X[i] - hp["lr"] * hp["hidden_scale"] * math.sqrt(A / Bdim) * O
            elif lmos[i] == "sign":
                d_model = X[i].shape[-1]
                X[i] = X[i] - hp["lr"] * hp["embed_scale"] * (1 / d_model) * torch.sign(st["M"])
            else:
                raise ValueError(lmos[i])
        history.append([x.clone() for x in X])
    return history
