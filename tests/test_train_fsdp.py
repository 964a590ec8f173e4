"""The trainer with sharding=fsdp2: it matches the replicated mode (1 process in-process; 2 torchrun
ranks over 20 steps for muon, muon_mvr1 and gluon_mvr1, two-pass), a crash after a checkpoint resumes
exactly through torch.distributed.checkpoint, and a checkpoint of the other mode is refused. kill -9 and
2 → 1 → 3 ranks under fsdp2: tests/test_faults.py."""

from __future__ import annotations

import pytest
from helpers.trainer_utils import (
    Crash,
    compose_cfg,
    crash_after_checkpoint,
    read_metrics,
    small_run_overrides,
    write_test_shards,
)
from test_train import _torchrun

import train

F32 = "+optimizer.ns_dtype=float32"  # Newton–Schulz in float32: the modes then agree to float rounding


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_test_shards(tmp_path_factory.mktemp("synthetic"))


def run(run_dir, data_dir, optimizer, sharding, steps=6, extra=()):
    overrides = small_run_overrides(run_dir, data_dir, optimizer, steps=steps, sharding=sharding)
    return train.train(compose_cfg([*overrides, F32, *extra]))


def assert_close(a: list[dict], b: list[dict], rel: float) -> None:
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for x, y in zip(a, b):
        assert x["train_loss"] == pytest.approx(y["train_loss"], rel=rel), (x, y)
        assert x["tokens"] == y["tokens"] and x["grad_evals"] == y["grad_evals"]
        if "val_loss" in x:
            assert x["val_loss"] == pytest.approx(y["val_loss"], rel=rel)


def test_fsdp2_in_one_process_matches_replicated_and_resumes_exactly(tmp_path, data_dir):
    """gluon_mvr1 (two passes a step): fsdp2 ≈ replicated; crashed after the step-3 checkpoint and rerun, the
    fsdp2 run equals its uninterrupted self; the checkpoint is a DCP folder plus model.pt and state.pt."""
    run(tmp_path / "replicated", data_dir, "gluon_mvr1", "replicated")
    run(tmp_path / "fsdp2", data_dir, "gluon_mvr1", "fsdp2")
    straight = read_metrics(tmp_path / "fsdp2")
    assert_close(straight, read_metrics(tmp_path / "replicated"), rel=1e-5)
    log = (tmp_path / "fsdp2" / "train.log").read_text()
    assert "sharding fsdp2" in log
    with crash_after_checkpoint(3), pytest.raises(Crash):
        run(tmp_path / "killed", data_dir, "gluon_mvr1", "fsdp2")
    saved = tmp_path / "killed" / "ckpt" / "step_000003"
    assert sorted(p.name for p in saved.iterdir()) == ["dcp", "model.pt", "state.pt"]
    run(tmp_path / "killed", data_dir, "gluon_mvr1", "fsdp2")
    resumed = read_metrics(tmp_path / "killed")
    assert [r["train_loss"] for r in resumed] == [r["train_loss"] for r in straight]
    assert "resumed from" in (tmp_path / "killed" / "train.log").read_text()


def test_a_checkpoint_of_the_other_mode_is_refused(tmp_path, data_dir):
    run(tmp_path / "r", data_dir, "muon_mvr1", "replicated", steps=3)
    with pytest.raises(train.ConfigError, match=r"sharding: 'replicated' → 'fsdp2'"):
        run(tmp_path / "r", data_dir, "muon_mvr1", "fsdp2", steps=6)


@pytest.mark.dist
@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["muon", "muon_mvr1", "gluon_mvr1"])
def test_fsdp2_two_ranks_match_replicated_two_ranks(tmp_path, data_dir, optimizer):
    """20 steps on 2 gloo ranks, 4 micro-batches a step: the losses of the two modes agree to float
    tolerance (FSDP2 sums gradients in another order; training amplifies rounding a little)."""
    curves = {}
    for sharding in ("replicated", "fsdp2"):
        args = small_run_overrides(tmp_path / sharding, data_dir, optimizer, steps=20, sharding=sharding,
                                   **{"batch.micro_seqs": 1, "train.val_every": 10, "train.ckpt_every": 10})
        _torchrun([*args, F32], tmp_path, nproc=2)
        curves[sharding] = read_metrics(tmp_path / sharding)
    assert_close(curves["fsdp2"], curves["replicated"], rel=1e-4)
