"""Train GPT with Muon, MuonMVR, Gluon, Gluon-MVR or AdamW on token shards, in one process or under torchrun.

    python train.py                                          # tiny GPT, synthetic data, MuonMVR (MVR1)
    python train.py experiment=quickstart optimizer=muon     # the CPU quick start
    torchrun --nproc_per_node=8 train.py experiment=fig1 optimizer=gluon_mvr1

Read top to bottom: the config schema (every key, its type and its choices), the checks that run
before anything is written, the pieces (distributed set-up, micro-batch probe, optimizer, one step,
evaluation), checkpoints, logging, then `train()`.

One optimizer step t uses the global batch xi_t (batch.global_seqs sequences, split over ranks and
micro-batches). Two-pass estimators get their reference gradient from an extra pass arranged here
(docs/training.md, "How a step is arranged"); each gradient is accumulated over all micro-batches of its own
window into clean grads. The model is not wrapped in DDP: every optimizer family (AdamW included) is
the sharded optimizer of optim/, which averages gradients across ranks itself (reduce-scatter to the
owner of each matrix or slice), so both passes are communicated the same way.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import importlib
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
import warnings
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
import torch.distributed as dist
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

import rundir
from data.loader import TrainLoader, ValLoader
from data.shards import ShardError
from harness.memory import retain_freed_memory
from model import GPT, LOSS_IMPLS, GPTConfig
from optim import MUON_SCALES, REFERENCE_SOURCES, VARIANTS

REPO = Path(__file__).resolve().parent
EXIT_PREEMPTED = 75  # SIGTERM / SIGUSR1: a checkpoint was written; rerun the same command to resume
EXIT_CONFIG = 2  # the config (or its run_dir) was refused before any work; the message says what to fix


# ----------------------------------------------------------------------------- config schema
class Family(Enum):
    adamw = "adamw"  # AdamW on every parameter
    muon = "muon"  # MuonMVR (Muon baseline and MVR1/2/3)
    gluon = "gluon"  # GluonMVR (Gluon baseline and Gluon-MVR-1/2/3)
    sharded = "sharded"  # any registered estimator: optimizer.estimator + optimizer.hparams


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


LossImpl = Enum("LossImpl", {name: name for name in LOSS_IMPLS}, type=str)  # model.py's choices


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


@dataclass
class ModelCfg:
    name: str = "tiny"
    n_layer: int = 2
    n_head: int = 2
    head_dim: int = 32
    tie_embeddings: bool = True
    vocab_size: int = 50304
    loss_impl: LossImpl = LossImpl.chunked  # chunked never materialises (B, T, V) logits | plain | liger
    loss_chunk: int = 8192  # tokens per chunk of the chunked loss


@dataclass
class OptimCfg:
    name: str = MISSING
    label: str = ""  # how figures and tables name it (e.g. "Gluon-MVR-1"); "" -> name
    family: Family = MISSING
    lr: float = MISSING
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])  # AdamW (and AdamW-routed params)
    eps: float = 1e-8
    # muon family (MuonMVR)
    momentum: float = 0.95
    gamma: float = 0.025
    clip: bool = True
    nesterov: bool = False
    scale: Scale = Scale.moonlight
    # gluon family (GluonMVR)
    variant: Variant = Variant.gluon
    beta: float = 0.9
    q: float = 0.5
    alpha: float = 0.0
    hidden_scale: float = 50.0
    embed_scale: float = 3000.0
    # sharded family: any registered estimator (optim/README.md, "Adding an estimator or a geometry")
    plugins: list[str] = field(default_factory=list)  # modules imported first: they call register_estimator
    estimator: str = ""
    routing: Routing = Routing.muon
    lmos: dict[str, str] = field(default_factory=dict)  # {hidden|embed|vector: a registered geometry}
    hparams: dict[str, Any] = field(default_factory=dict)
    # all families
    reference: Reference = Reference.none
    ns_steps: int = 5
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


@dataclass
class TrainCfg:
    steps: int = 200
    warmup_steps: int = 0
    warmdown_frac: float = 0.284
    val_every: int = 50  # 0: only at the end
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


@dataclass
class WandbCfg:
    mode: WandbMode = WandbMode.disabled  # $WANDB_MODE, when set, wins
    project: str = "nanogpt-mvr"
    group: str = ""  # "": figure.name (runs of one figure together)
    init_timeout_s: float = 60.0  # an unreachable server: go offline after this long, with a warning


@dataclass
class Config:
    model: ModelCfg = field(default_factory=ModelCfg)
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
            f"config key {key!r} is not part of the schema (train.py `Config`): {str(e).splitlines()[0]}. "
            "Check the spelling; a `+key=value` override cannot add keys here"
        ) from None


# optimizer.* keys each family reads (beyond those every family reads); any other key set away from its
# default has no effect: refused when given on the command line, logged as a note when a config sets it
OPTIM_COMMON_KEYS = ("name", "label", "family", "lr", "weight_decay", "betas", "eps", "plugins")
FAMILY_KEYS = {
    Family.adamw: (),
    Family.muon: ("momentum", "gamma", "clip", "nesterov", "scale", "reference", "ns_steps", "ns_dtype"),
    Family.gluon: (
        "variant",
        "beta",
        "q",
        "alpha",
        "hidden_scale",
        "embed_scale",
        "reference",
        "ns_steps",
        "ns_dtype",
    ),
    Family.sharded: ("estimator", "routing", "lmos", "hparams", "reference", "ns_steps", "ns_dtype"),
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


def check_config(cfg) -> list[str]:
    """Errors that name the key, the value and what would work, before any work is done. Returns notes
    for the log (settings that have no effect)."""
    check_schema(cfg)
    ints = {  # key: smallest allowed value
        "train.steps": 1,
        "train.warmup_steps": 0,
        "train.val_every": 0,
        "train.ckpt_every": 0,
        "train.log_every": 1,
        "train.timing_warmup": 0,
        "batch.global_seqs": 1,
        "data.seq_len": 1,
        "data.val_tokens": 1,
        "model.n_layer": 1,
        "model.n_head": 1,
        "model.head_dim": 2,
        "model.vocab_size": 2,
        "model.loss_chunk": 1,
        "optimizer.ns_steps": 1,
        "seed": 0,
    }
    for key, lo in ints.items():
        value = OmegaConf.select(cfg, key)
        if value < lo:
            raise _bad(key, value, f"must be an integer >= {lo}")
    if cfg.model.head_dim % 2:
        raise _bad("model.head_dim", cfg.model.head_dim, "must be even (rotary embeddings pair dimensions)")
    if cfg.batch.micro_seqs is not None and cfg.batch.micro_seqs < 1:
        raise _bad(
            "batch.micro_seqs",
            cfg.batch.micro_seqs,
            "must be >= 1, or null to let train.max_micro_seqs decide",
        )
    mm = str(cfg.train.max_micro_seqs).strip().lower()
    if mm != "auto" and not (mm.isdigit() and int(mm) >= 1):
        raise _bad("train.max_micro_seqs", cfg.train.max_micro_seqs, "must be an integer >= 1 or 'auto'")
    if cfg.train.warmup_steps > cfg.train.steps:
        raise _bad(
            "train.warmup_steps", cfg.train.warmup_steps, f"must not exceed train.steps={cfg.train.steps}"
        )
    if not 0.0 <= cfg.train.warmdown_frac <= 1.0:
        raise _bad("train.warmdown_frac", cfg.train.warmdown_frac, "must lie in [0, 1]")
    warmdown = int(round(cfg.train.warmdown_frac * cfg.train.steps))
    if cfg.train.warmup_steps + warmdown > cfg.train.steps:
        raise _bad(
            "train.warmup_steps",
            cfg.train.warmup_steps,
            f"the warm-up and the warm-down (train.warmdown_frac={cfg.train.warmdown_frac} of "
            f"{cfg.train.steps} steps = {warmdown}) overlap; lower one of them",
        )
    world = int(os.environ.get("WORLD_SIZE", 1))
    unit = cfg.data.seq_len * world  # every rank scores the same number of whole sequences
    if cfg.data.val_tokens % unit:
        lo, hi = cfg.data.val_tokens // unit * unit, (cfg.data.val_tokens // unit + 1) * unit
        raise _bad(
            "data.val_tokens",
            cfg.data.val_tokens,
            f"must be a multiple of data.seq_len={cfg.data.seq_len} x {world} rank(s) = {unit}; "
            f"e.g. {lo or unit} or {hi}",
        )
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
    oc = cfg.optimizer
    for key in ("lr", "weight_decay", "eps"):
        value = oc[key]
        if not (math.isfinite(value) and value >= 0):
            raise _bad(f"optimizer.{key}", value, "must be a finite number >= 0")
    if str(cfg.compile).strip().lower() not in ("auto", "true", "false"):
        raise _bad("compile", cfg.compile, "choose auto (on for CUDA, off for CPU), true or false")
    for module in oc.plugins:
        try:
            importlib.import_module(module)
        except Exception as e:  # noqa: BLE001 - any failure to import is the user's to fix
            why = (
                f"importing it failed ({type(e).__name__}: {e}); give an importable module (on PYTHONPATH "
                "or in the repository) that registers your estimator"
            )
            raise _bad("optimizer.plugins", module, why) from None
    if oc.family == Family.sharded:
        from optim import ESTIMATORS, GEOMETRIES, ROUTED_GROUPS

        if oc.estimator not in ESTIMATORS:
            raise _bad(
                "optimizer.estimator",
                oc.estimator,
                f"with family=sharded choose a registered estimator: "
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
    check_optimizer_values(cfg.optimizer, cfg.train.grad_clip)
    return notes


def check_optimizer_values(oc, grad_clip) -> None:
    """Build the optimizer once on a three-parameter stand-in (an embedding, a matrix, a vector: every
    routing group), so an out-of-range hyperparameter (momentum 1.0, q = 0, a plugin estimator's own
    checks) is refused before any work, and on a resume as invalid rather than as a change."""

    class StandIn(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.wte = torch.nn.Embedding(4, 4)
            self.proj = torch.nn.Linear(4, 4, bias=False)
            self.gain = torch.nn.Parameter(torch.ones(4))

    build_optimizer(oc, StandIn(), grad_clip)


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


def flat_config(cfg) -> dict[str, Any]:
    """The resolved config as {dotted key: value} with enums as strings (what checkpoints store)."""
    container = (
        OmegaConf.to_container(cfg, resolve=True, enum_to_str=True) if not isinstance(cfg, dict) else cfg
    )
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict) and node:
            for k, v in node.items():
                walk(v, f"{prefix}{k}.")
        else:
            out[prefix[:-1]] = node

    walk(container, "")
    return out


def config_changes(saved: dict[str, Any], cfg) -> list[tuple[str, Any, Any]]:
    """(key, saved value, new value) for every key that matters to what is trained (not RESUME_FREE).
    A key one config lacks (it predates the key) counts as unchanged while the other side holds the
    schema's default."""
    old, new = flat_config(saved), flat_config(cfg)
    defaults = flat_config(OmegaConf.structured(Config))
    free = lambda k: any(k == f or k.startswith(f + ".") for f in RESUME_FREE)  # noqa: E731
    missing = "<absent>"
    out = []
    for k in sorted(set(old) | set(new)):
        o, n = old.get(k, missing), new.get(k, missing)
        if free(k) or o == n:
            continue
        if missing in (o, n) and (n if o == missing else o) == defaults.get(k, missing):
            continue  # a key one side predates, at its default on the other side
        out.append((k, o, n))
    return out


def check_resume_config(saved: dict[str, Any] | None, cfg, ckpt_path: Path, ckpt_step: int) -> list[str]:
    """Refuse a resumption whose config differs from the checkpoint's (listing old → new and the ways
    forward) unless every difference is opted in with resume_allow. Returns the notes to log."""
    if saved is None:
        return [
            f"warning: checkpoint {ckpt_path} predates config identity (no stored config); "
            "resuming without comparing configs"
        ]
    changes = config_changes(saved, cfg)
    allowed = set(cfg.resume_allow)
    refused = [c for c in changes if c[0] not in allowed]
    if refused:
        lines = [f"  {k}: {o!r} → {n!r}" for k, o, n in refused]
        opt_in = [k for k, _, _ in refused if k in RESUME_OPT_IN]
        never = [k for k, _, _ in refused if k not in RESUME_OPT_IN]
        msg = (
            f"{cfg.run_dir} holds a checkpoint ({ckpt_path.name}, step {ckpt_step}) "
            "of another configuration:\n" + "\n".join(lines) + "\nNothing was written. Ways forward:\n"
            "  - start a new run: pass another run_dir=..., or\n"
            "  - resume with the saved config (drop the overrides above)"
        )
        if opt_in:
            msg += (
                f", or\n  - keep the change(s) explicitly: resume_allow=[{','.join(opt_in)}] ("
                + "; ".join(f"{k}: {RESUME_OPT_IN[k]}" for k in opt_in)
                + ")"
            )
        if never:
            msg += (
                f".\n{', '.join(never)} cannot change on resume (the checkpoint's model/optimizer/data/seed)"
            )
        raise ConfigError(msg)
    if cfg.train.steps < ckpt_step:
        raise ConfigError(
            f"{cfg.run_dir}: the checkpoint is at step {ckpt_step}, past train.steps="
            f"{cfg.train.steps}; pass train.steps>={ckpt_step} or another run_dir"
        )
    return [f"resume_allow: {k} {o!r} → {n!r} ({RESUME_OPT_IN[k]})" for k, o, n in changes]


# ------------------------------------------------------------ distributed set-up, signals, lock
DIST_BACKEND_CUDA = "cpu:gloo,cuda:nccl"  # NCCL alone cannot reduce a CPU tensor


def setup_distributed(device_pref: Device):
    """(rank, world_size, device). torchrun sets RANK/WORLD_SIZE. On GPUs the process group has NCCL for
    CUDA tensors and gloo for CPU ones (the trainer's small control collectives: pre-flight agreement,
    checkpoint finiteness, the probe's minimum); on CPUs gloo only."""
    use_cuda = torch.cuda.is_available() if device_pref == Device.auto else device_pref == Device.cuda
    if use_cuda and not torch.cuda.is_available():
        raise ConfigError(
            "config key device='cuda' is invalid: CUDA is not available; use device=cpu or auto"
        )
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    if use_cuda and local_world > torch.cuda.device_count():
        raise ConfigError(
            f"{local_world} processes per node were started but only {torch.cuda.device_count()} GPU(s) are "
            f"visible: use torchrun --nproc_per_node={torch.cuda.device_count()} (or fewer), or device=cpu"
        )
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(
            backend=DIST_BACKEND_CUDA if use_cuda else "gloo", device_id=device if use_cuda else None
        )
    return rank, world, device


def exit_with_parent() -> None:
    """Under torchrun, die with the agent: a `kill -9` of the agent must not leave workers training."""
    if "TORCHELASTIC_RUN_ID" not in os.environ or not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the agent died before prctl took effect
        os._exit(1)


class StopSignal:
    """SIGTERM and SIGUSR1 (Slurm's --signal=USR1@120) ask the run to stop after the current step."""

    def __init__(self) -> None:
        self.name: str | None = None
        self._old = {}
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            with contextlib.suppress(ValueError):  # not the main thread (e.g. an embedding test harness)
                self._old[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        self.name = signal.Signals(signum).name

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


class RunLock:
    """An exclusive lock on run_dir/.lock held for the run's life by rank 0 (flock: released by the OS
    when the process dies, kill -9 included). A second run on the same run_dir fails at once naming
    the holder (host, pid), which the lock file records from the moment it is taken. A launch refused
    before claim() (it failed a check) puts the lock file back as it found it, and removes the lock file
    and run_dir if it made them, so a refused launch leaves run_dir as it was."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir, self.path, self.claimed = run_dir, run_dir / ".lock", False
        self.made_dir = not run_dir.exists()
        run_dir.mkdir(parents=True, exist_ok=True)
        self.made_file = not self.path.exists()
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 4096, 0).decode(errors="replace").strip() or "unknown"
            os.close(self.fd)
            raise RuntimeError(
                f"{run_dir} is in use by another run ({holder}); wait for it to finish or stop "
                "it, or choose another run_dir"
            ) from None
        self.previous = os.pread(self.fd, 1 << 16, 0)
        self._write(
            f"host {socket.gethostname()}, pid {os.getpid()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}"
        )

    def _write(self, text: str | bytes) -> None:
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, text.encode() if isinstance(text, str) else text, 0)

    def claim(self) -> None:
        """The run passed every check and now writes into run_dir: the lock file stays as written."""
        self.claimed = True

    def release(self) -> None:
        if self.fd is None:
            return
        if not self.claimed:  # refused before writing anything: leave run_dir as it was found
            if self.made_file:
                self.path.unlink(missing_ok=True)
            else:
                self._write(self.previous)
            if self.made_dir:
                with contextlib.suppress(OSError):  # not empty: something else appeared meanwhile
                    self.run_dir.rmdir()
        os.close(self.fd)  # closing releases the flock
        self.fd = None


def agree(world: int, error: BaseException | None) -> None:
    """Collective pre-flight check: if any rank failed, every rank raises (none hangs in a collective)."""
    if world > 1:
        flag = torch.tensor([0.0 if error is None else 1.0])
        dist.all_reduce(flag)
        if error is None and flag.item() > 0:
            raise RuntimeError("another rank failed its pre-flight checks; its error is in its output")
    if error is not None:
        raise error


# ----------------------------------------------------------------------------- batch size, schedule
def micro_batch_size(global_seqs: int, micro_seqs: int | None, world: int, cap: int) -> int:
    """Sequences per micro-batch: global_seqs = world * accum * micro, with accum a whole number."""
    if global_seqs % world:
        ok = [w for w in range(1, global_seqs + 1) if global_seqs % w == 0]
        raise ConfigError(
            f"batch.global_seqs={global_seqs} cannot be split over {world} ranks; "
            f"use a world size that divides it ({ok[:12]}...) or change batch.global_seqs"
        )
    per_rank = global_seqs // world
    divisors = [m for m in range(1, per_rank + 1) if per_rank % m == 0]
    if micro_seqs is None:
        return max(m for m in divisors if m <= max(cap, 1))
    if per_rank % micro_seqs:
        raise ConfigError(
            f"batch.micro_seqs={micro_seqs} does not divide the {per_rank} sequences per rank "
            f"(batch.global_seqs={global_seqs} over {world} ranks); valid values: {divisors}"
        )
    return micro_seqs


def micro_cap(tc) -> int:
    """train.max_micro_seqs as a number: an int as given, 'auto' -> 16 (on CUDA the probe decides instead)."""
    return 16 if str(tc.max_micro_seqs).strip().lower() == "auto" else int(tc.max_micro_seqs)


def is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in str(e).lower()


def probe_micro_seqs(per_rank: int, start: int, try_size, world: int, log=print) -> int:
    """The largest divisor of ``per_rank`` ≤ ``start`` for which ``try_size(m)`` (one forward+backward)
    does not run out of memory, halving on each out-of-memory error; the minimum over ranks. Any other
    error (or none fitting) on one rank is raised on every rank, so no rank waits in the minimum."""
    candidates = sorted((m for m in range(1, per_rank + 1) if per_rank % m == 0 and m <= start), reverse=True)
    chosen, error = None, None
    m = candidates[0]
    while chosen is None and error is None:
        try:
            try_size(m)
            chosen = m
        except Exception as e:  # noqa: BLE001 - only out-of-memory is retried; the rest goes to agree()
            if not is_oom(e):
                error = e
                break
            smaller = [c for c in candidates if c <= m // 2]
            log(
                f"micro-batch probe: {m} sequences ran out of memory"
                + (f"; trying {smaller[0]}" if smaller else "")
            )
            if not smaller:
                error = RuntimeError(
                    "micro-batch probe: even 1 sequence per micro-batch runs out of memory; use a "
                    "smaller model or data.seq_len"
                )
                error.__cause__ = e
            else:
                m = smaller[0]
        finally:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    agree(world, error)
    if world > 1:
        t = torch.tensor([chosen])  # CPU: the gloo side of the process group
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        chosen = int(t.item())
    return chosen


def probe_reserve_bytes(model: torch.nn.Module, world: int) -> int:
    """Memory the micro-batch probe keeps free for what a real step adds to one forward+backward: the
    optimizer state of this rank's share (at most 4 tensors per parameter element — G_t, M_t, h_t and a
    look-ahead h — over ``world`` ranks) and the gradient-pass communication buffers (the packed send
    buffer and its reduced share, at most 2 more copies): ``(4 / world + 2) · P`` float32 bytes for P
    parameter elements."""
    numel = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return int((4 / world + 2) * numel * 4)


def lr_factor(step: int, tc: TrainCfg) -> float:
    """Optional linear warm-up, constant, then linear warm-down to 0 over the last warmdown_frac of steps."""
    if step < tc.warmup_steps:
        return (step + 1) / tc.warmup_steps
    warmdown = int(round(tc.warmdown_frac * tc.steps))
    if step >= tc.steps - warmdown:
        return max(tc.steps - step, 0) / max(warmdown, 1)
    return 1.0


# ------------------------------------------------------------ optimizer, one step, evaluation
def build_optimizer(oc, model: torch.nn.Module, grad_clip: float | None = None):
    """The sharded optimizer of optim/ for every family; errors name the optimizer.* key."""
    from optim import GluonMVR, MuonMVR, ShardedOptimizer, build_param_groups

    common = dict(
        ns_steps=oc.ns_steps,
        ns_dtype=getattr(torch, oc.ns_dtype.value) if oc.ns_dtype else None,
        adamw_betas=tuple(oc.betas),
        adamw_eps=oc.eps,
    )
    try:
        if oc.family == Family.adamw:
            params = [p for p in model.parameters() if p.requires_grad]
            opt = ShardedOptimizer(
                [{"params": params, "lmo": "adamw"}], "ema", lr=oc.lr, weight_decay=oc.weight_decay, **common
            )
        elif oc.family == Family.muon:
            opt = MuonMVR(
                build_param_groups(model, "muon"),
                lr=oc.lr,
                momentum=oc.momentum,
                gamma=oc.gamma,
                weight_decay=oc.weight_decay,
                reference=oc.reference.value,
                clip=oc.clip,
                nesterov=oc.nesterov,
                scale=oc.scale.value,
                **common,
            )
        elif oc.family == Family.gluon:
            opt = GluonMVR(
                build_param_groups(model, "gluon"),
                lr=oc.lr,
                variant=oc.variant.value,
                beta=oc.beta,
                q=oc.q,
                alpha=oc.alpha,
                hidden_scale=oc.hidden_scale,
                embed_scale=oc.embed_scale,
                reference=oc.reference.value,
                adamw_weight_decay=oc.weight_decay or None,
                **common,
            )
        else:
            opt = ShardedOptimizer(
                build_param_groups(model, oc.routing.value, lmos=dict(oc.lmos)),
                oc.estimator,
                lr=oc.lr,
                weight_decay=oc.weight_decay,
                reference=oc.reference.value,
                **common,
                **OmegaConf.to_container(oc.hparams),
            )
    except ValueError as e:
        raise ConfigError(optimizer_error(oc, str(e))) from None
    opt.grad_clip = grad_clip
    return opt


OPTIMIZER_ARG_KEYS = {"adamw_betas": "betas", "adamw_eps": "eps", "adamw_weight_decay": "weight_decay"}


def optimizer_error(oc, message: str) -> str:
    """optim/'s "Invalid <name>: <value> (<why>)" in the trainer's terms: the config key optimizer.<key>
    (or optimizer.hparams.<name> for family sharded), the value, why, and the file it came from."""
    where = f"optimizer {oc.name}: configs/optimizer/{oc.name}.yaml or its overrides"
    m = re.match(r"Invalid ([A-Za-z_]\w*)(?: \(param group\))?: (.*?) \((.*)\)$", message, re.S)
    if m is None:
        return f"{where}: {message}"
    name, value, why = m.groups()
    key = OPTIMIZER_ARG_KEYS.get(name, name)
    if key not in OptimCfg.__dataclass_fields__ or (oc.family == Family.sharded and name in oc.hparams):
        key = f"hparams.{name}"
    return f"config key optimizer.{key}={value} is invalid: {why} ({where})"


def accumulate_grad(model, micro_batches, autocast) -> torch.Tensor:
    """Clean .grad <- mean-token-loss gradient of this rank's share of one global batch. Returns its loss."""
    for p in model.parameters():
        p.grad = None
    total = torch.zeros((), device=next(model.parameters()).device)
    for x, y in micro_batches:
        with autocast:
            _, loss = model(x, y)
        (loss / len(micro_batches)).backward()
        total += loss.detach()
    return total / len(micro_batches)


def optimizer_step(model, optimizer, batch, step: int, steps: int, autocast) -> tuple[torch.Tensor, int]:
    """Optimizer step t on global batch xi_t = batch(t): first the extra pass of a two-pass estimator,
    then g_t = grad f(X_t; xi_t) and step(). Each gradient is accumulated over its own full window
    into clean grads. Returns (this rank's loss on xi_t, gradient passes this step)."""
    reference = optimizer.reference_source
    passes = 1
    if reference == "prev_params" and step + 1 < steps:
        accumulate_grad(model, batch(step + 1), autocast)  # grad f(X_t; xi_{t+1})
        optimizer.update_lookahead_grad()  # becomes h_{t+1} = grad f(X_{(t+1)-1}; xi_{t+1})
        passes += 1
    elif reference == "prev_batch" and step > 0:
        accumulate_grad(model, batch(step - 1), autocast)  # h_t = grad f(X_t; xi_{t-1})
        optimizer.update_last_grad()
        passes += 1
    loss = accumulate_grad(model, batch(step), autocast)
    optimizer.step()
    return loss, passes


def params_finite(model) -> torch.Tensor:
    """A 0-d bool tensor: every parameter is finite (no host sync)."""
    return torch.stack([torch.isfinite(p).all() for p in model.parameters()]).all()


def optimizer_state_finite(optimizer) -> bool:
    return all(
        bool(torch.isfinite(v).all())
        for s in optimizer.state.values()
        for v in s.values()
        if isinstance(v, torch.Tensor) and v.is_floating_point()
    )


def mean_over_ranks(x: torch.Tensor, world: int) -> float:
    if world > 1:
        x = x.clone()
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
        x /= world
    return float(x)


@torch.no_grad()
def evaluate(model, val_loader, autocast, world: int) -> float:
    model.eval()
    total = torch.zeros((), device=next(model.parameters()).device)
    for x, y in val_loader:
        with autocast:
            total += model(x, y)[1]
    model.train()
    return mean_over_ranks(total / len(val_loader), world)


# ----------------------------------------------------------------------------- throughput bookkeeping
# Dense bf16 tensor-core peaks per GPU (no sparsity), from NVIDIA's data sheets; matched by name, the
# more specific pattern first. MFU is omitted for a GPU not listed unless train.peak_tflops is set.
PEAK_BF16_TFLOPS = [
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),
    ("H200", 989.0),
    ("GH200", 989.0),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L40", 181.0),
    ("L4", 121.0),
    ("A10", 125.0),
    ("RTX 4090", 165.2),
    ("RTX 6000 Ada", 364.0),
    ("A6000", 155.0),
]


def peak_flops(device: torch.device, override_tflops: float | None) -> float | None:
    if override_tflops:
        return override_tflops * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for pattern, tflops in PEAK_BF16_TFLOPS:
        if pattern in name:
            return tflops * 1e12
    return None


class Throughput:
    """Per-step timing with the first `warmup` steps after (re)start excluded from the medians. Each
    timed step keeps its gradient passes, so the processed rate of a run is the median of its steps'
    own rates (a two-pass run's single-pass last step does not dilute it)."""

    def __init__(self, warmup: int, flops_per_token: float, peak: float | None, world: int):
        self.warmup, self.fpt, self.peak, self.world = warmup, flops_per_token, peak, world
        self.seen, self.ms, self.passes = 0, [], []

    def add(self, step_ms: float, passes: int = 1) -> bool:
        self.seen += 1
        timed = self.seen > self.warmup
        if timed:
            self.ms.append(step_ms)
            self.passes.append(passes)
        return timed

    @property
    def median_ms(self) -> float | None:
        return statistics.median(self.ms) if self.ms else None

    def median_processed_tok_s(self, tokens_per_step: int) -> float | None:
        """Median over timed steps of passes · tokens_per_step / step time."""
        rates = [n * tokens_per_step * 1000 / ms for n, ms in zip(self.passes, self.ms)]
        return statistics.median(rates) if rates else None

    def mfu(self, processed_tokens_per_s: float) -> float | None:
        return None if self.peak is None else self.fpt * processed_tokens_per_s / (self.world * self.peak)


def fmt_eta(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def git_sha() -> str:
    def git(*args):
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=5)

    try:
        sha, dirty = git("rev-parse", "HEAD"), git("status", "--porcelain")
        if sha.returncode != 0:
            return "unknown"
        return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def environment(world: int, device: torch.device) -> dict:
    env = dict(
        python=platform.python_version(),
        torch=torch.__version__,
        world_size=world,
        device=str(device),
        cuda=torch.version.cuda,
        host=platform.node(),
    )
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


# ----------------------------------------------------------------------------- checkpoints
class Checkpointer:
    """run_dir/ckpt/step_XXXXXX/{model.pt, optim_rank{r}.pt, state.pt}; run_dir/ckpt/LATEST names the newest.

    A checkpoint directory is complete before LATEST (written to a temp file, then os.replace) points at
    it, so a crash at any moment leaves the previous checkpoint usable; older ones are then removed.
    state.pt holds the step, counters, the loader position, the RNG state and the resolved config.
    Optimizer state is saved per rank (what the rank owns) and re-sharded on load when the number of
    ranks changed (`load_sharded_state_dicts`). Only finite parameters and optimizer state are saved.
    """

    def __init__(self, run_dir: Path, rank: int, world: int):
        self.root, self.rank, self.world = run_dir / rundir.CKPT, rank, world

    def latest(self) -> Path | None:
        pointer = self.root / "LATEST"
        if not pointer.exists():
            return None
        path = self.root / pointer.read_text().strip()
        if not (path / "state.pt").exists():
            raise RuntimeError(f"{pointer} names {path}, which is incomplete; delete {pointer} to start over")
        return path

    def read_state(self, path: Path) -> dict:
        return torch.load(path / "state.pt", map_location="cpu", weights_only=False)

    def save(self, step: int, model, optimizer, loader_state: dict, extra: dict) -> None:
        path = self.root / f"step_{step:06d}"
        if self.rank == 0:
            path.mkdir(parents=True, exist_ok=True)
        barrier(self.world)
        atomic_save(optimizer.state_dict(), path / f"optim_rank{self.rank}.pt")
        if self.rank == 0:
            atomic_save(model.state_dict(), path / "model.pt")
            atomic_save(
                dict(step=step, world_size=self.world, loader=loader_state, rng=rng_state(), **extra),
                path / "state.pt",
            )
        barrier(self.world)
        if self.rank == 0:
            tmp = self.root / "LATEST.tmp"
            tmp.write_text(path.name)
            os.replace(tmp, self.root / "LATEST")
            for old in self.root.glob("step_*"):
                if old != path:
                    shutil.rmtree(old, ignore_errors=True)
        barrier(self.world)

    def load(self, path: Path, state: dict, model, optimizer, loader) -> None:
        device = next(model.parameters()).device
        model.load_state_dict(torch.load(path / "model.pt", map_location=device))
        saved_world = state["world_size"]
        if saved_world == self.world:
            optimizer.load_state_dict(
                torch.load(path / f"optim_rank{self.rank}.pt", map_location=device, weights_only=False)
            )
        else:  # re-shard: every rank reads all W saved files and keeps what it owns now
            files = [path / f"optim_rank{r}.pt" for r in range(saved_world)]
            missing = [str(f) for f in files if not f.exists()]
            if missing:
                raise RuntimeError(f"checkpoint {path} lacks {missing}; it cannot be resumed")
            optimizer.load_sharded_state_dicts(
                [torch.load(f, map_location="cpu", weights_only=False) for f in files]
            )
        loader.load_state_dict(state["loader"])
        set_rng_state(state["rng"])


def atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


def rng_state() -> dict:
    s = dict(python=random.getstate(), numpy=np.random.get_state(), torch=torch.get_rng_state())
    if torch.cuda.is_available():
        s["cuda"] = torch.cuda.get_rng_state_all()
    return s


def set_rng_state(s: dict) -> None:
    random.setstate(s["python"])
    np.random.set_state(s["numpy"])
    torch.set_rng_state(s["torch"])
    if "cuda" in s and torch.cuda.is_available():
        with contextlib.suppress(RuntimeError):  # another number of GPUs than when saved
            torch.cuda.set_rng_state_all(s["cuda"])


# ----------------------------------------------------------------------------- logging
def wandb_mode(cfg) -> str:
    """$WANDB_MODE if set (it wins), else wandb.mode; checked by check_config."""
    return os.environ.get("WANDB_MODE") or cfg.wandb.mode.value


def init_wandb(cfg, run_dir: Path, log):
    """A wandb run that survives resume (its id is kept in run_dir/wandb_id) and sweeps (grouped by
    figure, tagged with optimizer, batch and seed). $WANDB_MODE wins over wandb.mode; a server that does
    not answer within wandb.init_timeout_s sends the run offline with a warning, and if wandb cannot start
    at all the run trains on without it (a logging service never stops training)."""
    mode = wandb_mode(cfg)
    if mode == "disabled":
        return None
    import wandb  # imported only when used

    id_file = run_dir / "wandb_id"
    run_id = id_file.read_text().strip() if id_file.exists() else uuid.uuid4().hex[:12]
    id_file.write_text(run_id + "\n")
    kwargs = dict(
        project=cfg.wandb.project,
        name=cfg.run_name,
        id=run_id,
        resume="allow",
        dir=str(run_dir),
        group=cfg.wandb.group or cfg.figure.name or None,
        tags=[cfg.optimizer.name, f"b{cfg.batch.global_seqs}", f"seed{cfg.seed}"],
        config=OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),
        mode=mode,
    )
    try:
        return wandb.init(**kwargs, settings=wandb.Settings(init_timeout=cfg.wandb.init_timeout_s))
    except Exception as e:  # noqa: BLE001 - a logging service must never stop training
        first = f"{type(e).__name__}: {e}"
    if mode == "online":
        log(
            f"warning: wandb did not start online within {cfg.wandb.init_timeout_s:g} s ({first}); "
            f"logging offline to {run_dir}/wandb (sync later with `wandb sync`)"
        )
        kwargs["mode"] = "offline"
        try:
            return wandb.init(**kwargs)
        except Exception as e:  # noqa: BLE001
            first = f"{type(e).__name__}: {e}"
    log(f"warning: wandb could not start ({first}); training goes on without it (metrics.jsonl has it all)")
    return None


class RunLog:
    """Rank 0 only: stdout, run_dir/train.log, run_dir/metrics.jsonl (through rundir), optional wandb."""

    def __init__(self, run_dir: Path, rank: int):
        self.active, self.run_dir, self.wandb, self.log_file = rank == 0, run_dir, None, None

    def open(self, cfg) -> None:
        if self.active:
            self.log_file = open(self.run_dir / rundir.LOG, "a")
            self.wandb = init_wandb(cfg, self.run_dir, self.print)

    def print(self, msg: str) -> None:
        if self.active:
            print(msg, flush=True)
            if self.log_file is not None:
                self.log_file.write(msg + "\n")
                self.log_file.flush()

    def metrics(self, record: dict) -> None:
        if self.active:
            rundir.append_metrics(self.run_dir, record)
            if self.wandb is not None:
                try:
                    self.wandb.log(record, step=record["step"])
                except Exception as e:  # noqa: BLE001 - a logging service must never stop training
                    self.print(
                        f"warning: wandb.log failed ({type(e).__name__}: {e}); wandb is off for this run"
                    )
                    self.wandb = None

    def close(self) -> None:
        if self.active:
            if self.wandb is not None:
                try:
                    self.wandb.finish()
                except Exception as e:  # noqa: BLE001
                    self.print(f"warning: wandb.finish failed ({type(e).__name__}: {e})")
                self.wandb = None
            if self.log_file is not None:
                self.log_file.close()
                self.log_file = None


def write_synthetic_data_if_needed(cfg) -> None:
    """data=synthetic: write the Markov-chain shards on first use (rank 0; the caller synchronizes). Only
    for synthetic_* file names, so a mistyped path of other data never fills with synthetic shards."""
    pattern = Path(cfg.data.train_files)
    if cfg.data.name != "synthetic" or not pattern.name.startswith("synthetic_"):
        return
    from data.synthetic import write_synthetic_shards

    if not any(pattern.parent.glob(pattern.name)):
        write_synthetic_shards(
            pattern.parent, train_tokens=2_000_000, val_tokens=max(cfg.data.val_tokens + 1, 131072)
        )


def vocab_hint(e: ShardError, vocab_size: int) -> Exception:
    """A shard id ≥ model.vocab_size means the model is too small for the data, not a bad shard."""
    m = re.search(r"token id (\d+) at token \d+ is outside the vocabulary", str(e))
    if not m or int(m.group(1)) >= 1 << 16:
        return e
    path = str(e).split(": token id")[0]
    return ConfigError(
        f"config key model.vocab_size={vocab_size} is too small for the data: {path} holds token "
        f"id {m.group(1)}. The shard is fine; set model.vocab_size >= {int(m.group(1)) + 1} "
        "(GPT-2 tokens: 50304; byte-level text: 256)"
    )


# ----------------------------------------------------------------------------- training
def train(cfg) -> dict:
    """Train one run. Order: check the config; set up ranks; lock run_dir; compare with the checkpoint;
    build model, optimizer and data; only then write anything into run_dir; train; summarize."""
    config_notes = check_config(cfg)
    try:  # CPU steps reuse freed buffers instead of re-faulting them (harness/memory.py)
        retain_freed_memory()
    except ValueError as e:  # a bad $MVR_CPU_HEAP
        raise ConfigError(str(e)) from None
    exit_with_parent()
    rank, world, device = setup_distributed(cfg.device)
    run_dir = Path(cfg.run_dir)
    stop, log, lock = StopSignal(), RunLog(run_dir, rank), None
    try:
        ckpt = Checkpointer(run_dir, rank, world)
        resume_from, saved, notes, error = None, None, list(config_notes), None
        try:
            if rank == 0:
                lock = RunLock(run_dir)
            resume_from = ckpt.latest()
            if resume_from is not None and cfg.resume == Resume.never:
                raise ConfigError(
                    f"{run_dir} already holds a checkpoint ({resume_from.name}); pass resume=auto "
                    "to continue it, or choose another run_dir"
                )
            if resume_from is None and cfg.resume == Resume.must:
                raise ConfigError(f"resume=must but {run_dir}/{rundir.CKPT} has no checkpoint")
            if resume_from is not None:
                saved = ckpt.read_state(resume_from)
                notes += check_resume_config(saved.get("config"), cfg, resume_from, saved["step"])
        except Exception as e:  # noqa: BLE001 - re-raised on every rank by agree()
            error = e
        agree(world, error)
        return _train(cfg, rank, world, device, run_dir, ckpt, resume_from, saved, notes, stop, log, lock)
    finally:
        stop.restore()
        log.close()
        if lock is not None:
            lock.release()


def _train(cfg, rank, world, device, run_dir, ckpt, resume_from, saved, notes, stop, log, lock) -> dict:
    # ---- build everything that can still fail on bad input (nothing written to run_dir yet)
    torch.manual_seed(cfg.seed)  # the same seed on every rank gives the same weights; rank 0's are broadcast
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    mc, tc = cfg.model, cfg.train
    error = model = optimizer = loader = val_loader = None
    try:
        model = GPT(
            GPTConfig(
                vocab_size=mc.vocab_size,
                n_layer=mc.n_layer,
                n_head=mc.n_head,
                head_dim=mc.head_dim,
                seq_len=cfg.data.seq_len,
                tie_embeddings=mc.tie_embeddings,
                loss_impl=mc.loss_impl.value,
                loss_chunk=mc.loss_chunk,
            )
        ).to(device)
        optimizer = build_optimizer(cfg.optimizer, model, tc.grad_clip)
        if rank == 0:
            write_synthetic_data_if_needed(cfg)
    except Exception as e:  # noqa: BLE001 - re-raised on every rank by agree()
        error = e
    agree(world, error)  # also the barrier after rank 0 wrote synthetic shards
    try:
        if (
            cfg.batch.micro_seqs is not None
            or str(tc.max_micro_seqs).lower() != "auto"
            or device.type != "cuda"
        ):
            micro = micro_batch_size(cfg.batch.global_seqs, cfg.batch.micro_seqs, world, micro_cap(tc))
            probe = None
        else:
            micro, probe = micro_batch_size(cfg.batch.global_seqs, None, world, 64), "auto"
        vocab = min(mc.vocab_size, 1 << 16)  # ids must fit the embedding; the loaders check every shard

        def make_loader(m: int) -> TrainLoader:
            return TrainLoader(
                cfg.data.train_files,
                cfg.data.seq_len,
                cfg.batch.global_seqs,
                m,
                rank=rank,
                world_size=world,
                device=device,
                seed=cfg.seed,
                vocab_size=vocab,
            )

        loader = make_loader(micro)
    except ShardError as e:
        error = vocab_hint(e, mc.vocab_size)
    except Exception as e:  # noqa: BLE001 - re-raised on every rank by agree()
        error = e
    agree(world, error)
    if world > 1:
        for t in model.state_dict().values():
            dist.broadcast(t, src=0)
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    )
    if probe is not None:  # CUDA, max_micro_seqs=auto: the largest micro-batch that fits, same on every rank
        reserve = probe_reserve_bytes(model, world)

        def try_size(m: int) -> None:
            held = torch.empty(reserve, dtype=torch.uint8, device=device)  # what the step will add
            x = torch.randint(0, mc.vocab_size, (m, cfg.data.seq_len), device=device)
            try:
                accumulate_grad(model, [(x, x)], autocast)
            finally:
                for p in model.parameters():
                    p.grad = None
                del held

        micro = probe_micro_seqs(cfg.batch.global_seqs // world, micro, try_size, world, log.print)
        loader = make_loader(micro)
    error = None
    try:
        # the largest micro-batch <= the training one that splits the validation set (check_config: whole
        # sequences, an equal number on every rank)
        val_micro = micro_batch_size(cfg.data.val_tokens // cfg.data.seq_len, None, world, micro)
        val_loader = ValLoader(
            cfg.data.val_files,
            cfg.data.seq_len,
            cfg.data.val_tokens,
            val_micro,
            rank=rank,
            world_size=world,
            device=device,
            vocab_size=vocab,
        )
    except ShardError as e:
        error = vocab_hint(e, mc.vocab_size)
    except Exception as e:  # noqa: BLE001
        error = e
    agree(world, error)
    start, tokens, grad_evals, train_time, wall = 0, 0, 0, 0.0, 0.0
    if resume_from is not None:
        ckpt.load(resume_from, saved, model, optimizer, loader)
        start, tokens, grad_evals, train_time, wall = (
            saved["step"],
            saved["tokens"],
            saved["grad_evals"],
            saved["time_s"],
            saved["wall_s"],
        )
    compile_on = {"auto": device.type == "cuda", "true": True, "false": False}[
        str(cfg.compile).strip().lower()
    ]
    fwd_model = torch.compile(model) if compile_on else model

    # ---- from here on the run writes into run_dir (rank 0)
    if lock is not None:
        lock.claim()
    log.open(cfg)
    log.print(f"git {git_sha()}")
    log.print("env " + json.dumps(environment(world, device)))
    log.print("command " + " ".join(sys.argv))
    config = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    if rank == 0:
        tmp = run_dir / (rundir.CONFIG + ".tmp")
        tmp.write_text(OmegaConf.to_yaml(cfg, resolve=True))
        os.replace(tmp, run_dir / rundir.CONFIG)
    for note in notes:
        log.print(note)
    reference = optimizer.reference_source
    log.print(
        f"model {mc.name}: {model.num_params():,} parameters; loss {mc.loss_impl.value}; compile {compile_on}"
    )
    log.print(
        f"optimizer {cfg.optimizer.name} (reference {reference}, {optimizer.grad_evals_per_step} gradient "
        f"pass(es) per step); global batch {cfg.batch.global_seqs} x {cfg.data.seq_len} = "
        f"{loader.tokens_per_step:,} tokens = {world} rank(s) x {loader.accum_steps} micro-batch(es) x "
        f"{micro} sequences" + (" (probed)" if probe else "")
    )
    if resume_from is not None:
        if rank == 0:
            with warnings.catch_warnings(record=True) as caught:  # into train.log as well as stderr
                warnings.simplefilter("always")
                rundir.read_metrics(run_dir, repair=True)  # a partial last line (power loss) is dropped
            for w in caught:
                log.print(f"warning: {w.message}")
                warnings.warn(w.message, w.category, stacklevel=1)  # and on stderr, as before
            rundir.truncate_metrics(run_dir, start)
        log.print(
            f"resumed from {resume_from} at step {start}"
            + (
                f" (saved by {saved['world_size']} ranks, re-sharded onto {world})"
                if saved["world_size"] != world
                else ""
            )
        )
    elif rank == 0:
        for stale in (rundir.METRICS, rundir.SUMMARY):
            (run_dir / stale).unlink(missing_ok=True)  # a fresh run: no stale records

    def save(step: int) -> None:
        bad = torch.tensor([0.0 if optimizer_state_finite(optimizer) else 1.0])
        if world > 1:
            dist.all_reduce(bad)
        if bad.item() > 0:
            raise FloatingPointError(
                f"optimizer state is not finite at step {step}; no checkpoint written. {last_good()}"
            )
        ckpt.save(
            step,
            model,
            optimizer,
            loader.state_dict(step=step),
            dict(tokens=tokens, grad_evals=grad_evals, time_s=train_time, wall_s=wall, config=config),
        )

    def last_good() -> str:
        last = ckpt.latest()
        fix = (
            "start a new run (another run_dir) with a lower optimizer.lr, or check the data; resuming "
            "this run_dir with the same config would repeat the same steps exactly"
        )
        return (
            f"The last good (finite) checkpoint is {last}; {fix}"
            if last
            else f"No checkpoint was written yet; {fix}"
        )

    steps = tc.steps
    thr = Throughput(tc.timing_warmup, model.flops_per_token(), peak_flops(device, tc.peak_tflops), world)
    collapse_warned = False
    loop_start = time.perf_counter() - wall
    for step in range(start, steps):
        t0 = time.perf_counter()
        factor = lr_factor(step, tc)
        for g in optimizer.param_groups:
            g["lr"] = g["initial_lr"] * factor
        try:
            loss, passes = optimizer_step(fwd_model, optimizer, loader.batch, step, steps, autocast)
        except ShardError as e:
            raise vocab_hint(e, mc.vocab_size) from None
        # one collective per step: loss, non-finite parameters, a pending stop signal
        flags = torch.stack(
            [
                loss.float().reshape(()),
                (~params_finite(model)).float(),
                torch.tensor(float(stop.name is not None), device=loss.device),
            ]
        )
        if world > 1:
            dist.all_reduce(flags)
        train_loss, nonfinite, stop_now = flags[0].item() / world, flags[1].item() > 0, flags[2].item() > 0
        if device.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        train_time += dt
        done = step + 1
        if not math.isfinite(train_loss) or nonfinite:
            what = f"training loss {train_loss}" if not math.isfinite(train_loss) else "parameters"
            raise FloatingPointError(
                f"non-finite {what} at step {done}; nothing of this step was saved. {last_good()}"
            )
        grad_evals += passes
        tokens += passes * loader.tokens_per_step
        timed = thr.add(1000 * dt, passes)
        data_tps, proc_tps = loader.tokens_per_step / dt, passes * loader.tokens_per_step / dt
        record = dict(
            step=done,
            train_loss=train_loss,
            lr=optimizer.param_groups[0]["lr"],
            tokens=tokens,
            data_tokens=done * loader.tokens_per_step,
            grad_evals=grad_evals,
            passes=passes,
            time_s=round(train_time, 4),
            step_ms=round(1000 * dt, 2),
            data_tok_s=round(data_tps, 1),
            proc_tok_s=round(proc_tps, 1),
        )
        mfu = thr.mfu(proc_tps)
        if mfu is not None:
            record["mfu"] = round(mfu, 4)
        if device.type == "cuda":
            record["peak_mem_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        if not timed:
            record["warmup"] = True
        wall = time.perf_counter() - loop_start  # everything: validation, logging and checkpoints too
        record["wall_s"] = round(wall, 4)
        if (tc.val_every and done % tc.val_every == 0) or done == steps:
            record["val_loss"] = evaluate(fwd_model, val_loader, autocast, world)
        log.metrics(record)
        if (
            not collapse_warned
            and done > max(10, tc.warmup_steps)
            and train_loss >= math.log(mc.vocab_size) - 0.01
        ):
            collapse_warned = True
            log.print(
                f"warning: at step {done} the training loss {train_loss:.3f} is at or above ln(vocab) = "
                f"{math.log(mc.vocab_size):.3f}, the loss of a uniform guess: the run has collapsed "
                "(optimizer.lr too large?)"
            )
        if done % tc.log_every == 0 or "val_loss" in record or done == steps:
            med = thr.median_ms
            msg = (
                f"step {done}/{steps} loss {train_loss:.4f} lr {record['lr']:.3g} {1000 * dt:.0f} ms"
                + (f" (median {med:.0f})" if med else " (warm-up)")
                + f" {data_tps:,.0f} tok/s data, {proc_tps:,.0f} processed"
            )
            if mfu is not None:
                msg += f" MFU {100 * mfu:.1f}%"
            if "peak_mem_gib" in record:
                msg += f" mem {record['peak_mem_gib']:.1f} GiB"
            if med and done < steps:
                msg += f" ETA {fmt_eta((steps - done) * med / 1000)}"
            if "val_loss" in record:
                msg += f" val_loss {record['val_loss']:.4f}"
            log.print(msg)
        if (tc.ckpt_every and done % tc.ckpt_every == 0) or done == steps or stop_now:
            save(done)
        if stop_now and done < steps:
            log.print(
                f"stopping on {stop.name or 'a signal to another rank'} after step {done}: checkpoint "
                f"{ckpt.root / f'step_{done:06d}'} written; rerun the same command to resume "
                f"(exit code {EXIT_PREEMPTED})"
            )
            raise SystemExit(EXIT_PREEMPTED)

    # ---- summary (rank 0 writes it)
    summary = dict(completed=True, steps=steps, tokens=tokens, grad_evals=grad_evals, time_s=train_time)
    if rank != 0:
        return summary
    records = rundir.read_metrics(run_dir)
    vals = [r["val_loss"] for r in records if "val_loss" in r]
    summary["final_val_loss"] = vals[-1] if vals else None
    old = rundir.read_summary(run_dir) or {}
    med = thr.median_ms
    if med is None and old.get("median_step_ms") is not None:  # a rerun of a finished run: keep its timing
        summary.update(
            {
                k: old.get(k)
                for k in (
                    "median_step_ms",
                    "data_tokens_per_s",
                    "processed_tokens_per_s",
                    "mfu",
                    "peak_mem_gib",
                )
            }
        )
    else:
        data_tps = loader.tokens_per_step / (med / 1000) if med else None
        proc_tps = thr.median_processed_tok_s(loader.tokens_per_step)
        summary.update(
            median_step_ms=med,
            data_tokens_per_s=data_tps,
            processed_tokens_per_s=proc_tps,
            mfu=thr.mfu(proc_tps) if proc_tps else None,
            peak_mem_gib=(torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None),
        )
    summary.update(
        device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        world_size=world,
        micro_seqs=micro,
        compile=compile_on,
        grad_evals_per_step=optimizer.grad_evals_per_step,
    )
    rundir.write_summary(run_dir, summary)
    log.print(
        f"done: {steps} steps, {tokens:,} tokens, {grad_evals} gradient evaluations, {train_time:.1f} s, "
        f"median {med if med is None else round(med, 1)} ms/step, final val_loss {summary['final_val_loss']}"
    )
    return summary


@hydra.main(version_base=None, config_path=str(REPO / "configs"), config_name="config")
def main(cfg) -> float | None:
    """Hydra entry. Returns the final validation loss, so Hydra sweeper plugins (e.g. Optuna) can tune."""
    try:
        return train(cfg).get("final_val_loss")
    except ConfigError as e:  # the message says what to fix; a traceback would only bury it
        rank = os.environ.get("RANK")
        print(
            f"error{f' (rank {rank})' if rank not in (None, '0') else ''}: {e}", file=sys.stderr, flush=True
        )
        raise SystemExit(EXIT_CONFIG) from None
    finally:
        if dist.is_initialized():
            with contextlib.suppress(Exception):
                dist.barrier()  # no rank tears down while another still has collectives in flight
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
