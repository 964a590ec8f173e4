"""Micro-batches: how a global batch splits over ranks and micro-batches, the probe that finds the
largest micro-batch that fits a GPU, and the data loaders built for that split.

Also the synthetic shards `data=synthetic` writes on first use.

One optimizer step takes ``batch.global_seqs`` sequences = ranks x micro-batches x ``micro`` sequences.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.distributed as dist
from omegaconf import OmegaConf

from data.loader import DataFilesError, TrainLoader, ValLoader
from data.shards import ShardError
from harness.config import ConfigError, max_micro_seqs
from harness.distributed import fail_together

SHARD_IDS = 1 << 16  # a shard stores uint16 ids: every id a shard can hold is below this


def shard_vocab(cfg) -> int:
    """The vocabulary the loaders check every shard against: model.vocab_size, at most SHARD_IDS."""
    return min(cfg.model.vocab_size, SHARD_IDS)


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


CPU_MICRO_CAP = 16  # train.max_micro_seqs=auto where there is no probe (CPU): sequences per micro-batch


def micro_cap(tc) -> int:
    """train.max_micro_seqs as a number: an int as given; 'auto' -> CPU_MICRO_CAP (on CUDA the probe
    decides instead)."""
    return max_micro_seqs(tc) or CPU_MICRO_CAP


def is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in str(e).lower()


def probe_micro_seqs(per_rank: int, start: int, try_size, world: int, log=print) -> int:
    """The largest divisor of ``per_rank`` ≤ ``start`` for which ``try_size(m)`` (one forward+backward)
    does not run out of memory, halving on each out-of-memory error; the minimum over ranks. Any other
    error (or none fitting) on one rank is raised on every rank, so no rank waits in the minimum."""
    candidates = sorted((m for m in range(1, per_rank + 1) if per_rank % m == 0 and m <= start), reverse=True)
    chosen = None
    with fail_together(world, "the micro-batch probe"):
        m = candidates[0]
        while chosen is None:
            try:
                try_size(m)
                chosen = m
            except Exception as e:
                if not is_oom(e):
                    raise
                smaller = [c for c in candidates if c <= m // 2]
                log(
                    f"micro-batch probe: {m} sequences ran out of memory"
                    + (f"; trying {smaller[0]}" if smaller else "")
                )
                if not smaller:
                    raise RuntimeError(
                        "micro-batch probe: even 1 sequence per micro-batch runs out of memory; use a "
                        "smaller model or data.seq_len"
                    ) from e
                m = smaller[0]
            finally:
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
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


def probe_try_size(cfg, model: torch.nn.Module, world: int, autocast, forward_backward):
    """``try_size(m)`` for `probe_micro_seqs`: one ``forward_backward(model, [(x, x)], autocast)`` of m
    random sequences, holding back what a real step adds (`probe_reserve_bytes`), gradients dropped."""
    device = next(model.parameters()).device
    reserve = probe_reserve_bytes(model, world)

    def try_size(m: int) -> None:
        held = torch.empty(reserve, dtype=torch.uint8, device=device)
        x = torch.randint(0, cfg.model.vocab_size, (m, cfg.data.seq_len), device=device)
        try:
            forward_backward(model, [(x, x)], autocast)
        finally:
            for p in model.parameters():
                p.grad = None
            del held

    return try_size


def vocab_error(e: ShardError, vocab_size: int) -> Exception:
    """A shard id ≥ model.vocab_size (but < 2^16, what a shard can hold) means the model is too small for
    the data, not a bad shard: a ConfigError that says so. Any other shard error is returned as it is."""
    if e.token_id is None or e.token_id >= SHARD_IDS:
        return e
    return ConfigError(
        f"config key model.vocab_size={vocab_size} is too small for the data: {e.path} holds token "
        f"id {e.token_id}. The shard is fine; set model.vocab_size >= {e.token_id + 1} "
        "(GPT-2 tokens: 50304; byte-level text: 256)"
    )


@contextlib.contextmanager
def shard_errors_as_config(vocab_size: int) -> Iterator[None]:
    """A ShardError about a too-small vocabulary leaves the block as the ConfigError of `vocab_error`."""
    try:
        yield
    except ShardError as e:
        raise vocab_error(e, vocab_size) from None


@contextlib.contextmanager
def data_errors_as_config(cfg, split: str) -> Iterator[None]:
    """Building the ``split`` loader: files that cannot serve it (data/loader.py's DataFilesError) and
    unreadable shards (ShardError) leave the block as ConfigErrors naming the data.* key to change."""
    key = {"files": f"data.{split}_files", "seq_len": "data.seq_len", "val_tokens": "data.val_tokens"}
    try:
        with shard_errors_as_config(cfg.model.vocab_size):
            yield
    except DataFilesError as e:
        name = key[e.setting]
        raise ConfigError(f"config key {name}={OmegaConf.select(cfg, name)!r} is invalid: {e}") from None
    except ShardError as e:  # a malformed or unreadable shard (too-small vocabularies are ConfigErrors)
        name = f"data.{split}_files"
        raise ConfigError(f"config key {name}={OmegaConf.select(cfg, name)!r} is invalid: {e}") from None


def train_loader(cfg, micro: int, rank: int, world: int, device) -> TrainLoader:
    """This rank's training stream for ``micro`` sequences per micro-batch."""
    d = cfg.data
    with data_errors_as_config(cfg, "train"):
        return TrainLoader(
            d.train_files,
            d.seq_len,
            cfg.batch.global_seqs,
            micro,
            rank=rank,
            world_size=world,
            device=device,
            seed=cfg.seed,
            vocab_size=shard_vocab(cfg),
            sequential=d.order.value == "sequential",
        )


def val_loader(cfg, micro: int, rank: int, world: int, device) -> ValLoader:
    """This rank's share of the validation set, in micro-batches of the largest size <= ``micro`` that
    splits it (check_config made it whole sequences, an equal number on every rank)."""
    d = cfg.data
    val_micro = micro_batch_size(d.val_tokens // d.seq_len, None, world, micro)
    with data_errors_as_config(cfg, "val"):
        return ValLoader(
            d.val_files,
            d.seq_len,
            d.val_tokens,
            val_micro,
            rank=rank,
            world_size=world,
            device=device,
            vocab_size=shard_vocab(cfg),
        )


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
