"""Every optimizer hyperparameter's default, declared once.

The registry's estimators and geometries (:mod:`optim.registry`), the presets' signatures
(:mod:`optim.muon_mvr`, :mod:`optim.gluon_mvr`) and the trainer's config schema
(``harness/config.py`` ``OptimCfg``) all read their defaults from :data:`HPARAM_DEFAULTS`.
Two settings are each preset's own: the learning rate (the paper it comes from; the trainer's configs
always set it) and the reference source (MuonMVR derives it from ``is_approx``; GluonMVR takes the
Gluon-MVR paper's ``"prev_params"``); the value here is the generic optimizer's.
"""

from __future__ import annotations

from typing import Any

from .newton_schulz import NS_COEFFICIENTS

HPARAM_DEFAULTS: dict[str, Any] = {
    # MuonMVR (estimator "mars"): the MuonMVR paper's momentum and correction strength
    "momentum": 0.95,
    "gamma": 0.025,
    "clip": True,
    "nesterov": False,
    # Gluon-MVR (estimators "ema", "storm", "mvr2", "mvr3"): the Gluon-MVR paper's beta, q, alpha
    "beta": 0.9,
    "q": 0.5,
    "alpha": 0.0,
    # geometries: spectral shape factor and unScion radii (the Gluon-MVR paper's Figure 4: 50 and 3000)
    "scale": "moonlight",
    "hidden_scale": 50.0,
    "embed_scale": 3000.0,
    "constrained": False,  # Scion's constrained form of the spectral and sign steps: (1 − η) X − η·s·lmo
    # AdamW on the parameters routed to it
    "adamw_betas": (0.9, 0.95),
    "adamw_eps": 1e-8,
    # every estimator and geometry
    "weight_decay": 0.0,
    "reference": "none",  # the reference gradient h_t (optim/README.md §1); "none": no correction
    "ns_steps": 5,  # Newton-Schulz iterations of the spectral LMO
    "ns_coefficients": NS_COEFFICIENTS,  # their (a, b, c): Keller Jordan's quintic
    "ns_dtype": None,  # None: bfloat16 on CUDA, float32 elsewhere
}


def defaults(*names: str) -> dict[str, Any]:
    """The defaults of ``names``, as a new dict (for an estimator's or geometry's registration)."""
    return {name: HPARAM_DEFAULTS[name] for name in names}
