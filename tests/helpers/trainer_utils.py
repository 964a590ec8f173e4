"""Helpers shared by the trainer tests: compose a config the way `python train.py ...` does, run it."""

from __future__ import annotations

import contextlib
from pathlib import Path

from harness import rundir
from harness.config import compose_config
from harness.rundir import read_metrics  # noqa: F401  (the trainer tests read runs the way the scripts do)

REPO = Path(__file__).resolve().parents[2]
OPTIMIZERS = rundir.optimizer_names()


def compose_cfg(overrides: list[str]):
    return compose_config(overrides)


VOCAB = 512


class Crash(RuntimeError):
    """A simulated kill of the training process (raised by crash_after_checkpoint)."""


@contextlib.contextmanager
def crash_after_checkpoint(step: int):
    """Inside the block, Checkpointer.save raises Crash right after it wrote the checkpoint of
    `step`: the state a kill at that moment leaves behind."""
    from harness.checkpoint import Checkpointer

    real_save = Checkpointer.save

    def save_then_crash(self, saved_step, *a, **k):
        real_save(self, saved_step, *a, **k)
        if saved_step == step:
            raise Crash(f"simulated kill right after the step-{step} checkpoint")

    Checkpointer.save = save_then_crash
    try:
        yield
    finally:
        Checkpointer.save = real_save


def write_test_shards(out: Path) -> Path:
    from data.synthetic import write_synthetic_shards

    write_synthetic_shards(out, train_tokens=200_000, val_tokens=20_000, vocab_size=VOCAB, seed=0)
    return out


def small_run_overrides(run_dir: Path, data_dir: Path, optimizer: str, steps: int = 6, **extra) -> list[str]:
    """A seconds-long CPU run: tiny GPT with a 512-token vocabulary (data from `write_test_shards`),
    64-token sequences, 8 sequences a step in 2 micro-batches."""
    o = dict(
        optimizer=optimizer, run_dir=str(run_dir), **{
            "data.train_files": str(data_dir / "synthetic_train_*.bin"),
            "data.val_files": str(data_dir / "synthetic_val_*.bin"),
            "model.vocab_size": VOCAB, "data.val_tokens": 2048, "data.seq_len": 64,
            "batch.global_seqs": 8, "batch.micro_seqs": 4,
            "train.steps": steps, "train.val_every": 3, "train.ckpt_every": 3, "train.log_every": 1,
            "device": "cpu",  # gloo tests on a GPU box must not pick CUDA (one GPU, two ranks)
        })
    o.update(extra)
    return [f"{k}={v}" for k, v in o.items()]
