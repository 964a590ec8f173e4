"""The trainer end to end on CPU: every optimizer trains, resume equals an uninterrupted run, a 2-rank
torchrun run equals one process, non-finite losses stop the run, and the golden curves hold."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from helpers import torchrun
from helpers.trainer_utils import (
    OPTIMIZERS,
    REPO,
    Crash,
    compose_cfg,
    crash_after_checkpoint,
    read_metrics,
    small_run_overrides,
    write_test_shards,
)

import train
from harness import rundir


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_test_shards(tmp_path_factory.mktemp("synthetic"))


def run(tmp_dir, data_dir, optimizer, **kw):
    cfg = compose_cfg(small_run_overrides(tmp_dir, data_dir, optimizer, **kw))
    return train.train(cfg)


TRACK3_SMALL = {"model": "track3", "model.n_layer": 1, "model.n_head": 2, "model.head_dim": 16}


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_every_optimizer_trains(tmp_path, data_dir, optimizer):
    # the optimization track's tuned lrs are for its own GPT (a small one here); the others train the tiny GPT
    model = TRACK3_SMALL if optimizer.startswith("track3") else {}
    summary = run(tmp_path / "run", data_dir, optimizer, steps=8, **model)
    rec = read_metrics(tmp_path / "run")
    assert [r["step"] for r in rec] == list(range(1, 9))
    drop = 0.3 if model else 0.5  # the track's GPT starts from a zero head: slower in its first 8 steps
    assert rec[-1]["train_loss"] < rec[0]["train_loss"] - drop, [r["train_loss"] for r in rec]
    built = train.build_optimizer(compose_cfg([f"optimizer={optimizer}"]).optimizer, train.StandIn())
    passes = built.grad_evals_per_step
    # two-pass references skip the pass with nothing to feed: the last look-ahead / the first previous batch
    assert summary["grad_evals"] == (8 if passes == 1 else 15)
    assert summary["tokens"] == summary["grad_evals"] * 8 * 64
    assert (tmp_path / "run" / "summary.json").exists() and (tmp_path / "run" / "config.yaml").exists()
    log = (tmp_path / "run" / "train.log").read_text()
    assert log.startswith("git ") and '"torch"' in log and '"world_size": 1' in log


@pytest.mark.parametrize("optimizer", ["muon_mvr1", "muon_mvr2", "muon_mvr3", "gluon_mvr3", "adamw"])
def test_kill_and_resume_equals_uninterrupted(tmp_path, data_dir, optimizer):
    run(tmp_path / "straight", data_dir, optimizer, steps=7)
    straight = read_metrics(tmp_path / "straight")

    with crash_after_checkpoint(3), pytest.raises(Crash):
        run(tmp_path / "killed", data_dir, optimizer, steps=7)
    # one more record (step 4) may not have been written; resume must also drop stale ones
    run(tmp_path / "killed", data_dir, optimizer, steps=7)
    resumed = read_metrics(tmp_path / "killed")
    assert [r["step"] for r in resumed] == [r["step"] for r in straight]
    for a, b in zip(straight, resumed):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5, abs=1e-6)
        assert a["tokens"] == b["tokens"] and a["grad_evals"] == b["grad_evals"]
        if "val_loss" in a:
            assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5, abs=1e-6)
    assert "resumed from" in (tmp_path / "killed" / "train.log").read_text()


def test_resume_never_refuses_to_overwrite_a_checkpoint(tmp_path, data_dir):
    run(tmp_path / "r", data_dir, "muon_mvr1", steps=3)
    with pytest.raises(ValueError, match="already holds a checkpoint.*resume=auto"):
        run(tmp_path / "r", data_dir, "muon_mvr1", steps=3, resume="never")


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, data_dir, monkeypatch):
    real = train.accumulate_grad
    calls = {"n": 0}

    def poisoned(model, micro_batches, autocast):
        calls["n"] += 1
        loss = real(model, micro_batches, autocast)
        return loss * float("nan") if calls["n"] == 5 else loss

    monkeypatch.setattr(train, "accumulate_grad", poisoned)
    with pytest.raises(FloatingPointError, match="non-finite training loss .* step 5.*step_000003"):
        run(tmp_path / "nan", data_dir, "muon_mvr1", steps=7)
    assert (tmp_path / "nan" / "ckpt" / "LATEST").read_text() == "step_000003"


def _torchrun(args, cwd, nproc):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    cmd = torchrun(nproc, REPO / "train.py", *args)
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


@pytest.mark.dist
@pytest.mark.slow
# prev_batch: test_optim_dist; adamw: torch's own class, whose gradients the trainer averages (Replicated)
@pytest.mark.parametrize("optimizer", ["muon_mvr1", "gluon_mvr2", "adamw"])
def test_torchrun_two_ranks_equals_one_process(tmp_path, data_dir, optimizer):
    args = small_run_overrides(tmp_path / "one", data_dir, optimizer, steps=4)
    _torchrun(args, tmp_path, nproc=1)
    args2 = small_run_overrides(tmp_path / "two", data_dir, optimizer, steps=4)
    out = _torchrun(args2, tmp_path, nproc=2)
    assert out.stdout.count("step 4/4") == 1, "only rank 0 prints"
    one, two = read_metrics(tmp_path / "one"), read_metrics(tmp_path / "two")
    for a, b in zip(one, two, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["tokens"] == b["tokens"]
    assert one[-1]["val_loss"] == pytest.approx(two[-1]["val_loss"], rel=1e-4)
    assert '"world_size": 2' in (tmp_path / "two" / "train.log").read_text()


def test_cli_single_process(tmp_path, data_dir):
    args = small_run_overrides(tmp_path / "cli", data_dir, "gluon_mvr1", steps=2)
    out = subprocess.run([sys.executable, str(REPO / "train.py"), *args], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "step 2/2" in out.stdout and "tok/s" in out.stdout
    assert rundir.read_summary(tmp_path / "cli")["completed"] is True


GOLDEN = Path(__file__).parent / "golden"


def _golden_check(name, cfg, tmp_path):
    """The run's train losses equal the committed golden curve's first steps (a constant-lr schedule, so a
    shorter run is a prefix of a longer one)."""
    train.train(cfg)
    losses = [r["train_loss"] for r in read_metrics(cfg.run_dir)][:20]
    path = GOLDEN / f"{name}.json"
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps({"torch": torch.__version__, "losses": losses}, indent=1) + "\n")
    golden = json.loads(path.read_text())["losses"]
    assert len(losses) <= len(golden)
    assert losses == pytest.approx(golden[: len(losses)], abs=2e-3), \
        "set UPDATE_GOLDEN=1 only for an intended change"


@pytest.mark.slow
def test_golden_curve_synthetic(tmp_path, data_dir):
    cfg = compose_cfg(small_run_overrides(tmp_path / "g", data_dir, "muon_mvr1", steps=20))
    _golden_check("synthetic_muon_mvr1", cfg, tmp_path)


SHAKESPEARE = REPO / "data_cache" / "shakespeare"


@pytest.mark.slow
@pytest.mark.skipif(not any(SHAKESPEARE.glob("shakespeare_train_*.bin")),
                    reason="run `python -m data.shakespeare --out data_cache/shakespeare` (.ci/run does)")
def test_golden_curve_quickstart(tmp_path):
    cfg = compose_cfg(["experiment=quickstart", "optimizer=muon_mvr1", f"run_dir={tmp_path / 'q'}",
                       f"data.train_files={SHAKESPEARE}/shakespeare_train_*.bin",
                       f"data.val_files={SHAKESPEARE}/shakespeare_val_*.bin", "train.steps=10",
                       "train.warmdown_frac=0", "train.val_every=0", "train.ckpt_every=0",
                       "data.val_tokens=2048"])  # 10 of the golden 20 steps; validation is not compared
    _golden_check("quickstart_muon_mvr1", cfg, tmp_path)


@pytest.mark.slow
def test_hydra_multirun_sweeps_optimizers_and_seeds(tmp_path, data_dir):
    args = small_run_overrides(tmp_path / "unused", data_dir, "muon", steps=2)
    args = [a for a in args if not a.startswith(("optimizer=", "run_dir="))]
    out = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "-m", "optimizer=muon,gluon_mvr1", "seed=0,1",
         f"run_dir={tmp_path}/sweep/${{optimizer.name}}_s${{seed}}", *args],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert out.returncode == 0, out.stderr[-3000:]
    runs = sorted(p.name for p in (tmp_path / "sweep").iterdir())
    assert runs == ["gluon_mvr1_s0", "gluon_mvr1_s1", "muon_s0", "muon_s1"]
    for r in runs:
        assert rundir.read_summary(tmp_path / "sweep" / r)["completed"]


@pytest.mark.slow
def test_optuna_sweeper_tunes_the_learning_rate(tmp_path, data_dir):
    """The README's tuning example (optional extra `tune`): the Hydra entry returns the final validation
    loss, so the Optuna sweeper minimises it; each trial trains in its own run_dir (one per lr), and the
    best value it reports is the lowest final val_loss among the trials' summaries."""
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="pip install -e '.[tune]'")
    args = small_run_overrides(tmp_path / "unused", data_dir, "gluon_mvr1", steps=2)
    args = [a for a in args if not a.startswith("run_dir=")]
    out = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=3",
         "hydra.sweeper.direction=minimize", "hydra.sweeper.sampler.seed=0", f"hydra.sweep.dir={tmp_path}/mr",
         "optimizer.lr=tag(log,interval(1e-4,1e-2))", f"run_dir={tmp_path}/tune/lr${{optimizer.lr}}", *args],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), *sys.path])))  # the plugin's path too
    assert out.returncode == 0, out.stderr[-3000:]
    finals = {p.name: rundir.read_summary(p)["final_val_loss"]
              for p in (tmp_path / "tune").iterdir()}
    assert len(finals) == 3, finals
    best = yaml.safe_load((tmp_path / "mr" / "optimization_results.yaml").read_text())
    assert best["best_value"] == min(finals.values()), (best, finals)
    assert f"lr{best['best_params']['optimizer.lr']}" == min(finals, key=finals.get)


@pytest.mark.gpu
@pytest.mark.parametrize("optimizer", ["gluon_mvr1", "muon_mvr2"])
def test_trains_on_cuda_with_bf16_autocast(tmp_path, data_dir, optimizer):
    summary = run(tmp_path / "cuda", data_dir, optimizer, steps=6, device="cuda")
    rec = read_metrics(tmp_path / "cuda")
    assert rec[-1]["train_loss"] < rec[0]["train_loss"] and summary["completed"]
    assert "MFU" in (tmp_path / "cuda" / "train.log").read_text()
