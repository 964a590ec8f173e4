"""Synthetic Markov-chain shards: valid, deterministic, structured enough that a tiny model learns fast."""

import numpy as np
import torch

from data import synthetic
from data.loader import TrainLoader, ValLoader
from data.shards import EOT, find_shards, read_shard
from data.synthetic import write_synthetic_shards


def test_shards_valid_deterministic_and_sparse(tmp_path):
    train, val = write_synthetic_shards(tmp_path / "a", 30_000, 5_000, seed=3, shard_tokens=12_000)
    assert [p.name for p in find_shards(train)] == [f"synthetic_train_{i:06d}.bin" for i in range(3)]
    toks = np.concatenate([read_shard(p) for p in find_shards(train)])
    assert len(toks) == 30_000 and len(read_shard(find_shards(val)[0])) == 5_000
    assert toks[0] == EOT and (toks == EOT).sum() > 30_000 // 1024
    again, _ = write_synthetic_shards(tmp_path / "b", 30_000, 5_000, seed=3, shard_tokens=12_000)
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(find_shards(train), find_shards(again)))
    other, _ = write_synthetic_shards(tmp_path / "c", 30_000, 5_000, seed=4, shard_tokens=12_000)
    assert not np.array_equal(read_shard(find_shards(other)[0]), toks[:12_000])
    # sparse transitions: each token is followed by at most `branching` (4) distinct tokens (or EOT)
    prev, nxt = toks[:-1], toks[1:]
    keep = (prev != EOT) & (nxt != EOT)
    pairs = np.unique(prev[keep].astype(np.int64) * 65536 + nxt[keep])
    assert np.bincount(np.unique(pairs // 65536, return_inverse=True)[1]).max() <= 4
    assert len(np.unique(toks)) <= 513


def test_cli(tmp_path, capsys):
    assert synthetic.main(["--out", str(tmp_path), "--train-tokens", "4000", "--val-tokens", "1000"]) == 0
    assert "4,000 tokens" in capsys.readouterr().out
    assert len(read_shard(tmp_path / "synthetic_train_000000.bin")) == 4000
    assert len(read_shard(tmp_path / "synthetic_val_000000.bin")) == 1000


def test_tiny_model_loss_falls_within_a_few_steps(tmp_path):
    torch.manual_seed(0)
    vocab = 1024  # a small vocabulary keeps this fast; the chain is the same kind as with GPT-2's
    train, val = write_synthetic_shards(tmp_path, 40_000, 2_100, vocab_size=vocab)
    loader = TrainLoader(train, 32, 8, 8, vocab_size=vocab)
    model = torch.nn.Sequential(torch.nn.Embedding(vocab, 16), torch.nn.Linear(16, vocab))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)

    def val_loss():
        with torch.no_grad():
            return np.mean([torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten()).item()
                            for x, y in ValLoader(val, 32, 2048, 8, vocab_size=vocab)])

    before = val_loss()
    for step in range(20):
        (x, y), = loader.batch(step)
        loss = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = val_loss()
    assert before > 6.5 and after < before - 2, (before, after)  # ln(1024) = 6.93
