"""Each optimizer hyperparameter's default is declared once (optim/defaults.py); the presets' signatures,
the registry and the trainer's schema agree with it."""

import inspect

from omegaconf import OmegaConf

from harness.config import OptimCfg
from optim import ESTIMATORS, GEOMETRIES, GluonMVR, MuonMVR
from optim.defaults import HPARAM_DEFAULTS
from optim.sharded import COMMON_DEFAULTS

PRESET_OWN = {"reference"}  # each preset's own default, like its lr (optim/defaults.py)
SCHEMA_NAME = {"adamw_betas": "betas", "adamw_eps": "eps"}  # OptimCfg's names for AdamW's keys


def test_preset_signatures_take_their_defaults_from_the_one_table():
    for preset in (MuonMVR, GluonMVR):
        for name, p in inspect.signature(preset).parameters.items():
            if name in HPARAM_DEFAULTS and name not in PRESET_OWN:
                assert p.default == HPARAM_DEFAULTS[name], (preset.__name__, name)


def test_registered_parts_and_common_defaults_agree_with_the_table():
    for part in (*ESTIMATORS.values(), *GEOMETRIES.values()):
        for name, value in part.defaults.items():
            assert value == HPARAM_DEFAULTS[name], (part.name, name)
    for name, value in COMMON_DEFAULTS.items():
        if name != "lr":
            assert value == HPARAM_DEFAULTS[name], name


def test_the_config_schema_has_the_same_defaults():
    schema = OmegaConf.to_container(OmegaConf.structured(OptimCfg), enum_to_str=True)
    for name, value in HPARAM_DEFAULTS.items():
        expected = list(value) if isinstance(value, tuple) else value
        assert schema[SCHEMA_NAME.get(name, name)] == expected, name
