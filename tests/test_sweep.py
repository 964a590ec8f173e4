"""scripts/sweep.py and the launcher under it (study/figures.py, study/launch.py, study/cli.py): the plan
(figure.optimizers expanded, shared runs deduplicated, batches scaled), the commands it prints, run states,
and, through the real train.py on CPU, that it skips completed runs, resumes an interrupted one, and names a
failed one in a non-zero exit. An experiment config a user adds joins no default plan."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import sys

import pytest
from helpers.trainer_utils import (
    Crash,
    compose_cfg,
    crash_after_checkpoint,
    read_metrics,
    small_run_overrides,
    write_test_shards,
)

from harness import rundir
from scripts import sweep
from study import figures, launch

STEPS = 4


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_test_shards(tmp_path_factory.mktemp("synthetic"))


def extras(data_dir, steps=STEPS, **kw) -> list[str]:
    """The seconds-long CPU run of the trainer tests, under a figure experiment (which asks for GPT-124M)."""
    kw = {"train.val_every": 2, "train.ckpt_every": 2, **kw}
    o = small_run_overrides("unused", data_dir, "unused", steps, **kw)
    return ["model=tiny", "data=synthetic"] + [x for x in o if launch.override_key(x) not in ("optimizer",
                                                                                                  "run_dir")]


def test_dry_run_prints_the_deduplicated_commands(tmp_path, data_dir, capsys):
    results = tmp_path / "results"
    ex = extras(data_dir)
    args = ["--experiments", "fig1", "fig2", "fig3", "fig4", "--seeds", "0", "1", "--results", str(results),
            "--large-batch", "16", "--small-batch", "4"]
    assert sweep.main([*args, "--dry-run", "--", *ex]) == 0
    out = capsys.readouterr().out
    commands = [shlex.split(ln.split("&&", 1)[1]) for ln in out.splitlines() if "&& " in ln]
    expected = []
    for exp, opt, b in [("fig1", "gluon", 16), ("fig1", "gluon_mvr1", 16), ("fig2", "gluon", 4),
                        ("fig2", "gluon_mvr1", 4), ("fig3", "gluon_mvr2", 16), ("fig4", "gluon_mvr3", 16)]:
        for seed in (0, 1):
            expected.append([sys.executable, "train.py", f"experiment={exp}", f"optimizer={opt}",
                             f"seed={seed}", *ex, f"batch.global_seqs={b}",
                             f"run_dir={results}/{opt}_b{b}_s{seed}"])
    assert commands == expected  # Gluon at B=16 (figs. 1, 3 and 4) runs once per seed
    assert "12 runs known now (0 done, 0 diverged, 0 resume, 12 new)" in out
    assert f"[0] new      gluon B=16 seed=0 (fig1/fig3/fig4) -> {results}/gluon_b16_s0" in out
    assert not results.exists()  # a dry run launches and creates nothing

    # torchrun for several processes; --print-commands and --count for a scheduler
    assert sweep.main([*args, "--nproc", "2", "--print-commands", "--", *ex]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 12
    assert shlex.split(lines[0].split("&&", 1)[1])[:6] == [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "train.py"]
    assert sweep.main([*args, "--count", "--", *ex]) == 0
    assert capsys.readouterr().out.strip() == "12"

    # without --large-batch the experiments' own batch (b512 -> 512 sequences) names the run
    unscaled = [x for x in ex if not x.startswith("batch.global_seqs")]
    with launch.Composer() as composer:
        runs = figures.plan(["muon_mvr"], [3], None, results, unscaled, {}, composer)
        assert [r.run_dir.name for r in runs] == ["muon_b512_s3", "muon_mvr1_b512_s3", "muon_mvr2_b512_s3",
                                                  "muon_mvr3_b512_s3"]
        with pytest.raises(ValueError, match=r"sets \['seed'\] itself"):
            figures.plan(["fig1"], [0], None, results, [*ex, "seed=3"], {}, composer)
    assert sweep.main([*args, "--dry-run", "--", *ex, "seed=3"]) == 2


def test_an_added_experiment_joins_no_default_plan(tmp_path, monkeypatch):
    """A configs/experiment/<mine>.yaml with a figure of its own: the default plan stays the papers'."""
    mine = rundir.CONFIGS / "experiment" / "zz_mine_test.yaml"
    mine.write_text("# @package _global_\nfigure:\n  name: zz_mine_test\n  title: mine\n"
                    "  optimizers: [muon, muon_mvr1]\n")
    try:
        assert sweep.parse_args([]).experiments == list(rundir.PAPER_FIGURES)
    finally:
        mine.unlink()


def test_defaults_and_run_states_follow_rundir(tmp_path):
    assert sweep.parse_args([]).experiments == list(rundir.PAPER_FIGURES)
    d = tmp_path / rundir.run_name("gluon", 8, 0)
    run = launch.Run(run_dir=d, overrides=[], steps=3)
    launch.state(run)
    assert (run.status, run.detail) == ("new", "")
    d.mkdir()
    for step in (1, 2):
        rundir.append_metrics(d, {"step": step, "train_loss": 5.0})
    launch.state(run)
    assert (run.status, run.detail) == ("new", "stale metrics, no checkpoint: starts over")
    (d / rundir.CKPT).mkdir()
    (d / rundir.CKPT / "LATEST").write_text("step_000002\n")
    launch.state(run)
    assert (run.status, run.detail) == ("resume", "from step_000002, metrics at step 2")
    rundir.write_summary(d, {"completed": False, "status": rundir.STATUS_DIVERGED, "error": "nan at step 3"})
    launch.state(run)
    assert (run.status, run.detail) == ("diverged", "nan at step 3")
    (d / rundir.SUMMARY).unlink()
    rundir.append_metrics(d, {"step": 3, "train_loss": 4.0, "val_loss": 4.5})
    rundir.write_summary(d, {"completed": True, "steps": 3})
    launch.state(run)
    assert run.status == "done" and rundir.completion(d, 3) == (True, "")
    shutil.rmtree(d / rundir.CKPT)
    rundir.truncate_metrics(d, 2)  # a summary without the metrics to match and nothing to resume from
    with pytest.raises(launch.LaunchError, match=r"has summary.json but metrics.jsonl stops at step 2 of 3 "
                                                 r"and no checkpoint"):
        launch.state(run)


@pytest.mark.slow
def test_skips_completed_runs_and_resumes_an_interrupted_one(tmp_path, data_dir, capsys):
    import train

    results = tmp_path / "results"
    ex = extras(data_dir)
    args = ["--experiments", "fig1", "fig3", "--optimizers", "gluon", "--seeds", "0", "1", "--results",
            str(results), "--parallel", "2", "--progress-every", "0"]
    # seed 0 is interrupted after its step-2 checkpoint, exactly as the sweep would have launched it
    with launch.Composer() as composer:
        run0 = figures.plan(["fig1"], [0], ["gluon"], results, ex, {}, composer)[0]
    with crash_after_checkpoint(2), pytest.raises(Crash):
        train.train(compose_cfg(run0.overrides))
    d0, d1 = results / "gluon_b8_s0", results / "gluon_b8_s1"
    assert [r["step"] for r in read_metrics(d0)] == [1, 2] and not (d0 / "summary.json").exists()

    assert sweep.main([*args, "--", *ex]) == 0
    out = capsys.readouterr().out
    assert "2 runs known now (0 done, 0 diverged, 1 resume, 1 new)" in out
    assert "start [0] gluon B=8 seed=0 (fig1/fig3)" in out and "(resume from step_000002" in out
    assert "finished the 2 run(s) launched" in out
    for d in (d0, d1):
        assert [r["step"] for r in read_metrics(d)] == list(range(1, STEPS + 1))
        assert json.loads((d / "summary.json").read_text())["completed"] is True
        assert "figure:\n  name: fig1" in (d / "config.yaml").read_text()  # launched once, under fig1
    assert f"resumed from {d0}/ckpt/step_000002 at step 2" in (d0 / "train.log").read_text()
    assert "resumed" not in (d1 / "train.log").read_text()

    # a second sweep launches nothing
    stamps = {p: p.stat().st_mtime_ns for d in (d0, d1) for p in d.iterdir() if p.is_file()}
    assert sweep.main([*args, "--", *ex]) == 0
    out = capsys.readouterr().out
    assert "2 runs known now (2 done, 0 diverged, 0 resume, 0 new)" in out and "start [" not in out
    assert stamps == {p: p.stat().st_mtime_ns for d in (d0, d1) for p in d.iterdir() if p.is_file()}

    # a run whose summary is gone, or whose metrics stop short, is resumed from its checkpoint, not skipped
    summary1, metrics0 = (d1 / "summary.json").read_text(), (d0 / "metrics.jsonl").read_text()
    (d1 / "summary.json").unlink()
    (d0 / "metrics.jsonl").write_text("".join(metrics0.splitlines(keepends=True)[:3]))
    assert sweep.main([*args, "--dry-run", "--", *ex]) == 0
    out = capsys.readouterr().out
    assert "[0] resume   gluon B=8 seed=0" in out and "metrics at step 3" in out
    assert "[1] resume   gluon B=8 seed=1" in out

    # the same directory planned with another config is refused, not resumed into a different run
    assert sweep.main([*args, "--", *extras(data_dir, steps=6)]) == 2
    assert re.search(r"different config .* train\.steps: 4 -> 6", capsys.readouterr().err)

    # --drop-ckpt: completed runs lose their checkpoints and stay complete
    (d1 / "summary.json").write_text(summary1)
    (d0 / "metrics.jsonl").write_text(metrics0)
    assert sweep.main([*args, "--drop-ckpt", "--", *ex]) == 0
    assert not (d0 / "ckpt").exists() and not (d1 / "ckpt").exists()
    assert sweep.main([*args, "--dry-run", "--", *ex]) == 0
    assert "2 runs known now (2 done, 0 diverged, 0 resume, 0 new)" in capsys.readouterr().out


@pytest.mark.slow
def test_a_failed_run_exits_nonzero_and_is_named(tmp_path, data_dir, capsys):
    results = tmp_path / "results"
    ex = [x for x in extras(data_dir) if not x.startswith("data.train_files")]
    ex += [f"data.train_files={tmp_path}/nowhere/*.bin", "data.name=elsewhere"]  # not written on demand
    rc = sweep.main(["--experiments", "fig2", "--optimizers", "gluon_mvr1", "--results", str(results),
                     "--progress-every", "0", "--", *ex])
    out = capsys.readouterr().out
    assert rc == 1
    assert "FAIL  [0] gluon_mvr1 B=8 seed=0 (fig2): exit code 2" in out  # refused: missing data
    assert "1 run(s) FAILED" in out and "gluon_mvr1_b8_s0/launcher.out" in out
    assert "no train shard files match" in (results / "gluon_mvr1_b8_s0" / "launcher.out").read_text()
