"""The config: its schema (every key, its type, its choices and its default), and every check that runs
before any work, each naming the key, the value and what would work. Settings that need parsing are
parsed here, once, into typed values (`max_micro_seqs`, `compile_enabled`, `wandb_mode`).

Hydra composes ``configs/`` (config.yaml and its groups) and validates it against `Config`;
`check_config` then checks values that types alone cannot (ranges, divisibility, registered names).
Which keys may differ between a checkpoint and its resumption is declared here too (`RESUME_FREE`,
`RESUME_OPT_IN`); harness/checkpoint.py applies it.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import importlib
import json
import math
import os
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf
from torch import nn

from optim import MUON_SCALES, REFERENCE_SOURCES, VARIANTS
from optim.defaults import HPARAM_DEFAULTS as D


# ----------------------------------------------------------------------------- schema
class Family(Enum):
    adamw = "adamw"  # AdamW on every parameter
    muon = "muon"  # MuonMVR (Muon baseline and MVR1/2/3)
    gluon = "gluon"  # GluonMVR (Gluon baseline and Gluon-MVR-1/2/3)
    registered = "registered"  # any registered estimator: optimizer.estimator + optimizer.hparams


# choices that optim/ defines are taken from it, not repeated here
Reference = Enum("Reference", {name: name for name in REFERENCE_SOURCES}, type=str)


Variant = Enum("Variant", {name: name for name in VARIANTS}, type=str)


Scale = Enum("Scale", {name: name for name in MUON_SCALES}, type=str)


class Routing(Enum):
    muon = "muon"  # spectral hidden matrices, AdamW for embeddings/head/vectors
    gluon = "gluon"  # spectral hidden matrices, sign for embeddings/head, AdamW for vectors


class NSDtype(Enum):
    float32 = "float32"
    bfloat16 = "bfloat16"
    float64 = "float64"


class Order(Enum):
    shuffled = "shuffled"  # every epoch visits the seq_len+1 windows in a seeded order
    sequential = "sequential"  # modded-nanogpt's stream, each step within one shard (data/loader.py)


class Resume(Enum):
    auto = "auto"  # continue from the last checkpoint if run_dir has one
    never = "never"
    must = "must"


class Device(Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class WandbMode(Enum):
    disabled = "disabled"
    offline = "offline"
    online = "online"


# model.* names its architecture's config class with `_target_` (model.GPTConfig: the papers' GPT;
# model_track3.Track3Config: the optimization track's) and sets that class's fields; `name` is the
# trainer's own key (logs, figures). The class declares each field, its default and its checks, and
# its `build()` makes the model. The schema leaves model.* open (`Config.model`); `model_config_from`
# refuses a key the class does not have.
MODEL_TRAINER_KEYS = ("_target_", "name")  # model.* keys that are not fields of the config class
MODEL_EXAMPLES = "model.GPTConfig (the papers' GPT) or model_track3.Track3Config (the optimization track's)"


class ModelConfig(Protocol):
    """A model config class as the trainer uses it: the vocabulary (the data are checked against it) and
    `build`, which makes the model (a model.py `LanguageModel`)."""

    vocab_size: int

    def build(self) -> nn.Module: ...


def model_config_class(target: Any) -> type:
    """The class model._target_ names (``module.Class``, importable): a dataclass with ``build()``."""
    key = "model._target_"
    module_name, _, attr = str(target).rpartition(".")
    if not isinstance(target, str) or not module_name:
        raise _bad(key, target, f"name the model's config class as module.Class: {MODEL_EXAMPLES}")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise _bad(key, target, f"{e}; name an importable config class: {MODEL_EXAMPLES}") from None
    is_config = isinstance(cls, type) and dataclasses.is_dataclass(cls)
    if not (is_config and callable(getattr(cls, "build", None))):
        raise _bad(key, target, f"not a model config class (a dataclass with build()): {MODEL_EXAMPLES}")
    return cls


def model_config_from(section: dict[str, Any], seq_len: int) -> ModelConfig:
    """model.* (a plain dict) and data.seq_len as the config class model._target_ names, whose own checks
    run; every refusal is a ConfigError naming the key (a misspelled one with the closest fields)."""
    fields = {k: v for k, v in section.items() if k not in MODEL_TRAINER_KEYS}
    cls = model_config_class(section.get("_target_"))
    known = [f.name for f in dataclasses.fields(cls) if f.init and f.name != "seq_len"]
    for key, value in fields.items():
        if key == "seq_len":
            raise _bad("model.seq_len", value, "the sequence length is data.seq_len: set that instead")
        if key not in known:
            close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
            hint = f"did you mean {' or '.join(f'model.{k}' for k in close)}? " if close else ""
            raise ConfigError(f"config key model.{key} is not a field of {section['_target_']}: {hint}"
                              f"its fields are {', '.join(known)}")
    if "vocab_size" not in fields:
        raise ConfigError("config key model.vocab_size is missing: the data's token ids are checked against "
                          "it; set it in the model's yaml (GPT-2: 50304)")
    try:
        return cls(seq_len=seq_len, **fields)
    except ValueError as e:  # the class's checks name the key and the fix
        raise ConfigError(f"config key {e}") from None


def check_model_key(key: str) -> None:
    """A command-line override of model.<key>: refused (with the closest fields) unless it is a trainer key
    or a field of a config class that some configs/model/*.yaml names; whether the run's own class has it
    is checked once Hydra has composed (`model_config_from`)."""
    known = set(MODEL_TRAINER_KEYS)
    for path in sorted((CONFIGS / "model").rglob("*.yaml")):
        target = OmegaConf.load(path).get("_target_")
        if target is not None:
            known |= {f.name for f in dataclasses.fields(model_config_class(target)) if f.name != "seq_len"}
    leaf = key.removeprefix("model.")
    if leaf not in known:
        close = difflib.get_close_matches(leaf, sorted(known), n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(f'model.{k}' for k in close)}?" if close else "."
        raise ConfigError(f"no key {key}{hint} model.* are the fields of the model's config class "
                          f"(model._target_: {MODEL_EXAMPLES})")


RETIRED_ARCH = {"gpt": "model.GPTConfig", "track3": "model_track3.Track3Config"}  # model.arch -> _target_


def with_model_target(flat: dict[str, Any]) -> dict[str, Any]:
    """A flat config saved before model.* named its class (a checkpoint's, a run folder's config.yaml) in
    today's keys: model.arch (absent: gpt) becomes model._target_, and the track's GPT drops
    model.tie_embeddings (always false there, not one of its fields). Newer configs come back as they are."""
    if "model._target_" in flat or not any(k.startswith("model.") for k in flat):
        return flat
    out = dict(flat)
    arch = out.pop("model.arch", "gpt")
    out["model._target_"] = RETIRED_ARCH.get(arch, arch)
    if arch == "track3":
        out.pop("model.tie_embeddings", None)
    return out


@dataclass
class OptimCfg:
    """optimizer.*; every hyperparameter's default comes from optim/defaults.py, where it is declared once."""

    name: str = MISSING
    label: str = ""  # how figures and tables name it (e.g. "Gluon-MVR-1"); "" -> name
    family: Family = MISSING
    lr: float = MISSING
    weight_decay: float = D["weight_decay"]
    betas: list[float] = field(default_factory=lambda: list(D["adamw_betas"]))  # AdamW (and AdamW-routed)
    eps: float = D["adamw_eps"]
    # muon family (MuonMVR)
    momentum: float = D["momentum"]
    gamma: float = D["gamma"]
    clip: bool = D["clip"]
    nesterov: bool = D["nesterov"]
    scale: Scale = Scale[D["scale"]]
    # gluon family (GluonMVR)
    variant: Variant = Variant.gluon
    beta: float = D["beta"]
    q: float = D["q"]
    alpha: float = D["alpha"]
    hidden_scale: float = D["hidden_scale"]
    embed_scale: float = D["embed_scale"]
    constrained: bool = D["constrained"]  # constrained Scion: X <- (1 - lr) X - lr s lmo(M) (spectral, sign)
    # registered family: any registered estimator (optim/README.md, "Adding an estimator or a geometry")
    plugins: list[str] = field(default_factory=list)  # modules imported first: they call register_estimator
    estimator: str = ""
    routing: Routing = Routing.muon
    lmos: dict[str, str] = field(default_factory=dict)  # {hidden|embed|vector: a registered geometry}
    hparams: dict[str, Any] = field(default_factory=dict)
    # all families
    reference: Reference = Reference[D["reference"]]
    ns_steps: int = D["ns_steps"]
    ns_coefficients: list[float] = field(default_factory=lambda: list(D["ns_coefficients"]))  # (a, b, c)
    # a routed group's own hyperparameters, e.g. {embed: {lr: 0.7}} (optim/param_groups.py)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    ns_dtype: NSDtype | None = None  # null: the optimizer's default (bf16 on CUDA, float32 on CPU)


@dataclass
class BatchCfg:
    name: str = MISSING
    global_seqs: int = MISSING
    micro_seqs: int | None = None  # null: train.max_micro_seqs decides


@dataclass
class DataCfg:
    name: str = MISSING
    train_files: str = MISSING
    val_files: str = MISSING
    val_tokens: int = MISSING
    seq_len: int = MISSING
    order: Order = Order.shuffled


@dataclass
class TrainCfg:
    steps: int = 200
    warmup_steps: int = 0
    warmdown_frac: float = 0.284
    val_every: int = 50  # 0: only at the end
    val_late_every: int = 0  # validation interval over the last val_late_frac of the steps (0: val_every)
    val_late_frac: float = 0.1
    ckpt_every: int = 100  # 0: only at the end (and on preemption)
    log_every: int = 1
    max_micro_seqs: str = "16"  # an int, or "auto": the largest that fits (probed on CUDA; 16 on CPU)
    grad_clip: float | None = None  # clip the global norm of every gradient pass (the MuonMVR paper: 1.0)
    peak_tflops: float | None = None  # dense bf16 peak per device for MFU; null: looked up by GPU name
    timing_warmup: int = 2  # steps after (re)start excluded from the median step time (compile warm-up)


@dataclass
class FigureCfg:
    name: str = ""
    title: str = ""
    optimizers: list[str] = field(default_factory=list)
    max_passes: int | None = None  # the protocol's gradient passes a step (the track: 1); more are marked


@dataclass
class WandbCfg:
    mode: WandbMode = WandbMode.disabled  # $WANDB_MODE, when set, wins
    project: str = "nanogpt-mvr"
    group: str = ""  # "": figure.name (runs of one figure together)
    init_timeout_s: float = 60.0  # an unreachable server: go offline after this long, with a warning


@dataclass
class Config:
    model: dict[str, Any] = field(default_factory=dict)  # open: see `model_config_from`
    optimizer: OptimCfg = field(default_factory=OptimCfg)
    batch: BatchCfg = field(default_factory=BatchCfg)
    data: DataCfg = field(default_factory=DataCfg)
    train: TrainCfg = field(default_factory=TrainCfg)
    figure: FigureCfg = field(default_factory=FigureCfg)
    wandb: WandbCfg = field(default_factory=WandbCfg)
    seed: int = 0
    run_name: str = "run"
    run_dir: str = "runs/run"
    resume: Resume = Resume.auto
    resume_allow: list[str] = field(default_factory=list)  # keys that may differ from the checkpoint's
    device: Device = Device.auto
    compile: str = "auto"  # auto (on for CUDA, off for CPU) | true | false


ConfigStore.instance().store(name="base_schema", node=Config)


# ----------------------------------------------------------------------------- checks before any work
class ConfigError(ValueError):
    """A config value that cannot work; raised before anything is computed or written."""


def _bad(key: str, value: Any, why: str) -> ConfigError:
    return ConfigError(f"config key {key}={value!r} is invalid: {why}")


def check_schema(cfg) -> None:
    """Every key must exist in the schema, also keys added with Hydra's `+key=value` (which skips it)."""
    try:
        OmegaConf.merge(OmegaConf.structured(Config), OmegaConf.to_container(cfg, resolve=False))
    except Exception as e:  # omegaconf's ConfigKeyError / ValidationError
        key = getattr(e, "full_key", None) or "?"
        raise ConfigError(
            f"config key {key!r} is not part of the schema (harness/config.py `Config`): "
            f"{str(e).splitlines()[0]}. "
            "Check the spelling; a `+key=value` override cannot add keys here"
        ) from None


# ----------------------------------------------------------------------------- the command line
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
CONFIG_GROUPS = ("model", "optimizer", "batch", "data", "experiment")  # configs/<group>/<option>.yaml
HYDRA_FLAGS = ("-m", "--multirun")  # the only flags `check_command_line` reads past; others: Hydra's


def config_choices(group: str) -> list[str]:
    """The options of a config group: ``configs/<group>/**/*.yaml`` as paths without the suffix."""
    return sorted(
        str(p.relative_to(CONFIGS / group).with_suffix("")) for p in (CONFIGS / group).rglob("*.yaml")
    )


def schema_keys(node: Any = Config, prefix: str = "") -> dict[str, bool]:
    """Every key of the schema as ``section.key`` -> whether it is a dict (its sub-keys are free)."""
    out: dict[str, bool] = {}
    for f in dataclasses.fields(node):
        key = f"{prefix}{f.name}"
        inner = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(inner):
            out.update(schema_keys(type(inner), key + "."))
        else:
            out[key] = isinstance(inner, dict)
    return out


def check_command_line(args: list[str]) -> None:
    """Refuse, before Hydra composes anything, an override of a key the schema does not have (with the
    closest keys it does have) and a group option with no config file (with the options there are).
    Hydra's own error for these is an exit code 1 and, for a misspelled key, the advice to add it with
    ``+``, which the schema then refuses. Command lines with other Hydra flags are left to Hydra."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if any(a.startswith("-") and a not in HYDRA_FLAGS for a in args):
        return
    try:
        overrides = OverridesParser.create().parse_overrides([a for a in args if a not in HYDRA_FLAGS])
    except Exception:  # noqa: BLE001 - a syntax error: Hydra reports it with its own message
        return
    keys = schema_keys()
    for o in overrides:
        key = o.key_or_group
        if key.split(".")[0] == "hydra" or o.is_delete() or o.package is not None:
            continue
        if key in CONFIG_GROUPS:
            choices = config_choices(key)
            values = (
                list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.get_value_element_as_str()]
            )
            for value in values:
                if value != "null" and value not in choices:
                    raise ConfigError(
                        f"there is no {key} config {value!r} (configs/{key}/{value}.yaml does not exist); "
                        f"choose one of: {', '.join(choices)}"
                    )
            continue
        if key.startswith("model."):
            check_model_key(key)
            continue
        parent = next((k for k, free in keys.items() if free and key.startswith(k + ".")), None)
        if key in keys or parent is not None:  # inside a dict (optimizer.hparams.x): Hydra's `+` is right
            continue
        section, _, leaf = key.rpartition(".")
        siblings = [k.rpartition(".")[2] for k in keys if k.rpartition(".")[0] == section]
        if siblings:
            close = [
                f"{section}.{k}".lstrip(".") for k in difflib.get_close_matches(leaf, siblings, cutoff=0.6)
            ]
        else:
            close = difflib.get_close_matches(key, list(keys), n=3, cutoff=0.75)
        hint = f"; did you mean {' or '.join(close[:3])}?" if close else "."
        raise ConfigError(
            f"no key {key}{hint} Every key is in harness/config.py `Config`; a + prefix cannot add keys to "
            "the schema"
        )


# optimizer.* keys each family reads (beyond those every family reads); any other key set away from its
# default has no effect: refused when given on the command line, logged as a note when a config sets it
OPTIM_COMMON_KEYS = ("name", "label", "family", "lr", "weight_decay", "betas", "eps", "plugins")


SPECTRAL_KEYS = ("reference", "ns_steps", "ns_coefficients", "ns_dtype", "groups")  # families with groups
FAMILY_KEYS = {
    Family.adamw: (),
    Family.muon: ("momentum", "gamma", "clip", "nesterov", "scale", *SPECTRAL_KEYS),
    Family.gluon: (
        "variant",
        "beta",
        "q",
        "alpha",
        "hidden_scale",
        "embed_scale",
        "constrained",
        *SPECTRAL_KEYS,
    ),
    Family.registered: ("estimator", "routing", "lmos", "hparams", *SPECTRAL_KEYS),
}


def command_line_keys() -> set[str]:
    """Keys overridden on this Hydra command line (`key=`, `+key=`, `++key=`); empty outside Hydra."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return set()
    return {o.split("=", 1)[0].lstrip("+~") for o in HydraConfig.get().overrides.task if "=" in o}


def unread_optimizer_keys(cfg) -> list[str]:
    """The optimizer.* keys set away from their defaults that cfg.optimizer.family never reads; refused
    if given on the command line (so a mistyped intent never trains silently)."""
    oc, family = cfg.optimizer, cfg.optimizer.family
    defaults = OmegaConf.to_container(OmegaConf.structured(OptimCfg), enum_to_str=True)
    values = OmegaConf.to_container(oc, resolve=True, enum_to_str=True)
    read = set(OPTIM_COMMON_KEYS) | set(FAMILY_KEYS[family])
    unread = [k for k in values if k not in read and values[k] != defaults[k]]
    given = command_line_keys()
    for k in unread:
        if f"optimizer.{k}" in given or any(g.startswith(f"optimizer.{k}.") for g in given):
            raise _bad(
                f"optimizer.{k}",
                values[k],
                f"optimizer {oc.name} (family {family.value}) does not read it, so it would have no "
                f"effect; keys it reads: {sorted(read)}. Choose an optimizer of the family you meant "
                "(e.g. optimizer=gluon_mvr2) or drop the override",
            )
    return [
        f"note: optimizer.{k}={values[k]!r} is set by a config but not read by family {family.value}"
        for k in unread
    ]


INT_MINIMA = {  # integer key: its smallest allowed value (model.* and data.seq_len: model.py `GPTConfig`)
    "train.steps": 1,
    "train.warmup_steps": 0,
    "train.val_every": 0,
    "train.val_late_every": 0,
    "train.ckpt_every": 0,
    "train.log_every": 1,
    "train.timing_warmup": 0,
    "batch.global_seqs": 1,
    "data.val_tokens": 1,
    "optimizer.ns_steps": 1,
    "seed": 0,
}


def check_config(cfg) -> list[str]:
    """Errors that name the key, the value and what would work, before any work is done. Returns notes
    for the log (settings that have no effect). The optimizer's own hyperparameter ranges are checked by
    building it. Runs after `check_schema` and the model's own checks (train.py, `check_before_work`)."""
    for key, lo in INT_MINIMA.items():
        value = OmegaConf.select(cfg, key)
        if value < lo:
            raise _bad(key, value, f"must be an integer >= {lo}")
    if cfg.batch.micro_seqs is not None and cfg.batch.micro_seqs < 1:
        raise _bad(
            "batch.micro_seqs",
            cfg.batch.micro_seqs,
            "must be >= 1, or null to let train.max_micro_seqs decide",
        )
    max_micro_seqs(cfg.train)
    compile_enabled(cfg, "cpu")
    _check_schedule(cfg.train)
    _check_validation_split(cfg.data)
    _check_positive(cfg)
    _check_optimizer(cfg.optimizer)
    not_allowed = sorted(set(cfg.resume_allow) - set(RESUME_OPT_IN))
    if not_allowed:
        raise _bad(
            "resume_allow",
            list(cfg.resume_allow),
            f"{not_allowed} may never change on resume; allowed: {sorted(RESUME_OPT_IN)}",
        )
    notes = unread_optimizer_keys(cfg)
    if cfg.optimizer.lr == 0:
        notes.append("warning: optimizer.lr=0: the parameters will not move")
    return notes


def _check_schedule(tc) -> None:
    if tc.warmup_steps > tc.steps:
        raise _bad("train.warmup_steps", tc.warmup_steps, f"must not exceed train.steps={tc.steps}")
    for key in ("warmdown_frac", "val_late_frac"):
        if not 0.0 <= tc[key] <= 1.0:
            raise _bad(f"train.{key}", tc[key], "must lie in [0, 1]")
    warmdown = int(round(tc.warmdown_frac * tc.steps))
    if tc.warmup_steps + warmdown > tc.steps:
        raise _bad(
            "train.warmup_steps",
            tc.warmup_steps,
            f"the warm-up and the warm-down (train.warmdown_frac={tc.warmdown_frac} of "
            f"{tc.steps} steps = {warmdown}) overlap; lower one of them",
        )


def _check_validation_split(dc) -> None:
    world = int(os.environ.get("WORLD_SIZE", 1))
    unit = dc.seq_len * world  # every rank scores the same number of whole sequences
    if dc.val_tokens % unit:
        lo, hi = dc.val_tokens // unit * unit, (dc.val_tokens // unit + 1) * unit
        raise _bad(
            "data.val_tokens",
            dc.val_tokens,
            f"must be a multiple of data.seq_len={dc.seq_len} x {world} rank(s) = {unit}; "
            f"e.g. {lo or unit} or {hi}",
        )


def _check_positive(cfg) -> None:
    mode = wandb_mode(cfg)  # wandb.mode is an enum already; $WANDB_MODE, which wins, is not
    if mode not in WandbMode.__members__:
        raise ConfigError(
            f"environment variable WANDB_MODE={mode!r} is invalid: choose one of "
            f"{list(WandbMode.__members__)}, or unset it to use wandb.mode"
        )
    for key in ("train.grad_clip", "train.peak_tflops", "wandb.init_timeout_s"):
        value = OmegaConf.select(cfg, key)
        if value is not None and not (math.isfinite(value) and value > 0):
            raise _bad(
                key,
                value,
                "must be a positive number" + (" or null" if key != "wandb.init_timeout_s" else ""),
            )
    for key in ("lr", "weight_decay", "eps"):
        value = cfg.optimizer[key]
        if not (math.isfinite(value) and value >= 0):
            raise _bad(f"optimizer.{key}", value, "must be a finite number >= 0")


def _check_optimizer(oc) -> None:
    """Plugins import; a registered family names a registered estimator and geometries."""
    for module in oc.plugins:
        try:
            importlib.import_module(module)
        except Exception as e:  # noqa: BLE001 - any failure to import is the user's to fix
            why = (
                f"importing it failed ({type(e).__name__}: {e}); give an importable module (on PYTHONPATH "
                "or in the repository) that registers your estimator"
            )
            raise _bad("optimizer.plugins", module, why) from None
    if oc.family != Family.registered:
        return
    from optim import ESTIMATORS, GEOMETRIES, ROUTED_GROUPS

    if oc.estimator not in ESTIMATORS:
        raise _bad(
            "optimizer.estimator",
            oc.estimator,
            f"with family=registered choose a registered estimator: "
            f"{sorted(ESTIMATORS)} (optim/README.md, 'Adding an estimator')",
        )
    for group, lmo in oc.lmos.items():
        if group not in ROUTED_GROUPS:
            raise _bad(
                "optimizer.lmos", dict(oc.lmos), f"{group!r} is not a group; use {list(ROUTED_GROUPS)}"
            )
        if lmo not in GEOMETRIES:
            raise _bad(
                f"optimizer.lmos.{group}",
                lmo,
                f"choose a registered geometry: {sorted(GEOMETRIES)} (a new one: optim/README.md, "
                "'Adding an estimator or a geometry', and name its module in optimizer.plugins)",
            )


def passes_note(cfg, passes: int) -> list[str]:
    """A note for train.log when the optimizer takes more gradient passes a step than the experiment's
    protocol allows (figure.max_passes; modded-nanogpt's optimization track: 1)."""
    limit = cfg.figure.max_passes
    if limit is None or passes <= limit:
        return []
    return [
        f"note: outside the rules of experiment {cfg.figure.name or '?'}: optimizer {cfg.optimizer.name} "
        f"takes {passes} gradient passes a step, the protocol allows {limit}; compare it per gradient "
        "evaluation"
    ]


OPTIMIZER_ARG_KEYS = {"adamw_betas": "betas", "adamw_eps": "eps", "adamw_weight_decay": "weight_decay"}


def optimizer_error(oc, e) -> str:
    """optim/'s HyperparameterError ``e`` in the trainer's terms: the key optimizer.<key> (or
    optimizer.hparams.<name> for a registered estimator's own hyperparameter), the value, why, and the
    file it came from."""
    key = OPTIMIZER_ARG_KEYS.get(e.name, e.name)
    if key not in OptimCfg.__dataclass_fields__ or (oc.family == Family.registered and e.name in oc.hparams):
        key = f"hparams.{e.name}"
    where = f"optimizer {oc.name}: configs/optimizer/{oc.name}.yaml or its overrides"
    return f"config key optimizer.{key}={e.value!r} is invalid: {e.why} ({where})"


# ----------------------------------------------------------------------------- what may change on resume
# keys that never change what is trained: they may differ between a checkpoint and its resumption
RESUME_FREE = (
    "run_name",
    "run_dir",
    "resume",
    "resume_allow",
    "device",
    "compile",
    "wandb",
    "figure",
    "optimizer.label",
    "train.log_every",
    "train.ckpt_every",
    "train.val_every",
    "train.val_late_every",
    "train.val_late_frac",
    "train.max_micro_seqs",
    "batch.micro_seqs",
    "train.peak_tflops",
    "train.timing_warmup",
    "model.loss_impl",
    "model.loss_chunk",
    "model.name",
    "batch.name",
    "data.name",
)


# keys a user may change on resume by naming them in resume_allow, with what that means
RESUME_OPT_IN = {
    "train.steps": "the LR schedule is a function of train.steps: its warm-down (last train.warmdown_frac of "
    "the steps) moves, so the steps after the checkpoint follow the new schedule and the run "
    "differs from an uninterrupted run of the new length",
    "train.warmup_steps": "the LR schedule changes from the checkpoint on",
    "train.warmdown_frac": "the LR schedule changes from the checkpoint on",
    "data.train_files": "for shards that moved (another path or glob): the resume is refused unless they are "
    "the same shards (names, token counts and a content hash, in the same order)",
    "data.val_files": "validation losses after the checkpoint are measured on other data",
    "data.val_tokens": "validation losses after the checkpoint are measured on another number of tokens",
}


def resume_free(key: str) -> bool:
    """Whether the dotted ``key`` is (or lies inside) one of RESUME_FREE."""
    return any(key == f or key.startswith(f + ".") for f in RESUME_FREE)


def flat_config(cfg) -> dict[str, Any]:
    """The resolved config as {dotted key: value} with enums as strings (what checkpoints store)."""
    container = cfg if isinstance(cfg, dict) else OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict) and node:
            for k, v in node.items():
                walk(v, f"{prefix}{k}.")
        else:
            out[prefix[:-1]] = node

    walk(container, "")
    return out


# ----------------------------------------------------------------------------- the default run directory
def run_id(_root_) -> str:
    """``${run_id:}`` in configs/config.yaml's run_dir: eight hex digits of a SHA-256 over every key that
    may not change on resume (all but RESUME_FREE) and differs from the schema's default. Launches that
    train differently (another train.steps, other data files, another lr) get different default run
    directories; the same command gets its own back, also after the schema gains a key."""
    container = OmegaConf.to_container(_root_, resolve=False, enum_to_str=True)
    container["run_dir"] = container["run_name"] = ""  # the id must not depend on itself
    container.pop("hydra", None)  # present while Hydra composes; it says nothing about what is trained
    flat = flat_config(OmegaConf.to_container(OmegaConf.create(container), resolve=True))
    defaults = flat_config(OmegaConf.to_container(OmegaConf.structured(Config), enum_to_str=True))
    trained = {
        k: v for k, v in flat.items() if not resume_free(k) and (k not in defaults or v != defaults[k])
    }
    text = json.dumps(trained, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


OmegaConf.register_new_resolver("run_id", run_id, replace=True)


# ----------------------------------------------------------------------------- parsed settings
def max_micro_seqs(tc: TrainCfg) -> int | None:
    """train.max_micro_seqs as a value: an int >= 1, or None for 'auto' (case and spaces ignored)."""
    text = str(tc.max_micro_seqs).strip().lower()
    if text == "auto":
        return None
    if not (text.isdigit() and int(text) >= 1):
        raise _bad("train.max_micro_seqs", tc.max_micro_seqs, "must be an integer >= 1 or 'auto'")
    return int(text)


COMPILE_CHOICES = ("auto", "true", "false")


def compile_enabled(cfg, device_type: str) -> bool:
    """`compile` as a value: auto is on for CUDA and off for CPU."""
    text = str(cfg.compile).strip().lower()
    if text not in COMPILE_CHOICES:
        raise _bad("compile", cfg.compile, "choose auto (on for CUDA, off for CPU), true or false")
    return device_type == "cuda" if text == "auto" else text == "true"


def wandb_mode(cfg) -> str:
    """$WANDB_MODE if set (it wins), else wandb.mode; checked by check_config."""
    return os.environ.get("WANDB_MODE") or cfg.wandb.mode.value
