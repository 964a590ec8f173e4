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
import importlib.util
import json
import math
import os
import sys
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf
from torch import nn

# ----------------------------------------------------------------------------- schema


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


class Sharding(Enum):
    replicated = "replicated"  # every rank holds the whole model (harness/sharding.py)
    fsdp2 = "fsdp2"  # fully_shard: each rank holds 1/W of every weight, gradient and optimizer state


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
    warmdown_frac: float = 0.284  # Scion/Gluon GPT: 1450 warm-down steps of 5100
    val_every: int = 50  # 0: only at the end
    val_late_every: int = 0  # validation interval over the last val_late_frac of the steps (0: val_every)
    val_late_frac: float = 0.1
    ckpt_every: int = 100  # 0: only at the end (and on preemption)
    log_every: int = 1
    max_micro_seqs: str = "auto"  # an int, or "auto": the largest that fits (CUDA: probed from 64; CPU: 16)
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
    # the optimizer class (`_target_`) and its keyword arguments, plus the trainer's own keys:
    # harness/optimizer.py `OptimizerSpec`; the class's signature decides which keys exist
    optimizer: dict[str, Any] = field(default_factory=dict)
    batch: BatchCfg = field(default_factory=BatchCfg)
    data: DataCfg = field(default_factory=DataCfg)
    train: TrainCfg = field(default_factory=TrainCfg)
    figure: FigureCfg = field(default_factory=FigureCfg)
    wandb: WandbCfg = field(default_factory=WandbCfg)
    seed: int = 0
    run_name: str = MISSING  # configs/config.yaml: <optimizer>_<batch>_s<seed>
    run_dir: str = MISSING  # configs/config.yaml: runs/<run_name>-<run_id>
    resume: Resume = Resume.auto
    resume_allow: list[str] = field(default_factory=list)  # keys that may differ from the checkpoint's
    device: Device = Device.auto
    sharding: Sharding = Sharding.replicated  # how weights are laid out over ranks (harness/sharding.py)
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


def config_choices(group: str, roots: list[Path] | None = None) -> list[str]:
    """The options of a config group: ``<root>/<group>/**/*.yaml`` as paths without the suffix, for
    ``configs/`` and every extra config directory (``hydra.searchpath=[file://my_configs]``)."""
    dirs = [root / group for root in [CONFIGS, *(roots or [])]]
    return sorted({str(p.relative_to(d).with_suffix("")) for d in dirs for p in d.rglob("*.yaml")})


def search_roots(overrides: list) -> list[Path]:
    """The ``file://`` directories of a ``hydra.searchpath=[...]`` override (where users keep their own
    optimizer or experiment configs beside the repository's)."""
    roots = []
    for o in overrides:
        if o.key_or_group == "hydra.searchpath" and not o.is_delete():
            value = o.value()
            for item in value if isinstance(value, list) else [value]:
                if str(item).startswith("file://"):
                    roots.append(Path(str(item).removeprefix("file://")))
    return roots


def compose_config(overrides: list[str]):
    """The config ``python train.py <overrides>`` trains, composed outside a Hydra app (tests, scripts):
    the same schema and the same ``${hydra:...}`` values (an optimizer's name is its config file's)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict, read_write

    with initialize_config_dir(config_dir=str(CONFIGS), version_base=None):
        cfg = compose(config_name="config", overrides=list(overrides), return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with read_write(cfg), open_dict(cfg):
        for key in ("name", "label"):  # resolved now: HydraConfig is global, the next compose replaces it
            cfg.optimizer[key] = cfg.optimizer[key]
        del cfg["hydra"]
    return cfg


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
    roots = search_roots(overrides)
    open_keys = []  # plain overrides inside an open section (optimizer.*): Hydra needs the key to exist
    for o in overrides:
        key = o.key_or_group
        if key.split(".")[0] == "hydra" or o.is_delete() or o.package is not None:
            continue
        if key in CONFIG_GROUPS:
            choices = config_choices(key, roots)
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
        if parent is not None and not (o.is_add() or o.is_force_add()):
            open_keys.append(o)
        if key in keys or parent is not None:  # inside an open dict (optimizer.*): its class decides
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
    if open_keys and not any(o.is_sweep_override() for o in overrides) and "-m" not in args:
        _check_open_keys(args, open_keys)


def _check_open_keys(args: list[str], open_keys: list) -> None:
    """``optimizer.K=v`` for a K the optimizer's config does not set: Hydra cannot override a key that is
    not there. Say so with the closest keys it sets, and the ``+`` form that sets a keyword the yaml
    leaves at its class's default (the class then checks it)."""
    lines = {o.input_line for o in open_keys}
    try:
        cfg = compose_config([a for a in args if a not in lines and a not in HYDRA_FLAGS])
    except Exception:  # noqa: BLE001 - anything else wrong is Hydra's to report
        return
    for o in open_keys:
        section, _, leaf = o.key_or_group.rpartition(".")
        node = OmegaConf.select(cfg, section)
        if node is None or leaf in node:
            continue
        close = difflib.get_close_matches(leaf, [str(k) for k in node], cutoff=0.6)
        hint = f"; did you mean {' or '.join(f'{section}.{k}' for k in close[:3])}?" if close else "."
        raise ConfigError(
            f"no key {o.key_or_group} in configs/{section}/{node.get('name')}.yaml{hint} A keyword its class "
            f"takes but its config does not set is added with +: +{o.input_line}"
        )


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
    not_allowed = sorted(set(cfg.resume_allow) - set(RESUME_OPT_IN))
    if not_allowed:
        raise _bad(
            "resume_allow",
            list(cfg.resume_allow),
            f"{not_allowed} may never change on resume; allowed: {sorted(RESUME_OPT_IN)}",
        )
    return ["warning: optimizer.lr=0: the parameters will not move"] if cfg.optimizer.get("lr") == 0 else []


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
    installed = "wandb" in sys.modules or importlib.util.find_spec("wandb") is not None
    if mode != WandbMode.disabled.value and not installed:
        raise ConfigError(
            f"wandb mode {mode!r} (wandb.mode or $WANDB_MODE) needs the wandb package, which is not "
            "installed: `pip install wandb`, or train with wandb.mode=disabled (docs/offline.md)"
        )
    for key in ("train.grad_clip", "train.peak_tflops", "wandb.init_timeout_s"):
        value = OmegaConf.select(cfg, key)
        if value is not None and not (math.isfinite(value) and value > 0):
            raise _bad(
                key,
                value,
                "must be a positive number" + (" or null" if key != "wandb.init_timeout_s" else ""),
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
