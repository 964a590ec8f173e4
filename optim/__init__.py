"""Variance-reduced Muon optimizers: MuonMVR (seed 000) and Gluon-MVR-1/2/3 (seed 001).

The math is in small pure functions (:mod:`optim.newton_schulz`, :mod:`optim.estimators`,
:mod:`optim.updates`); :mod:`optim.sharded` holds routing, sharding and communication;
:mod:`optim.reference` is a slow, literal float64 oracle used by the tests.
"""

from .estimators import ema, mars_correction, mvr2, mvr3, nesterov, storm
from .gluon_mvr import VARIANTS, GluonMVR
from .muon_mvr import MuonMVR
from .newton_schulz import NS_COEFFICIENTS, default_ns_dtype, newton_schulz
from .param_groups import build_param_groups, check_coverage
from .sharded import LMOS, REFERENCE_SOURCES, TWO_PASS_SOURCES

__all__ = [
    "LMOS",
    "NS_COEFFICIENTS",
    "REFERENCE_SOURCES",
    "TWO_PASS_SOURCES",
    "VARIANTS",
    "GluonMVR",
    "MuonMVR",
    "build_param_groups",
    "check_coverage",
    "default_ns_dtype",
    "ema",
    "mars_correction",
    "mvr2",
    "mvr3",
    "nesterov",
    "newton_schulz",
    "storm",
]
