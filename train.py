"""Train GPT with Muon / MuonMVR / Gluon / Gluon-MVR on token shards, on one process or under torchrun.

    python train.py                                          # tiny GPT, synthetic data, MuonMVR (MVR1)
    python train.py experiment=quickstart optimizer=muon     # the CPU quick start
    torchrun --nproc_per_node=8 train.py experiment=fig1 optimizer=gluon_mvr1

One optimizer step t uses the global batch xi_t (batch.global_seqs sequences, split over ranks and
micro-batches). Two-pass estimators get their reference gradient from an extra pass arranged here
(DESIGN.md, "Trainer contract"); each gradient is accumulated over all micro-batches of its own window
into clean grads. The model is not wrapped in DDP: the optimizer averages gradients across ranks
itself (reduce-scatter to the owner of each matrix), so both passes are communicated the same way.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import hydra
import numpy as np
import torch
import torch.distributed as dist
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from data.loader import TrainLoader, ValLoader
from model import GPT, GPTConfig

REPO = Path(__file__).resolve().parent
H100_BF16_PEAK_FLOPS = 989e12  # dense bf16, SXM


# ----------------------------------------------------------------------------- config schema
@dataclass
class ModelCfg:
    name: str = "tiny"
    n_layer: int = 2
    n_head: int = 2
    head_dim: int = 32
    tie_embeddings: bool = True
    vocab_size: int = 50304
    loss_impl: str = "chunked"  # chunked (never materialises (B, T, V) logits) | plain | liger (optional extra)
    loss_chunk: int = 8192  # tokens per chunk of the chunked loss


@dataclass
class OptimCfg:
    name: str = MISSING
    label: str = ""  # how figures and tables name it (e.g. "Gluon-MVR-1"); "" -> name
    family: str = MISSING  # adamw | muon | gluon
    lr: float = MISSING
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])  # AdamW (and AdamW-routed params)
    eps: float = 1e-8
    # muon family (MuonMVR)
    momentum: float = 0.95
    gamma: float = 0.025
    clip: bool = True
    nesterov: bool = False
    scale: str = "moonlight"  # moonlight | muon
    # gluon family (GluonMVR)
    variant: str = "gluon"  # gluon | mvr1 | mvr2 | mvr3
    beta: float = 0.9
    q: float = 0.5
    alpha: float = 0.0
    hidden_scale: float = 50.0
    embed_scale: float = 3000.0
    # both
    reference: str = "none"  # none | prev_step | prev_params | prev_batch
    ns_steps: int = 5
    ns_dtype: str | None = None  # null: the optimizer's default | float32 | bfloat16 | float64


@dataclass
class BatchCfg:
    name: str = MISSING
    global_seqs: int = MISSING
    micro_seqs: int | None = None


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
    val_every: int = 50
    ckpt_every: int = 100
    log_every: int = 1
    max_micro_seqs: int = 16


@dataclass
class FigureCfg:
    name: str = ""
    title: str = ""
    optimizers: list[str] = field(default_factory=list)


@dataclass
class WandbCfg:
    mode: str = "disabled"
    project: str = "nanogpt-mvr"


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
    resume: str = "auto"
    device: str = "auto"
    compile: bool = False


ConfigStore.instance().store(name="base_schema", node=Config)


def check_config(cfg) -> None:
    """Errors that name the key, the value and what would work."""
    choices = {
        "optimizer.family": ("adamw", "muon", "gluon"),
        "optimizer.reference": ("none", "prev_step", "prev_params", "prev_batch"),
        "optimizer.variant": ("gluon", "mvr1", "mvr2", "mvr3"),
        "optimizer.scale": ("moonlight", "muon"),
        "resume": ("auto", "never", "must"),
        "device": ("auto", "cpu", "cuda"),
        "wandb.mode": ("disabled", "offline", "online"),
    }
    for key, allowed in choices.items():
        value = OmegaConf.select(cfg, key)
        if value not in allowed:
            raise ValueError(f"config key {key}={value!r} is invalid; choose one of {list(allowed)}")
    for key in ("train.steps", "batch.global_seqs", "data.seq_len", "data.val_tokens"):
        if OmegaConf.select(cfg, key) <= 0:
            raise ValueError(f"config key {key} must be positive, got {OmegaConf.select(cfg, key)}")
    if not 0.0 <= cfg.train.warmdown_frac <= 1.0:
        raise ValueError(f"train.warmdown_frac={cfg.train.warmdown_frac} must lie in [0, 1]")


# ----------------------------------------------------------------------------- pieces
def setup_distributed(device_pref: str):
    """(rank, world_size, device). torchrun sets RANK/WORLD_SIZE; NCCL on GPU, gloo on CPU."""
    use_cuda = torch.cuda.is_available() if device_pref == "auto" else device_pref == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError("device=cuda was requested but CUDA is not available; use device=cpu or auto")
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if use_cuda else "gloo"
        dist.init_process_group(backend=backend, device_id=device if use_cuda else None)
    return rank, world, device


def micro_batch_size(global_seqs: int, micro_seqs: int | None, world: int, cap: int) -> int:
    """Sequences per micro-batch: global_seqs = world * accum * micro, with accum a whole number."""
    if global_seqs % world:
        ok = [w for w in range(1, global_seqs + 1) if global_seqs % w == 0]
        raise ValueError(
            f"batch.global_seqs={global_seqs} cannot be split over {world} ranks; "
            f"use a world size that divides it ({ok[:12]}...) or change batch.global_seqs"
        )
    per_rank = global_seqs // world
    divisors = [m for m in range(1, per_rank + 1) if per_rank % m == 0]
    if micro_seqs is None:
        return max(m for m in divisors if m <= max(cap, 1))
    if per_rank % micro_seqs:
        raise ValueError(
            f"batch.micro_seqs={micro_seqs} does not divide the {per_rank} sequences per rank "
            f"(batch.global_seqs={global_seqs} over {world} ranks); valid values: {divisors}"
        )
    return micro_seqs


def lr_factor(step: int, tc: TrainCfg) -> float:
    """Optional linear warm-up, constant, then linear warm-down to 0 over the last warmdown_frac of steps."""
    if step < tc.warmup_steps:
        return (step + 1) / tc.warmup_steps
    warmdown = int(round(tc.warmdown_frac * tc.steps))
    if step >= tc.steps - warmdown:
        return max(tc.steps - step, 0) / max(warmdown, 1)
    return 1.0


def build_optimizer(oc, model: torch.nn.Module) -> torch.optim.Optimizer:
    from optim import GluonMVR, MuonMVR, build_param_groups

    ns_dtype = getattr(torch, oc.ns_dtype) if oc.ns_dtype else None
    if oc.family == "adamw":
        return torch.optim.AdamW(
            model.parameters(), lr=oc.lr, betas=tuple(oc.betas), eps=oc.eps, weight_decay=oc.weight_decay
        )
    if oc.family == "muon":
        return MuonMVR(
            build_param_groups(model, "muon"), lr=oc.lr, momentum=oc.momentum, gamma=oc.gamma,
            weight_decay=oc.weight_decay, reference=oc.reference, clip=oc.clip, nesterov=oc.nesterov,
            scale=oc.scale, ns_steps=oc.ns_steps, ns_dtype=ns_dtype, adamw_betas=tuple(oc.betas),
            adamw_eps=oc.eps,
        )
    return GluonMVR(
        build_param_groups(model, "gluon"), lr=oc.lr, variant=oc.variant, beta=oc.beta, q=oc.q,
        alpha=oc.alpha, hidden_scale=oc.hidden_scale, embed_scale=oc.embed_scale, reference=oc.reference,
        ns_steps=oc.ns_steps, ns_dtype=ns_dtype, adamw_betas=tuple(oc.betas), adamw_eps=oc.eps,
    )


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


def optimizer_step(model, optimizer, batch, step: int, steps: int, autocast,
                   average_grads: bool = False) -> tuple[torch.Tensor, int]:
    """Optimizer step t on global batch xi_t = batch(t): first the extra pass of a two-pass estimator
    (DESIGN.md "Trainer contract"), then g_t = grad f(X_t; xi_t) and step(). Each gradient is accumulated
    over its own full window into clean grads. Returns (this rank's loss on xi_t, gradient passes).

    average_grads: all-reduce the grads first, for optimizers that do not communicate themselves (AdamW).
    """
    reference = getattr(optimizer, "reference_source", "none")
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
    if average_grads:
        for p in model.parameters():
            dist.all_reduce(p.grad, op=dist.ReduceOp.AVG)
    optimizer.step()
    return loss, passes


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
    env = dict(python=platform.python_version(), torch=torch.__version__, world_size=world,
               device=str(device), cuda=torch.version.cuda, host=platform.node())
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


# ----------------------------------------------------------------------------- checkpoints
class Checkpointer:
    """run_dir/ckpt/step_XXXXXX/{model.pt, optim_rank{r}.pt, state.pt}; run_dir/ckpt/LATEST names the newest.

    A checkpoint directory is complete before LATEST (written to a temp file, then os.replace) points at
    it, so a crash at any moment leaves the previous checkpoint usable. Older ones are then removed.
    """

    def __init__(self, run_dir: Path, rank: int, world: int):
        self.root, self.rank, self.world = run_dir / "ckpt", rank, world

    def latest(self) -> Path | None:
        pointer = self.root / "LATEST"
        if not pointer.exists():
            return None
        path = self.root / pointer.read_text().strip()
        if not (path / "state.pt").exists():
            raise RuntimeError(f"{pointer} names {path}, which is incomplete; delete {pointer} to start over")
        return path

    def save(self, step: int, model, optimizer, loader, extra: dict) -> None:
        path = self.root / f"step_{step:06d}"
        if self.rank == 0:
            path.mkdir(parents=True, exist_ok=True)
        barrier(self.world)
        atomic_save(optimizer.state_dict(), path / f"optim_rank{self.rank}.pt")
        if self.rank == 0:
            atomic_save(model.state_dict(), path / "model.pt")
            atomic_save(dict(step=step, world_size=self.world, loader=loader.state_dict(), rng=rng_state(),
                             **extra), path / "state.pt")
        barrier(self.world)
        if self.rank == 0:
            tmp = self.root / "LATEST.tmp"
            tmp.write_text(path.name)
            os.replace(tmp, self.root / "LATEST")
            for old in self.root.glob("step_*"):
                if old != path:
                    shutil.rmtree(old, ignore_errors=True)
        barrier(self.world)

    def load(self, path: Path, model, optimizer, loader) -> dict:
        state = torch.load(path / "state.pt", map_location="cpu", weights_only=False)
        if state["world_size"] != self.world:
            raise RuntimeError(
                f"checkpoint {path} was written by {state['world_size']} ranks (sharded optimizer state); "
                f"resume it with --nproc_per_node={state['world_size']}, not {self.world}"
            )
        device = next(model.parameters()).device
        model.load_state_dict(torch.load(path / "model.pt", map_location=device))
        optimizer.load_state_dict(torch.load(path / f"optim_rank{self.rank}.pt", map_location=device,
                                             weights_only=False))
        loader.load_state_dict(state["loader"])
        set_rng_state(state["rng"])
        return state


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
        torch.cuda.set_rng_state_all(s["cuda"])


# ----------------------------------------------------------------------------- logging
class RunLog:
    """Rank 0 only: stdout, run_dir/train.log, run_dir/metrics.jsonl, and optional wandb."""

    def __init__(self, cfg, run_dir: Path, rank: int):
        self.active = rank == 0
        self.wandb = None
        if not self.active:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        self.log_file = open(run_dir / "train.log", "a")
        self.metrics_path = run_dir / "metrics.jsonl"
        if cfg.wandb.mode != "disabled":
            import wandb  # imported only when used

            self.wandb = wandb.init(project=cfg.wandb.project, name=cfg.run_name, mode=cfg.wandb.mode,
                                    dir=str(run_dir), config=OmegaConf.to_container(cfg, resolve=True))

    def print(self, msg: str) -> None:
        if self.active:
            print(msg, flush=True)
            self.log_file.write(msg + "\n")
            self.log_file.flush()

    def truncate_metrics(self, last_step: int) -> None:
        """On resume, drop records past the checkpoint so the resumed curve continues without duplicates."""
        if self.active and self.metrics_path.exists():
            keep = [ln for ln in self.metrics_path.read_text().splitlines()
                    if ln.strip() and json.loads(ln)["step"] <= last_step]
            self.metrics_path.write_text("".join(ln + "\n" for ln in keep))

    def metrics(self, record: dict) -> None:
        if self.active:
            with open(self.metrics_path, "a") as f:
                f.write(json.dumps(record) + "\n")
            if self.wandb is not None:
                self.wandb.log(record, step=record["step"])

    def close(self) -> None:
        if self.active:
            self.log_file.close()
            if self.wandb is not None:
                self.wandb.finish()


def write_synthetic_data_if_needed(cfg, rank: int, world: int) -> None:
    if cfg.data.name != "synthetic":
        return
    from data.synthetic import write_synthetic_shards

    out = Path(cfg.data.train_files).parent
    if rank == 0 and not any(out.glob(Path(cfg.data.train_files).name)):
        write_synthetic_shards(out, train_tokens=2_000_000, val_tokens=max(cfg.data.val_tokens + 1, 131072))
    barrier(world)


# ----------------------------------------------------------------------------- training
def train(cfg) -> dict:
    check_config(cfg)
    rank, world, device = setup_distributed(cfg.device)
    run_dir = Path(cfg.run_dir)
    log = RunLog(cfg, run_dir, rank)
    ckpt = Checkpointer(run_dir, rank, world)
    resume_from = ckpt.latest()
    if resume_from is not None and cfg.resume == "never":
        raise RuntimeError(f"{run_dir} already holds a checkpoint ({resume_from.name}); pass resume=auto to "
                           f"continue it, or choose another run_dir")
    if resume_from is None and cfg.resume == "must":
        raise RuntimeError(f"resume=must but {run_dir}/ckpt has no checkpoint")

    log.print(f"git {git_sha()}")
    log.print("env " + json.dumps(environment(world, device)))
    log.print("command " + " ".join(sys.argv))
    if rank == 0:
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))

    # model: the same seed on every rank gives the same initial weights; rank 0's are broadcast anyway.
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    mc = cfg.model
    model = GPT(GPTConfig(vocab_size=mc.vocab_size, n_layer=mc.n_layer, n_head=mc.n_head,
                          head_dim=mc.head_dim, seq_len=cfg.data.seq_len, tie_embeddings=mc.tie_embeddings))
    model = model.to(device)
    if world > 1:
        for t in model.state_dict().values():
            dist.broadcast(t, src=0)
    log.print(f"model {mc.name}: {model.num_params():,} parameters")
    optimizer = build_optimizer(cfg.optimizer, model)
    for g in optimizer.param_groups:
        g.setdefault("initial_lr", g["lr"])
    reference = getattr(optimizer, "reference_source", "none")
    fwd_model = torch.compile(model) if cfg.compile else model
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda"
                else contextlib.nullcontext())

    write_synthetic_data_if_needed(cfg, rank, world)
    micro = micro_batch_size(cfg.batch.global_seqs, cfg.batch.micro_seqs, world, cfg.train.max_micro_seqs)
    vocab = min(mc.vocab_size, 50257)  # token ids must fit the model's embedding; checked on every shard
    loader = TrainLoader(cfg.data.train_files, cfg.data.seq_len, cfg.batch.global_seqs, micro, rank=rank,
                         world_size=world, device=device, seed=cfg.seed, vocab_size=vocab)
    val_loader = ValLoader(cfg.data.val_files, cfg.data.seq_len, cfg.data.val_tokens, micro, rank=rank,
                           world_size=world, device=device, vocab_size=vocab)
    log.print(f"optimizer {cfg.optimizer.name} (reference {reference}); global batch "
              f"{cfg.batch.global_seqs} x {cfg.data.seq_len} = {loader.tokens_per_step:,} tokens = {world} "
              f"rank(s) x {loader.accum_steps} micro-batch(es) x {micro} sequences")

    start, tokens, grad_evals, train_time, wall = 0, 0, 0, 0.0, 0.0
    if resume_from is not None:
        state = ckpt.load(resume_from, model, optimizer, loader)
        start, tokens, grad_evals, train_time, wall = (state["step"], state["tokens"], state["grad_evals"],
                                                       state["time_s"], state["wall_s"])
        log.truncate_metrics(start)
        log.print(f"resumed from {resume_from} at step {start}")
    elif rank == 0 and log.metrics_path.exists():
        log.metrics_path.unlink()  # a fresh run: no stale records

    def save(step):
        ckpt.save(step, model, optimizer, loader,
                  dict(tokens=tokens, grad_evals=grad_evals, time_s=train_time, wall_s=wall))

    steps, tc = cfg.train.steps, cfg.train
    flops_per_token = model.flops_per_token()
    loop_start = time.perf_counter() - wall
    for step in range(start, steps):
        t0 = time.perf_counter()
        factor = lr_factor(step, tc)
        for g in optimizer.param_groups:
            g["lr"] = g["initial_lr"] * factor
        loss, passes = optimizer_step(fwd_model, optimizer, loader.batch, step, steps, autocast,
                                      average_grads=cfg.optimizer.family == "adamw" and world > 1)
        grad_evals += passes
        tokens += passes * loader.tokens_per_step
        train_loss = mean_over_ranks(loss, world)
        if device.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        train_time += dt

        if not math.isfinite(train_loss):
            last = ckpt.latest()
            raise FloatingPointError(
                f"non-finite training loss {train_loss} at step {step + 1}; the last good checkpoint is "
                f"{last if last else '(none)'}. Lower optimizer.lr or check the data, then rerun with "
                f"resume=auto"
            )
        done = step + 1
        record = dict(step=done, train_loss=train_loss, lr=optimizer.param_groups[0]["lr"], tokens=tokens,
                      data_tokens=done * loader.tokens_per_step, grad_evals=grad_evals,
                      time_s=round(train_time, 4), step_ms=round(1000 * dt, 2))
        wall = time.perf_counter() - loop_start  # everything: validation, logging and checkpoints too
        record["wall_s"] = round(wall, 4)
        if (tc.val_every and done % tc.val_every == 0) or done == steps:
            record["val_loss"] = evaluate(fwd_model, val_loader, autocast, world)
        log.metrics(record)
        if done % tc.log_every == 0 or "val_loss" in record:
            tps = loader.tokens_per_step * (grad_evals / done) / dt
            msg = (f"step {done}/{steps} loss {train_loss:.4f} lr {record['lr']:.3g} {1000 * dt:.0f} ms/step "
                   f"{tps:,.0f} tok/s")
            if device.type == "cuda":
                msg += f" MFU {100 * flops_per_token * tps / (world * H100_BF16_PEAK_FLOPS):.1f}%"
            if "val_loss" in record:
                msg += f" val_loss {record['val_loss']:.4f}"
            log.print(msg)
        if (tc.ckpt_every and done % tc.ckpt_every == 0) or done == steps:
            save(done)

    summary = dict(completed=True, steps=steps, tokens=tokens, grad_evals=grad_evals, time_s=train_time)
    if rank == 0:
        lines = [json.loads(ln) for ln in log.metrics_path.read_text().splitlines() if ln.strip()]
        vals = [r["val_loss"] for r in lines if "val_loss" in r]
        summary["final_val_loss"] = vals[-1] if vals else None
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        log.print(f"done: {steps} steps, {tokens:,} tokens, {grad_evals} gradient evaluations, "
                  f"{train_time:.1f} s, final val_loss {summary['final_val_loss']}")
    log.close()
    return summary


@hydra.main(version_base=None, config_path="configs", config_name="config")
def main(cfg) -> None:
    try:
        train(cfg)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
