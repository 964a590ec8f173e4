"""Synthetic shards with learnable structure, for tests, benchmarks and smoke runs without any download.

The tokens come from a sparse random Markov chain: ``states`` token ids drawn at random from
``[0, vocab_size - 1)`` each have ``branching`` possible successors with fixed, skewed probabilities
(``probs``). Documents start with ``<|endoftext|>`` (50256) and run for a random length. A small GPT first
learns which ids occur (loss falls from ln(50257) ~ 10.8 towards ln(states)) and then the transitions
(towards the chain's entropy, ~1.1 nats with the default ``probs``), so its loss falls within a few steps.

    python -m data.synthetic --out data_cache/synthetic --train-tokens 2000000 --val-tokens 200000
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from data.shards import EOT, SHARD_TOKENS, VOCAB_SIZE, shard_name, write_shard

DEFAULT_PROBS = (0.6, 0.25, 0.1, 0.05)


def markov_tokens(
    n_tokens: int,
    rng: np.random.Generator,
    chain: tuple[np.ndarray, np.ndarray],
    mean_doc_len: int = 256,
    probs=DEFAULT_PROBS,
    eot: int = EOT,
) -> np.ndarray:
    """``n_tokens`` tokens of documents ``[eot, s0, s1, ...]`` from the chain ``(ids, successors)``."""
    ids, succ = chain
    states, branching = succ.shape
    cum = np.cumsum(np.asarray(probs, dtype=np.float64))
    cum /= cum[-1]
    out, have = [], 0
    while have < n_tokens:
        # A block of documents in parallel: one vectorised transition per position.
        n_docs = min(4096, (n_tokens - have) // mean_doc_len + 1)
        lengths = np.minimum(rng.geometric(1.0 / mean_doc_len, size=n_docs), 4 * mean_doc_len)
        width = int(lengths.max())
        walk = np.empty((n_docs, width), dtype=np.int64)
        walk[:, 0] = rng.integers(0, states, size=n_docs)
        choice = np.searchsorted(cum, rng.random((n_docs, width - 1)), side="right")
        for j in range(1, width):
            walk[:, j] = succ[walk[:, j - 1], choice[:, j - 1]]
        docs = np.empty((n_docs, width + 1), dtype=np.int64)
        docs[:, 0] = eot
        docs[:, 1:] = ids[walk]
        keep = np.arange(width + 1)[None, :] <= lengths[:, None]  # EOT + `length` chain tokens per row
        out.append(docs[keep])  # row-major: the documents one after another
        have += int(keep.sum())
    return np.concatenate(out)[:n_tokens].astype(np.uint16)


def make_chain(rng: np.random.Generator, states: int = 512, branching: int = 4, vocab_size: int = VOCAB_SIZE):
    """A random sparse chain: ``states`` distinct token ids, each with ``branching`` successor states."""
    ids = rng.choice(vocab_size - 1, size=states, replace=False).astype(np.int64)  # never the last id
    succ = rng.integers(0, states, size=(states, branching))
    return ids, succ


def write_synthetic_shards(
    out_dir,
    train_tokens: int,
    val_tokens: int,
    vocab_size: int = VOCAB_SIZE,
    seed: int = 0,
    prefix: str = "synthetic",
    shard_tokens: int = SHARD_TOKENS,
    states: int = 512,
    branching: int = 4,
) -> tuple[str, str]:
    """Write ``<prefix>_val_000000.bin`` and ``<prefix>_train_%06d.bin`` shards (``shard_tokens`` each at
    most) from one chain; return the glob patterns ``(train_glob, val_glob)``. Deterministic in ``seed``.
    Documents start with ``<|endoftext|>`` (50256), or with ``vocab_size - 1`` for a smaller vocabulary."""
    if vocab_size > VOCAB_SIZE or vocab_size < 2:
        raise ValueError(f"vocab_size must be in [2, {VOCAB_SIZE}], got {vocab_size}")
    states = min(states, vocab_size - 1)
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    chain = make_chain(rng, states, branching, vocab_size)
    eot = min(EOT, vocab_size - 1)
    val = markov_tokens(val_tokens, rng, chain, eot=eot)
    write_shard(out / shard_name(prefix, "val", 0), val, vocab_size)
    left, i = train_tokens, 0
    while left > 0:
        n = min(left, shard_tokens)
        write_shard(out / shard_name(prefix, "train", i), markov_tokens(n, rng, chain, eot=eot), vocab_size)
        left -= n
        i += 1
    return str(out / f"{prefix}_train_*.bin"), str(out / f"{prefix}_val_*.bin")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m data.synthetic", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--train-tokens", type=int, default=2_000_000)
    ap.add_argument("--val-tokens", type=int, default=200_000)
    ap.add_argument("--shard-tokens", type=int, default=SHARD_TOKENS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--prefix", default="synthetic")
    a = ap.parse_args(argv)
    train, val = write_synthetic_shards(
        a.out, a.train_tokens, a.val_tokens, seed=a.seed, prefix=a.prefix, shard_tokens=a.shard_tokens
    )
    print(f"train: {train} ({a.train_tokens:,} tokens)\nval:   {val} ({a.val_tokens:,} tokens)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
