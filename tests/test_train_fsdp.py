"""The trainer with sharding=fsdp2: it matches the replicated mode (1 process in-process; 2 torchrun
ranks over 20 steps for muon, muon_mvr1 and gluon_mvr1, two-pass), a crash after a checkpoint resumes
exactly through torch.distributed.checkpoint, and a checkpoint of the other mode is refused. kill -9 and
2 → 1 → 3 ranks under fsdp2: tests/test_faults.py."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from helpers import torchrun
from helpers.trainer_utils import (
    REPO,
    Crash,
    compose_cfg,
    crash_after_checkpoint,
    read_metrics,
    small_run_overrides,
    write_test_shards,
)

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
def test_fsdp2_two_ranks_match_replicated_two_ranks(tmp_path, data_dir):
    """muon, muon_mvr1 and gluon_mvr1 (two-pass), 20 steps on 2 gloo ranks, 4 micro-batches a step, in both
    modes (six runs in one torchrun launch): the losses agree to float tolerance (FSDP2 sums gradients in
    another order; training amplifies rounding a little)."""
    optimizers, modes = ("muon", "muon_mvr1", "gluon_mvr1"), ("replicated", "fsdp2")
    runs = {(o, m): tmp_path / f"{o}_{m}" for o in optimizers for m in modes}
    spec = tmp_path / "runs.json"
    spec.write_text(json.dumps([
        [*small_run_overrides(run_dir, data_dir, opt, steps=20, sharding=sharding, **{
            "batch.micro_seqs": 1, "train.val_every": 10, "train.ckpt_every": 10}), F32]
        for (opt, sharding), run_dir in runs.items()
    ]))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=f"{REPO}{os.pathsep}{REPO / 'tests'}")
    cmd = torchrun(2, REPO / "tests" / "helpers" / "train_many.py", spec)
    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    for optimizer in optimizers:
        fsdp2, replicated = (read_metrics(runs[optimizer, m]) for m in ("fsdp2", "replicated"))
        assert len(fsdp2) == 20
        assert_close(fsdp2, replicated, rel=1e-4)
        assert '"world_size": 2' in (runs[optimizer, "fsdp2"] / "train.log").read_text()
