"""Checkpoints, the run lock, and the rules for resuming.

A run directory holds ``ckpt/step_XXXXXX/{model.pt, optim_rank{r}.pt, state.pt}`` and ``ckpt/LATEST``
(harness/rundir.py has the whole contract); under ``sharding=fsdp2`` a torch.distributed.checkpoint folder
``dcp/`` (model and optimizer, sharded) replaces the ``optim_rank{r}.pt`` files. The `Checkpointer`
decides when to save (`should_save`), refuses to save a non-finite optimizer state (`save_if_finite`) and
names the last good checkpoint when a run stops on a non-finite value (`last_good`). A resumption must
have the checkpoint's config, except the keys harness/config.py declares free or the user opts in with
``resume_allow`` (`check_resume_config`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import shutil
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from omegaconf import OmegaConf

from harness import rundir
from harness.config import (
    RESUME_OPT_IN,
    Config,
    ConfigError,
    Resume,
    Sharding,
    flat_config,
    resume_free,
    with_model_target,
)
from harness.distributed import barrier
from optim.dtensor import local_part

DCP_DIR = "dcp"  # a checkpoint's torch.distributed.checkpoint folder under sharding=fsdp2


def made_folders(path: Path) -> list[Path]:
    """The folders ``path.mkdir(parents=True)`` would make: path and its missing parents, innermost first."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


class RunLock:
    """An exclusive lock on run_dir/.lock held for the run's life by rank 0 (flock: released by the OS
    when the process dies, kill -9 included). A second run on the same run_dir fails at once naming
    the holder (host, pid), which the lock file records from the moment it is taken. A launch refused
    before claim() (it failed a check) puts the lock file back as it found it, and removes the lock file,
    run_dir and every parent folder of run_dir it made (runs/track3/ of runs/track3/<run>), so a refused
    launch leaves the filesystem as it found it."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir, self.path, self.claimed = run_dir, run_dir / ".lock", False
        self.made_dirs = made_folders(run_dir)  # run_dir first, then the parents it adds, innermost first
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
            for folder in self.made_dirs:
                try:
                    folder.rmdir()
                except OSError:  # not empty: another launch's run is in it now; it and its parents stay
                    break
        os.close(self.fd)  # closing releases the flock
        self.fd = None


class NonFinite(FloatingPointError):
    """The run stopped on a non-finite loss, parameter or optimizer state: ``why`` says which and when;
    the message adds the last good checkpoint and how to go on."""

    def __init__(self, why: str, last_good: str) -> None:
        super().__init__(f"{why}. {last_good}")
        self.why = why


class Checkpointer:
    """run_dir/ckpt/step_XXXXXX/{model.pt, optim_rank{r}.pt, state.pt}; run_dir/ckpt/LATEST names the newest.

    A checkpoint directory is complete before LATEST (written to a temp file, then os.replace) points at
    it, so a crash at any moment leaves the previous checkpoint usable; older ones are then removed.
    state.pt holds the step, counters, the loader position, the RNG state and the resolved config.
    Optimizer state is saved per rank (what the rank owns) and re-sharded on load when the number of
    ranks changed (`load_sharded_state_dicts`). Under ``sharding=fsdp2`` the model and the optimizer go
    into one torch.distributed.checkpoint folder (``dcp/``, every rank writes its shards), which loads on
    any number of ranks; rank 0 still writes the whole model to model.pt for readers outside the trainer.
    Only finite parameters and optimizer state are saved.
    """

    def __init__(
        self,
        run_dir: Path,
        rank: int,
        world: int,
        every: int = 0,
        steps: int = 0,
        sharding: Sharding = Sharding.replicated,
    ):
        self.root, self.rank, self.world = run_dir / rundir.CKPT, rank, world
        self.every, self.steps = every, steps  # train.ckpt_every (0: only at the end), train.steps
        self.sharding = sharding

    def should_save(self, done: int, stopping: bool = False) -> bool:
        """After step ``done``: every train.ckpt_every steps, at the last step, and when stopping."""
        return bool(self.every and done % self.every == 0) or done == self.steps or bool(stopping)

    def resumed(self, path: Path, saved: dict, step: int) -> str:
        """The log line for a run that continues from checkpoint ``path`` (or finds itself finished)."""
        if step >= self.steps:
            return f"{path} is the last step ({step}) of this finished run: nothing left to train"
        moved = saved["world_size"] != self.world
        return f"resumed from {path} at step {step}" + (
            f" (saved by {saved['world_size']} ranks, re-sharded onto {self.world})" if moved else ""
        )

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

    def resume_point(self, cfg) -> tuple[Path | None, dict | None, list[str]]:
        """(checkpoint to resume from, its state, notes for the log) under cfg.resume; (None, None, []) for
        a fresh run. Refuses a checkpoint of another configuration (`check_resume_config`)."""
        path = self.latest()
        if path is not None and cfg.resume == Resume.never:
            raise ConfigError(
                f"{cfg.run_dir} already holds a checkpoint ({path.name}); pass resume=auto "
                "to continue it, or choose another run_dir"
            )
        if path is None and cfg.resume == Resume.must:
            raise ConfigError(f"resume=must but {cfg.run_dir}/{rundir.CKPT} has no checkpoint")
        if path is None:
            return None, None, []
        saved = self.read_state(path)
        return path, saved, check_resume_config(saved.get("config"), cfg, path, saved["step"])

    def last_good(self) -> str:
        """What to do after a non-finite value: the last good checkpoint, and how to go on."""
        last = self.latest()
        fix = (
            "start a new run (another run_dir) with a lower optimizer.lr, or check the data; resuming "
            "this run_dir with the same config would repeat the same steps exactly"
        )
        return (
            f"The last good (finite) checkpoint is {last}; {fix}"
            if last
            else f"No checkpoint was written yet; {fix}"
        )

    def save_if_finite(self, step: int, model, optimizer, loader_state: dict, extra: dict) -> None:
        """Save step ``step`` unless the optimizer state is non-finite on any rank (then FloatingPointError,
        on every rank, naming the last good checkpoint)."""
        bad = torch.tensor([0.0 if optimizer_state_finite(optimizer) else 1.0])
        if self.world > 1:
            dist.all_reduce(bad)
        if bad.item() > 0:
            raise NonFinite(
                f"optimizer state is not finite at step {step}; no checkpoint written", self.last_good()
            )
        self.save(step, model, optimizer, loader_state, extra)

    def save(self, step: int, model, optimizer, loader_state: dict, extra: dict) -> None:
        path = self.root / f"step_{step:06d}"
        if self.rank == 0:
            path.mkdir(parents=True, exist_ok=True)
        barrier(self.world)
        if self.sharding == Sharding.fsdp2:
            model_state = save_dcp(path / DCP_DIR, model, optimizer)
        else:
            atomic_save(optimizer.state_dict(), path / f"optim_rank{self.rank}.pt")
            model_state = model.state_dict()
        if self.rank == 0:
            atomic_save(model_state, path / "model.pt")
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
        saved_world = state["world_size"]
        if self.sharding == Sharding.fsdp2:  # DCP re-shards onto any number of ranks itself
            if not (path / DCP_DIR).is_dir():
                raise RuntimeError(f"checkpoint {path} has no {DCP_DIR}/ folder; it cannot be resumed")
            load_dcp(path / DCP_DIR, model, optimizer)
        else:
            model.load_state_dict(torch.load(path / "model.pt", map_location=device))
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


def _torch_optimizer(optimizer):
    """The torch.optim.Optimizer itself: a `Replicated` wrapper's inner one (DCP steps and reads it)."""
    from harness.optimizer import Replicated

    return optimizer.optimizer if isinstance(optimizer, Replicated) else optimizer


def save_dcp(folder: Path, model, optimizer) -> dict:
    """Every rank writes its shards of the model and optimizer state (torch.distributed.checkpoint);
    returns the whole model's state dict on rank 0 (gathered to the CPU), an empty dict elsewhere."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_state_dict

    model_sd, optim_sd = get_state_dict(model, _torch_optimizer(optimizer))
    dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=str(folder))
    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_dcp(folder: Path, model, optimizer) -> None:
    """Load a `save_dcp` folder into the sharded model and its optimizer, on any number of ranks."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    opt = _torch_optimizer(optimizer)
    model_sd, optim_sd = get_state_dict(model, opt)
    state = {"model": model_sd, "optim": optim_sd}
    dcp.load(state, checkpoint_id=str(folder))
    set_state_dict(model, opt, model_state_dict=state["model"], optim_state_dict=state["optim"])


def optimizer_state_finite(optimizer) -> bool:
    return all(
        bool(torch.isfinite(local_part(v)).all())
        for s in optimizer.state.values()
        for v in s.values()
        if isinstance(v, torch.Tensor) and v.is_floating_point()
    )


def atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


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


# ----------------------------------------------------------------------------- resume rules
def config_changes(saved: dict[str, Any], cfg) -> list[tuple[str, Any, Any]]:
    """(key, saved value, new value) for every key that matters to what is trained (not RESUME_FREE).
    A key one config lacks (it predates the key) counts as unchanged while the other side holds the
    schema's default."""
    old, new = with_model_target(flat_config(saved)), flat_config(cfg)
    defaults = flat_config(OmegaConf.structured(Config))
    missing = "<absent>"
    out = []
    for k in sorted(set(old) | set(new)):
        o, n = old.get(k, missing), new.get(k, missing)
        if resume_free(k) or o == n:
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
