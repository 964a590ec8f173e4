"""Variance-reduced Muon optimizers: MuonMVR (the MuonMVR paper) and Gluon-MVR-1/2/3 (the Gluon-MVR
paper), with the Muon and Gluon baselines. Equations and how to add your own: ``optim/README.md``.

The math is in small pure functions (:mod:`optim.newton_schulz`, :mod:`optim.estimators`,
:mod:`optim.updates`), registered as estimators and geometries in :mod:`optim.registry`;
:mod:`optim.sharded` is the one sharded optimizer that consumes them (layout in
:mod:`optim.buckets`, collectives in :mod:`optim.comm`); :mod:`optim.muon_mvr` and
:mod:`optim.gluon_mvr` are named presets; :mod:`optim.oracle` is a slow, literal float64 oracle
used by the tests.
"""

from .estimators import adam_direction_, ema, mars_correction, mvr2, mvr3, nesterov, storm
from .gluon_mvr import VARIANT_ESTIMATORS, VARIANTS, GluonMVR
from .muon_mvr import MUON_SCALES, MuonMVR
from .newton_schulz import NS_COEFFICIENTS, default_ns_dtype, newton_schulz
from .param_groups import ROUTED_GROUPS, build_param_groups, check_coverage
from .registry import (
    ESTIMATORS,
    GEOMETRIES,
    Estimator,
    Geometry,
    get_estimator,
    get_geometry,
    register_estimator,
    register_geometry,
)
from .sharded import REFERENCE_SOURCES, TWO_PASS_SOURCES, ShardedOptimizer
from .validation import HyperparameterError, UnknownHyperparameter

__all__ = [
    "ESTIMATORS",
    "GEOMETRIES",
    "MUON_SCALES",
    "NS_COEFFICIENTS",
    "REFERENCE_SOURCES",
    "ROUTED_GROUPS",
    "TWO_PASS_SOURCES",
    "VARIANTS",
    "VARIANT_ESTIMATORS",
    "Estimator",
    "Geometry",
    "GluonMVR",
    "HyperparameterError",
    "MuonMVR",
    "ShardedOptimizer",
    "UnknownHyperparameter",
    "adam_direction_",
    "build_param_groups",
    "check_coverage",
    "default_ns_dtype",
    "ema",
    "get_estimator",
    "get_geometry",
    "mars_correction",
    "mvr2",
    "mvr3",
    "nesterov",
    "newton_schulz",
    "register_estimator",
    "register_geometry",
    "storm",
]
