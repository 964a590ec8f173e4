"""rundir.py, the run-directory contract every writer and reader shares: metrics.jsonl survives a cut-short
last line (warned, repairable) but not a damaged middle line; summary.json is written atomically;
completion() gives the reason a run is unfinished; the configs/ facts (optimizers, labels, figure
experiments, batches) match the YAML and what Hydra composes."""

from __future__ import annotations

import json
import os
import re
import warnings

import pytest

from harness import rundir

RECORDS = [dict(step=s, train_loss=6.0 - s / 10, tokens=64 * s) for s in range(1, 6)]
RECORDS[-1]["val_loss"] = 5.25


def write_lines(run_dir, text: str):
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / rundir.METRICS).write_text(text)
    return run_dir / rundir.METRICS


def full_run(run_dir, steps=5, **summary):
    run_dir.mkdir(parents=True, exist_ok=True)
    for rec in RECORDS[:steps]:
        rundir.append_metrics(run_dir, rec)
    rundir.write_summary(run_dir, {"completed": True, "steps": steps, **summary})
    return run_dir


def test_file_names_and_run_name():
    assert (rundir.METRICS, rundir.SUMMARY, rundir.CONFIG, rundir.CKPT, rundir.LOG) == (
        "metrics.jsonl", "summary.json", "config.yaml", "ckpt", "train.log")
    assert rundir.run_name("gluon_mvr1", 512, 0) == "gluon_mvr1_b512_s0"
    assert rundir.run_name("muon", 16, 2) == "muon_b16_s2"
    with pytest.raises(ValueError, match=r"'a/b' must be .* without '/'"):
        rundir.run_name("a/b", 16, 0)


def test_append_then_read_round_trips(tmp_path):
    assert rundir.read_metrics(tmp_path) == [] and rundir.last_record(tmp_path) is None
    for rec in RECORDS:
        rundir.append_metrics(tmp_path, rec)
    text = (tmp_path / rundir.METRICS).read_text()
    assert text == "".join(json.dumps(r) + "\n" for r in RECORDS)  # one line per record, flushed
    assert rundir.read_metrics(tmp_path) == RECORDS
    assert rundir.last_record(tmp_path) == RECORDS[-1]


def test_a_cut_short_last_line_is_dropped_with_a_warning_and_repair_rewrites(tmp_path):
    good = "".join(json.dumps(r) + "\n" for r in RECORDS[:3])
    path = write_lines(tmp_path, good + '{"step": 4, "train_lo')  # power loss mid-write
    with pytest.warns(UserWarning, match=rf"{re.escape(str(path))}: line 4 .*cut short.*dropped"):
        assert rundir.read_metrics(tmp_path) == RECORDS[:3]
    assert path.read_text().endswith('"train_lo')  # not repaired unless asked
    assert rundir.last_record(tmp_path) == RECORDS[2]  # the cheap reader skips it too
    with pytest.raises(ValueError, match="ends in a cut-short line.*repair=True"):
        rundir.append_metrics(tmp_path, RECORDS[3])  # would glue two records into one line
    with pytest.warns(UserWarning, match="line 4"):
        assert rundir.read_metrics(tmp_path, repair=True) == RECORDS[:3]
    assert path.read_text() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == [rundir.METRICS]  # no temporary file left
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert rundir.read_metrics(tmp_path) == RECORDS[:3]  # clean now
        rundir.append_metrics(tmp_path, RECORDS[3])
    assert rundir.read_metrics(tmp_path) == RECORDS[:4]


def test_a_corrupt_line_that_is_not_the_last_is_an_error_naming_file_and_line(tmp_path):
    lines = [json.dumps(r) for r in RECORDS]
    lines[1] = lines[1][:20]
    path = write_lines(tmp_path, "\n".join(lines) + "\n")
    where = re.escape(str(path))
    with pytest.raises(ValueError, match=rf"{where}: line 2 is not a JSON record .*fix or delete line 2"):
        rundir.read_metrics(tmp_path)
    with pytest.raises(ValueError, match="line 2"):
        rundir.truncate_metrics(tmp_path, 3)
    # a JSON value that is not an object is no record either
    write_lines(tmp_path, "[1, 2]\n" + json.dumps(RECORDS[0]) + "\n")
    with pytest.raises(ValueError, match="line 1 .*not an object"):
        rundir.read_metrics(tmp_path)


def test_last_record_reads_only_the_end_yet_finds_long_lines(tmp_path):
    big = [dict(step=s, pad="x" * 5000) for s in range(1, 40)]
    write_lines(tmp_path, "".join(json.dumps(r) + "\n" for r in big) + '{"step": 40, "pad": "xx')
    assert rundir.last_record(tmp_path) == big[-1]
    write_lines(tmp_path, '{"step": 1, "pad')  # nothing complete at all
    assert rundir.last_record(tmp_path) is None


def test_truncate_keeps_steps_up_to_the_checkpoint_atomically(tmp_path):
    rundir.truncate_metrics(tmp_path, 3)  # no file: nothing to do
    assert not (tmp_path / rundir.METRICS).exists()
    path = write_lines(tmp_path, "".join(json.dumps(r) + "\n" for r in RECORDS) + '{"step": 6, "tra')
    with pytest.warns(UserWarning, match=rf"{re.escape(str(path))}: line 6"):
        rundir.truncate_metrics(tmp_path, 3)
    assert path.read_text() == "".join(json.dumps(r) + "\n" for r in RECORDS[:3])
    assert sorted(p.name for p in tmp_path.iterdir()) == [rundir.METRICS]
    rundir.truncate_metrics(tmp_path, 0)
    assert path.read_text() == "" and rundir.read_metrics(tmp_path) == []


def test_summary_is_written_atomically(tmp_path, monkeypatch):
    assert rundir.read_summary(tmp_path) is None
    rundir.write_summary(tmp_path, {"completed": True, "steps": 5})
    text = (tmp_path / rundir.SUMMARY).read_text()
    assert text == json.dumps({"completed": True, "steps": 5}, indent=2) + "\n"
    assert rundir.read_summary(tmp_path) == {"completed": True, "steps": 5}

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        rundir.write_summary(tmp_path, {"completed": False})
    monkeypatch.undo()
    assert (tmp_path / rundir.SUMMARY).read_text() == text  # the old summary is whole
    assert sorted(p.name for p in tmp_path.iterdir()) == [rundir.SUMMARY]  # and no temporary file
    (tmp_path / rundir.SUMMARY).write_text('{"completed": tr')
    where = re.escape(str(tmp_path / rundir.SUMMARY))
    with pytest.raises(ValueError, match=rf"{where} is not valid JSON.*delete it"):
        rundir.read_summary(tmp_path)


def test_read_config(tmp_path):
    assert rundir.read_config(tmp_path) is None
    (tmp_path / rundir.CONFIG).write_text("optimizer:\n  name: muon\n  lr: 1e-3\nseed: 2\n")
    assert rundir.read_config(tmp_path) == {"optimizer": {"name": "muon", "lr": 1e-3}, "seed": 2}


def test_completion_and_its_reasons(tmp_path):
    d = full_run(tmp_path / "ok")
    assert rundir.completion(d) == (True, "") and rundir.completion(d, 5) == (True, "")
    assert rundir.completion(d, 6) == (False, "metrics.jsonl stops at step 5 of 6")

    def case(name, records=RECORDS, summary=None, text=None):
        run = tmp_path / name
        run.mkdir()
        if text is not None:
            (run / rundir.METRICS).write_text(text)
        elif records is not None:
            (run / rundir.METRICS).write_text("".join(json.dumps(r) + "\n" for r in records))
        if summary is not None:
            rundir.write_summary(run, summary)
        return rundir.completion(run, 5)

    done = {"completed": True, "steps": 5}
    assert case("none", records=None, summary=done) == (False, "metrics.jsonl is missing")
    assert case("empty", text="", summary=done) == (False, "metrics.jsonl is empty")
    assert case("gap", [RECORDS[0], *RECORDS[2:]], done) == (
        False, "metrics.jsonl steps are not 1, 2, 3, ...: record 2 has step 3")
    assert case("short", RECORDS[:3], done) == (False, "metrics.jsonl stops at step 3 of 5")
    assert case("noval", [*RECORDS[:4], dict(step=5)], done) == (
        False, "step 5 (the last in metrics.jsonl) has no val_loss")
    assert case("nosummary") == (False, "summary.json is missing")
    assert case("notdone", summary={"completed": False, "steps": 5}) == (
        False, "summary.json does not say completed")
    assert case("mismatch", summary={"completed": True, "steps": 7}) == (
        False, "summary.json says steps=7 but metrics.jsonl ends at step 5")
    ok, why = case("corrupt", text='{"step": 1}\n{"st\n{"step": 3}\n', summary=done)
    assert not ok and "line 2 is not a JSON record" in why
    with pytest.warns(UserWarning, match="line 6"):  # a cut-short line after the last step does no harm
        assert case("tail", text="".join(json.dumps(r) + "\n" for r in RECORDS) + '{"st', summary=done) == (
            True, "")


LABELS = {"adamw": "AdamW", "muon": "Muon", "muon_mvr1": "MuonMVR (MVR1)", "muon_mvr2": "MuonMVR (MVR2)",
          "muon_mvr3": "MuonMVR (MVR3)", "gluon": "Gluon", "gluon_mvr1": "Gluon-MVR-1",
          "gluon_mvr2": "Gluon-MVR-2", "gluon_mvr3": "Gluon-MVR-3", "gluon_mvr3_b": "Gluon-MVR-3 (B)",
          "gluon_mvr3_c": "Gluon-MVR-3 (C)", "track3_muon": "Muon (track #36)",
          "gluon_constrained": "Gluon (constrained)"}


def test_optimizers_and_their_labels():
    assert rundir.optimizer_names() == sorted(LABELS)
    for name, label in LABELS.items():
        cfg = rundir.optimizer_config(name)
        assert cfg["label"] == label
        assert rundir.optimizer_label(name) == label
    assert rundir.optimizer_config("gluon_mvr3")["lr"] == 3.6e-4
    with pytest.raises(ValueError, match=r"unknown optimizer 'sgd': .*sgd\.yaml does not exist; "
                                         r"choose one of adamw, gluon, .*muon_mvr3"):
        rundir.optimizer_config("sgd")
    assert rundir.optimizer_label("renamed_since") == "renamed_since"


def test_paper_figures_and_their_batches():
    assert rundir.PAPER_FIGURES == ("fig1", "fig2", "fig3", "fig4", "muon_mvr")
    assert rundir.experiment_batch("fig1") == 512  # override /batch: b512
    assert rundir.experiment_batch("fig2") == 128  # override /batch: b128
    assert rundir.experiment_batch("quickstart") == 16  # b128, but it sets batch.global_seqs itself
    assert rundir.experiment_config("fig4")["figure"]["optimizers"] == ["gluon", "gluon_mvr3"]
    with pytest.raises(ValueError, match="unknown experiment 'fig9'.*choose one of fig1, fig2"):
        rundir.experiment_batch("fig9")


def test_experiment_batch_agrees_with_hydra():
    from helpers.trainer_utils import compose_cfg

    for name in [*rundir.PAPER_FIGURES, "quickstart"]:
        assert rundir.experiment_batch(name) == compose_cfg([f"experiment={name}"]).batch.global_seqs, name
