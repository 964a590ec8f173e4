"""Train GPT with Muon, MuonMVR, Gluon, Gluon-MVR or any torch optimizer on token shards, in one process or
under torchrun.

    python train.py                                          # tiny GPT, synthetic data, MuonMVR (MVR1)
    python train.py experiment=quickstart optimizer=muon     # the CPU quick start
    torchrun --nproc_per_node=8 train.py experiment=fig1 optimizer=gluon_mvr1

This file is the method, top to bottom: the model and optimizer the run trains, one optimizer step (with
the extra pass of a two-pass estimator), evaluation, and `train()`: pre-flight, build, resume, the loop,
the summary. The machinery it calls lives in harness/, one concern per module:

    harness/config.py       the config schema (every key, type, choice, default) and the checks before work
    harness/optimizer.py    the optimizer a config names (`_target_`), its param groups, 1..N ranks
    harness/distributed.py  ranks, signals, dying with torchrun, `fail_together` (a failure on any rank)
    harness/sharding.py     the weights over the ranks: replicated, or fsdp2 (fully_shard)
    harness/batching.py     micro-batch sizing, the GPU micro-batch probe, the data loaders
    harness/checkpoint.py   checkpoints, the run lock, the resume rules
    harness/metrics.py      train.log, metrics.jsonl, wandb, throughput and MFU, the summary
    harness/rundir.py       the run-directory contract every script reads through
    harness/memory.py       CPU runs keep freed memory instead of re-faulting it every step

Config groups: configs/. Optimizers: optim/ (equations: optim/README.md). Model: model.py. Data: data/.

Step t uses the global batch xi_t (batch.global_seqs sequences over ranks and micro-batches). No DDP:
with sharding=replicated optim/'s optimizers average gradients across ranks themselves, so both passes of
a two-pass estimator communicate alike (docs/training.md, "How a step is arranged"), and any other
optimizer class is wrapped so that its gradients are averaged before its step (harness/optimizer.py);
with sharding=fsdp2, FSDP2 averages every pass onto each rank's shard.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import hydra
import numpy as np
import torch
import torch.distributed as dist
from omegaconf import OmegaConf

from harness import optimizer as harness_optimizer
from harness import rundir
from harness.batching import (
    micro_batch_size,
    micro_cap,
    probe_micro_seqs,
    probe_try_size,
    shard_errors_as_config,
    train_loader,
    val_loader,
    write_synthetic_data_if_needed,
)
from harness.checkpoint import Checkpointer, NonFinite, RunLock
from harness.config import (
    ConfigError,
    ModelConfig,
    Sharding,
    TrainCfg,
    check_command_line,
    check_config,
    check_schema,
    compile_enabled,
    max_micro_seqs,
    model_config_from,
    passes_note,
)
from harness.distributed import (
    StopSignal,
    exit_with_parent,
    fail_together,
    mean_over_ranks,
    setup_distributed,
)
from harness.distributed import teardown as teardown_distributed
from harness.memory import retain_freed_memory
from harness.metrics import Metrics, Progress, RunLog, write_run_header
from harness.sharding import lay_out
from optim.dtensor import local_part

REPO = Path(__file__).resolve().parent
EXIT_PREEMPTED = 75  # SIGTERM / SIGUSR1: a checkpoint was written; rerun the same command to resume
EXIT_CONFIG = 2  # the config (or its run_dir) was refused before any work; the message says what to fix


# ----------------------------------------------------------------------------- model and optimizer
def model_config(cfg) -> ModelConfig:
    """model.* and data.seq_len as the config class model._target_ names, which checks every field."""
    return model_config_from(OmegaConf.to_container(cfg.model, resolve=True), cfg.data.seq_len)


def build_model(cfg) -> torch.nn.Module:
    """The model this config trains, on the CPU; used by tests and to load a checkpoint's model.pt
    (harness/checkpoint.py) outside the trainer."""
    return model_config(cfg).build()


def build_optimizer(oc, model: torch.nn.Module, grad_clip: float | None = None):
    """The optimizer class ``optimizer._target_`` names, with its keyword arguments, on ``model``'s routed
    param groups (harness/optimizer.py); its errors name the optimizer.* key."""
    return harness_optimizer.build_optimizer(oc, model, grad_clip)[0]


class StandIn(torch.nn.Module):
    """Three parameters, one per routing group (an embedding, a matrix, a vector), to build an optimizer
    on before any model exists (the class's own checks run there)."""

    def __init__(self) -> None:
        super().__init__()
        self.wte = torch.nn.Embedding(4, 4)
        self.proj = torch.nn.Linear(4, 4, bias=False)
        self.gain = torch.nn.Parameter(torch.ones(4))


def check_before_work(cfg) -> list[str]:
    """Every check that needs no rank, file or model: the model's fields (model.py), the config
    (harness/config.py), then the optimizer's keys and ranges (a key the class does not take, momentum 1.0,
    q = 0, a plugin's checks), by building it on a stand-in. Returns the notes for the log."""
    check_schema(cfg)  # every key exists
    model_config(cfg)  # model.* and data.seq_len
    notes = check_config(cfg)
    stand_in, more = harness_optimizer.build_optimizer(cfg.optimizer, StandIn(), cfg.train.grad_clip)
    return notes + more + passes_note(cfg, stand_in.grad_evals_per_step)


# ----------------------------------------------------------------------------- one step
def lr_factor(step: int, tc: TrainCfg) -> float:
    """Optional linear warm-up, constant, then linear warm-down to 0 over the last warmdown_frac of steps."""
    if step < tc.warmup_steps:
        return (step + 1) / tc.warmup_steps
    warmdown = int(round(tc.warmdown_frac * tc.steps))
    if step >= tc.steps - warmdown:
        return max(tc.steps - step, 0) / max(warmdown, 1)
    return 1.0


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
    """A 0-d bool tensor: every parameter (this rank's shard of it) is finite (no host sync)."""
    return torch.stack([torch.isfinite(local_part(p)).all() for p in model.parameters()]).all()


@torch.no_grad()
def evaluate(model, val_loader, autocast, world: int) -> float:
    """Mean token loss over the validation set, averaged over ranks."""
    model.eval()
    total = torch.zeros((), device=next(model.parameters()).device)
    for x, y in val_loader:
        with autocast:
            total += model(x, y)[1]
    model.train()
    return mean_over_ranks(total / len(val_loader), world)


# ----------------------------------------------------------------------------- the run
def train(cfg) -> dict:
    """Train one run. Order: check the config; set up ranks; lock run_dir; compare with the checkpoint;
    build model, optimizer and data; only then write anything into run_dir; train; summarize."""
    notes = check_before_work(cfg)
    retain_freed_memory()  # CPU steps reuse freed buffers instead of re-faulting them (harness/memory.py)
    exit_with_parent()
    fsdp2 = cfg.sharding == Sharding.fsdp2
    rank, world, device = setup_distributed(cfg.device, group_of_one=fsdp2)  # FSDP2 needs a group
    run_dir = Path(cfg.run_dir)
    ckpt = Checkpointer(
        run_dir, rank, world, every=cfg.train.ckpt_every, steps=cfg.train.steps, sharding=cfg.sharding
    )
    ctx = RunContext(rank, world, device, ckpt, RunLog(run_dir, rank), StopSignal())
    try:
        with fail_together(world):
            ctx.lock = RunLock(run_dir) if rank == 0 else None
            resume_from, saved, resume_notes = ckpt.resume_point(cfg)
        return _run(cfg, ctx, resume_from, saved, notes + resume_notes)
    finally:
        ctx.stop.restore()
        ctx.log.close()
        if ctx.lock is not None:
            ctx.lock.release()
        if fsdp2 and world == 1:
            teardown_distributed()  # the group of one made above


@dataclass
class RunContext:
    """What `train` sets up before the run: this process's rank, the number of ranks, its device, and
    the objects that own run_dir (checkpoints, the log, the lock) and the stop signal."""

    rank: int
    world: int
    device: torch.device
    ckpt: Checkpointer
    log: RunLog
    stop: StopSignal
    lock: RunLock | None = None


def _build(cfg, ctx: RunContext, compile_on: bool):
    """Model (laid out over the ranks, compiled if ``compile_on``), optimizer, loaders and the micro-batch:
    everything that can still fail on bad input (nothing is written to run_dir yet). Returns (model, the
    module to call forward on, optimizer, loader, val_loader, micro, probed)."""
    rank, world, device = ctx.rank, ctx.world, ctx.device
    torch.manual_seed(cfg.seed)  # the same seed on every rank gives the same weights; rank 0's are broadcast
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    with fail_together(world):
        model = build_model(cfg).to(device)
    fwd_model = lay_out(model, cfg.sharding, world, device, compile_on)
    with fail_together(world):  # also the barrier after rank 0 wrote synthetic shards
        optimizer = build_optimizer(cfg.optimizer, model, cfg.train.grad_clip)
        if rank == 0:
            write_synthetic_data_if_needed(cfg)
    probed = cfg.batch.micro_seqs is None and max_micro_seqs(cfg.train) is None and device.type == "cuda"
    with fail_together(world):
        if probed:  # the probe starts from the largest micro-batch <= 64 that splits the batch
            micro = micro_batch_size(cfg.batch.global_seqs, None, world, 64)
        else:
            micro = micro_batch_size(cfg.batch.global_seqs, cfg.batch.micro_seqs, world, micro_cap(cfg.train))
        loader = train_loader(cfg, micro, rank, world, device)
    if probed:  # CUDA, max_micro_seqs=auto: the largest micro-batch that fits, the same on every rank
        try_size = probe_try_size(cfg, model, world, autocast_for(device), accumulate_grad)
        micro = probe_micro_seqs(cfg.batch.global_seqs // world, micro, try_size, world, ctx.log.print)
        loader = train_loader(cfg, micro, rank, world, device)
    with fail_together(world):
        val = val_loader(cfg, micro, rank, world, device)
    return model, fwd_model, optimizer, loader, val, micro, probed


def autocast_for(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()


def _run(cfg, ctx: RunContext, resume_from: Path | None, saved: dict | None, notes: list[str]) -> dict:
    # ---- build: everything that can fail on bad input, before anything is written
    run_dir, world, device = Path(cfg.run_dir), ctx.world, ctx.device
    ckpt, log, stop = ctx.ckpt, ctx.log, ctx.stop
    compile_on = compile_enabled(cfg, device.type)
    model, fwd_model, optimizer, loader, val, micro, probed = _build(cfg, ctx, compile_on)
    progress = Progress()
    if resume_from is not None:
        ckpt.load(resume_from, saved, model, optimizer, loader)
        progress = Progress.from_state(saved)
    autocast = autocast_for(device)

    # ---- from here on the run writes into run_dir (rank 0)
    if ctx.lock is not None:
        ctx.lock.claim()
    write_run_header(log, cfg, world, device, run_dir, notes)
    log.print(
        f"model {cfg.model.name}: {model.num_params():,} parameters; loss {model.loss_impl}; "
        f"compile {compile_on}; sharding {cfg.sharding.value}"
    )
    log.print(
        f"optimizer {cfg.optimizer.name} (reference {optimizer.reference_source}, "
        f"{optimizer.grad_evals_per_step} gradient pass(es) per step); global batch {cfg.batch.global_seqs} "
        f"x {cfg.data.seq_len} = {loader.tokens_per_step:,} tokens = {world} rank(s) x {loader.accum_steps} "
        f"micro-batch(es) x {micro} sequences" + (" (probed)" if probed else "")
    )
    rundir.prepare_for_steps(run_dir, progress.step, log.print, ctx.rank == 0, resume_from is not None)
    if resume_from is not None:
        log.print(ckpt.resumed(resume_from, saved, progress.step))
    metrics = Metrics(log, cfg, model.flops_per_token(), device, world, loader.tokens_per_step)
    config = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)  # stored in every checkpoint

    # ---- the training loop: the step first, then diagnostics
    steps, loop_start = cfg.train.steps, time.perf_counter() - progress.wall_s
    try:
        for step in range(progress.step, steps):
            t0 = time.perf_counter()
            factor = lr_factor(step, cfg.train)
            for g in optimizer.param_groups:
                g["lr"] = g["initial_lr"] * factor
            with shard_errors_as_config(cfg.model.vocab_size):
                loss, passes = optimizer_step(fwd_model, optimizer, loader.batch, step, steps, autocast)
            # one collective per step: the loss, non-finite parameters, a pending stop signal
            flags = torch.stack(
                [
                    loss.float().reshape(()),
                    (~params_finite(model)).float(),
                    torch.tensor(float(stop.name is not None), device=loss.device),
                ]
            )
            if world > 1:
                dist.all_reduce(flags)
            loss_sum, nonfinite, stop_now = flags.tolist()
            train_loss = loss_sum / world
            if device.type == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0

            done = progress.step = step + 1
            progress.time_s += dt
            if not math.isfinite(train_loss) or nonfinite:
                what = f"training loss {train_loss}" if not math.isfinite(train_loss) else "parameters"
                raise NonFinite(
                    f"non-finite {what} at step {done}; nothing of this step was saved", ckpt.last_good()
                )
            progress.grad_evals += passes
            progress.tokens += passes * loader.tokens_per_step
            progress.wall_s = time.perf_counter() - loop_start  # validation, logging and checkpoints too
            val_loss = evaluate(fwd_model, val, autocast, world) if metrics.should_validate(done) else None
            metrics.step(progress, train_loss, optimizer.param_groups[0]["lr"], passes, dt, val_loss)
            if ckpt.should_save(done, stop_now):
                ckpt.save_if_finite(
                    done,
                    model,
                    optimizer,
                    loader.state_dict(step=done),
                    dict(**progress.state(), config=config),
                )
            if stop_now and done < steps:
                log.print(
                    f"stopping on {stop.name or 'a signal to another rank'} after step {done}: checkpoint "
                    f"{ckpt.root / f'step_{done:06d}'} written; rerun the same command to resume "
                    f"(exit code {EXIT_PREEMPTED})"
                )
                raise SystemExit(EXIT_PREEMPTED)
    except NonFinite as e:
        metrics.diverged(run_dir, progress, e.why)
        raise

    # ---- summary (rank 0 writes it)
    passes = optimizer.grad_evals_per_step
    return metrics.summary(
        run_dir, progress, micro_seqs=micro, compile=compile_on, grad_evals_per_step=passes
    )


# ----------------------------------------------------------------------------- entry point
@hydra.main(version_base=None, config_path=str(REPO / "configs"), config_name="config")
def main(cfg) -> float | None:
    """Hydra entry. Returns the final validation loss, so Hydra sweeper plugins (e.g. Optuna) can tune.
    Exit codes: 0 done, 2 the config or run_dir was refused before any work, 75 stopped by a signal after
    writing a checkpoint (rerun to resume)."""
    try:
        return train(cfg).get("final_val_loss")
    except ConfigError as e:
        refuse(e)
    finally:
        teardown_distributed()


def refuse(e: ConfigError) -> NoReturn:
    """Exit code 2 with only the message, which says what to fix (a traceback would bury it)."""
    rank = os.environ.get("RANK")
    print(f"error{f' (rank {rank})' if rank not in (None, '0') else ''}: {e}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_CONFIG) from None


if __name__ == "__main__":
    try:
        check_command_line(sys.argv[1:])  # a key or a config file that does not exist, before Hydra
    except ConfigError as e:
        refuse(e)
    main()
