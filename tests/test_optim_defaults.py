"""Each optimizer hyperparameter's default is declared once, beside the code that reads it (the registry's
estimators and geometries, ShardedOptimizer's common set, a preset's own keys); the presets' signatures
do not restate them, and the trainer (train.py, harness/) names none of them."""

import ast
import inspect
from pathlib import Path

from optim import ESTIMATORS, GEOMETRIES, GluonMVR, MuonMVR, ShardedOptimizer
from optim.sharded import COMMON_DEFAULTS

REPO = Path(__file__).resolve().parents[1]
PRESET_ARGS = {"self", "params", "lr", "is_approx", "reference", "variant", "process_group", "hparams"}


def declarations() -> dict[str, list[str]]:
    """hyperparameter -> every place that declares a default for it."""
    places: dict[str, list[str]] = {}
    for part in (*ESTIMATORS.values(), *GEOMETRIES.values()):
        for name in part.defaults:
            places.setdefault(name, []).append(f"{type(part).__name__} {part.name}")
    for name in COMMON_DEFAULTS:
        places.setdefault(name, []).append("COMMON_DEFAULTS")
    for preset in (MuonMVR, GluonMVR):
        for name in preset.preset_defaults:
            places.setdefault(name, []).append(preset.__name__)
    return places


def test_presets_take_hyperparameters_as_keywords_and_restate_no_default():
    for preset in (MuonMVR, GluonMVR, ShardedOptimizer):
        extra = set(inspect.signature(preset).parameters) - PRESET_ARGS - {"estimator", "adamw_lr",
                                                                             "adamw_weight_decay"}
        assert not extra, (preset.__name__, extra)


def test_shared_defaults_agree_where_several_parts_read_one_key():
    """A key several parts read (beta: ema, storm, mvr2, mvr3; constrained: spectral, sign) has one value."""
    values: dict[str, set] = {}
    for part in (*ESTIMATORS.values(), *GEOMETRIES.values()):
        for name, value in part.defaults.items():
            values.setdefault(name, set()).add(repr(value))
    assert all(len(v) == 1 for v in values.values()), values


def test_the_trainer_names_no_optimizer_hyperparameter():
    """train.py and harness/ never spell a hyperparameter of an optimizer of optim/ as a string or an
    attribute (lr, torch.optim's own convention for the schedule, excepted)."""
    names = set(declarations()) - {"lr"}
    assert {"momentum", "hidden_scale", "beta", "q", "gamma"} <= names
    for path in [REPO / "train.py", *sorted((REPO / "harness").glob("*.py"))]:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            spelled = (node.value if isinstance(node, ast.Constant) and isinstance(node.value, str)
                       else node.attr if isinstance(node, ast.Attribute) else None)
            assert spelled not in names, f"{path.relative_to(REPO)}:{node.lineno} names {spelled!r}"
