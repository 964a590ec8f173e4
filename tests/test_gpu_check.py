"""scripts/gpu_check.py: the table (numbers, "–" for keys a summary lacks, the ratio to muon), a failed run
as a row carrying its error's last line and a non-zero exit, and the whole --smoke check through the real
train.py on the CPU (one row per run, every run completed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from harness import rundir
from scripts import gpu_check
from study import launch

REPO = gpu_check.REPO
DASH = gpu_check.MISSING


def cells(line: str) -> list[str]:
    """The cells of one markdown table line (no escaped pipes in the rows these tests make)."""
    return [c.strip() for c in line.strip().strip("|").split("|")]


def table_rows(text: str) -> list[list[str]]:
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    assert cells(lines[0]) == list(gpu_check.COLUMNS)
    return [cells(ln) for ln in lines[2:]]


def row(name: str, ok: bool = True, error: str | None = None, **summary) -> gpu_check.Row:
    return gpu_check.Row(name, f"/runs/{name}", "python train.py", ok=ok, error=error, summary=summary)


FULL = dict(completed=True, steps=12, median_step_ms=1104.26, data_tokens_per_s=474_829.3,
            processed_tokens_per_s=474_829.3, mfu=0.41372, peak_mem_gib=31.26, device="NVIDIA H100 80GB HBM3",
            world_size=1, micro_seqs=16, compile=True)


# ----------------------------------------------------------------------------- the table
def test_table_shows_the_numbers_dashes_for_missing_keys_and_the_ratio_to_muon():
    two_pass = dict(FULL, median_step_ms=2208.5, data_tokens_per_s=237_414.6, mfu=0.4, peak_mem_gib=40.0,
                    world_size=8, micro_seqs=64, compile=False)
    rows = [row("muon", **FULL), row("gluon_mvr1", **two_pass),
            row("gluon", completed=True)]  # a summary from before the timing keys: every number is "–"
    gpu_check.set_baseline_ratios(rows)
    got = table_rows(gpu_check.format_table(rows))
    assert got == [
        ["muon", "1,104.3", "474,829", "474,829", "41.4%", "31.3", "1.00", "micro 16, compile", "ok"],
        ["gluon_mvr1", "2,208.5", "237,415", "474,829", "40.0%", "40.0", "0.50", "micro 64 x8 ranks, eager",
         "ok"],
        ["gluon", DASH, DASH, DASH, DASH, DASH, DASH, "", "ok"],
    ]


def test_null_numbers_and_a_failed_baseline_print_dashes():
    cpu = dict(FULL, mfu=None, peak_mem_gib=None, device="cpu")  # what train.py writes on a CPU
    rows = [row("muon", ok=False, error="RuntimeError: boom"), row("gluon", **cpu)]
    gpu_check.set_baseline_ratios(rows)
    muon, gluon = table_rows(gpu_check.format_table(rows))
    assert muon[1:8] == [DASH] * 6 + [""] and muon[8] == "FAILED: RuntimeError: boom"
    assert gluon[4] == DASH and gluon[5] == DASH and gluon[6] == DASH  # MFU, peak GiB, vs muon
    assert gluon[1] == "1,104.3"


def test_eager_memory_target_fails_the_eager_run_only():
    over = dict(FULL, peak_mem_gib=41.5)
    rows = [row("eager64", **over), row("muon", **over), row("eager64", **dict(FULL, peak_mem_gib=None))]
    gpu_check.check_memory_target(rows)
    assert not rows[0].ok and "41.5 GiB: not under the 40 GiB target" in rows[0].error
    assert rows[1].ok and rows[2].ok  # other runs, and a run without a GPU peak, are not judged
    under = [row("eager64", **dict(FULL, peak_mem_gib=25.0))]
    gpu_check.check_memory_target(under)
    assert under[0].ok


def test_error_cells_stay_on_one_line_and_escape_pipes():
    msg = "ValueError: a | b\n  second line " + "x" * 400
    table = gpu_check.format_table([row("fig1", ok=False, error=msg)])
    last = table.splitlines()[-1]
    assert len(table.splitlines()) == 3
    assert "a \\| b second line" in last and last.endswith("... |") and len(last) < 400


def test_report_header_names_date_device_torch_and_git():
    info = dict(date="2025-01-01 12:00 UTC", device="NVIDIA H100 80GB HBM3", torch="2.6.0",
                git="abc123-dirty", smoke=False, nproc=1, steps=12, out="/runs/gpu_check/x")
    tests = dict(ok=True, result="4 passed, 600 deselected in 41.20s", error=None)
    text = gpu_check.format_report(info, tests, [row("muon", **FULL)], 480.0)
    first = text.splitlines()[0]
    for part in ("GPU acceptance check", "2025-01-01 12:00 UTC", "NVIDIA H100 80GB HBM3", "torch 2.6.0",
                 "git abc123-dirty"):
        assert part in first
    assert "gpu tests (`pytest -m gpu -q`): ok, 4 passed" in text
    assert "all runs completed; total 8.0 min" in text


# ----------------------------------------------------------------------------- failures
def test_last_error_line_picks_the_exception_not_torchruns_trailer():
    out = ("step 1/12 loss 10.9\n[rank0]: Traceback (most recent call last):\n"
           "[rank0]:   File \"train.py\", line 1\n"
           "[rank0]: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.53 GiB.\n"
           "E1124 child process failed\n" + "=" * 40 + "\nRoot Cause (first observed failure):\n" + "=" * 40)
    oom = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.53 GiB."
    assert launch.last_error_line(out) == oom
    assert launch.last_error_line("Error executing job\nkilled\n\n") == "killed"
    assert launch.last_error_line("") == "(no output)"


def test_a_failing_command_is_a_row_with_its_last_error_line(tmp_path):
    code = ("import sys; print('step 1/12'); "
            "raise RuntimeError('CUDA out of memory. Tried to allocate 2.00 GiB')")
    run = gpu_check.Run("muon", [sys.executable, "-c", code], tmp_path / "muon")
    r = gpu_check.execute(run, timeout=60)
    assert not r.ok and r.rc == 1
    assert r.error == "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"
    assert "step 1/12" in (tmp_path / "muon" / "launcher.out").read_text()
    (status,) = [c[-1] for c in table_rows(gpu_check.format_table([r]))]
    assert status == "FAILED: RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"


def test_exit_0_without_a_completed_summary_is_a_failure(tmp_path):
    none = gpu_check.execute(gpu_check.Run("a", [sys.executable, "-c", "pass"], tmp_path / "a"), timeout=60)
    assert not none.ok and "summary.json" in none.error
    write = ("import json, pathlib; pathlib.Path(r'{}', 'summary.json').write_text("
             "json.dumps(dict(completed=False)))").format(tmp_path / "b")
    partial = gpu_check.execute(gpu_check.Run("b", [sys.executable, "-c", write], tmp_path / "b"), timeout=60)
    assert not partial.ok and "completed=False" in partial.error


def test_timeout_and_stale_run_dir_are_failure_rows(tmp_path):
    slow = gpu_check.execute(gpu_check.Run("a", [sys.executable, "-c", "import time; time.sleep(60)"],
                                           tmp_path / "a"), timeout=1)
    assert not slow.ok and slow.error.startswith("timed out after 1 s") and "raise --timeout" in slow.error
    stale = gpu_check.execute(gpu_check.Run("a", [sys.executable, "-c", "pass"], tmp_path / "a"), timeout=60)
    assert not stale.ok and "already exists" in stale.error and stale.rc is None


def test_main_saves_the_table_and_exits_1_when_a_run_fails(tmp_path, monkeypatch, capsys):
    def fake_runs(args, out, train_glob, val_glob):
        summary = json.dumps(FULL)
        good = f"import pathlib; pathlib.Path(r'{out / 'muon'}', 'summary.json').write_text('{summary}')"
        bad = "raise ValueError('config key optimizer.lr=-1 is invalid')"
        return [gpu_check.Run("muon", [sys.executable, "-c", good], out / "muon"),
                gpu_check.Run("gluon", [sys.executable, "-c", bad], out / "gluon")]

    monkeypatch.setattr(gpu_check, "build_runs", fake_runs)
    out = tmp_path / "out"
    assert gpu_check.main(["--smoke", "--out", str(out), "--data", str(tmp_path / "data")]) == 1
    printed = capsys.readouterr().out
    md = (out / "gpu_check.md").read_text()
    assert md.splitlines()[0] in printed and md.startswith("# CPU smoke check")
    muon, gluon = table_rows(md)
    assert muon[0] == "muon" and muon[-1] == "ok" and muon[6] == "1.00"
    assert gluon[-1] == "FAILED: ValueError: config key optimizer.lr=-1 is invalid"
    rec = json.loads((out / "gpu_check.json").read_text())
    assert rec["ok"] is False and [r["ok"] for r in rec["runs"]] == [True, False]
    assert rec["runs"][0]["median_step_ms"] == FULL["median_step_ms"] and rec["runs"][0]["vs_muon"] == 1.0
    assert "FAILED runs: gluon" in md


def test_data_dir_of_another_vocabulary_or_too_small_is_refused(tmp_path):
    train, val = gpu_check.ensure_data(tmp_path, 512, 5000, 2000, need_val=100)
    assert train.endswith("synthetic_train_*.bin") and val.endswith("synthetic_val_*.bin")
    with pytest.raises(gpu_check.CheckError, match=r"512-token vocabulary.*another --data"):
        gpu_check.ensure_data(tmp_path, 50257, 5000, 2000, need_val=100)
    with pytest.raises(gpu_check.CheckError, match=r"hold 2,000 tokens, the runs need 5,000: delete"):
        gpu_check.ensure_data(tmp_path, 512, 5000, 2000, need_val=5000)


@pytest.mark.parametrize(
    "rc,log,smoke,ok,error",
    [
        (0, "....\n4 passed, 327 deselected in 41.20s", False, True, None),
        (0, "ssss\n4 skipped, 327 deselected in 1.95s", True, True, None),
        (0, "ssss\n4 skipped, 327 deselected in 1.95s", False, False, "pytest does not see CUDA"),
        (1, "F...\n= 1 failed, 3 passed, 327 deselected in 40.00s =", False, False, "1 failed, 3 passed"),
        (5, "327 deselected in 1.00s", False, False, "no gpu-marked tests were collected"),
    ],
)
def test_gpu_test_step_verdicts(tmp_path, monkeypatch, rc, log, smoke, ok, error):
    def fake_run_process(argv, log_path, timeout):
        assert argv[1:5] == ["-m", "pytest", "-m", "gpu"]
        log_path.write_text(log + "\n")
        return rc, 1.0, None if rc == 0 else "(pytest output)"

    monkeypatch.setattr(gpu_check, "run_process", fake_run_process)
    got = gpu_check.run_gpu_tests(tmp_path, timeout=60, smoke=smoke)
    assert got["ok"] is ok and got["result"] in log
    assert got["error"] is None if error is None else error in got["error"]


def test_without_cuda_the_gpu_check_refuses_to_start(tmp_path, monkeypatch, capsys):
    import torch

    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--out", str(tmp_path / "out"), "--data", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err
    assert "no CUDA device is visible" in err and "pass --smoke" in err
    assert not (tmp_path / "out").exists()


def test_nproc_must_divide_the_batch():
    with pytest.raises(SystemExit):
        gpu_check.parse_args(["--nproc", "3"])


# ----------------------------------------------------------------------------- the real smoke check
@pytest.mark.slow
def test_smoke_check_runs_every_run_to_completion_on_cpu(tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, HF_HUB_OFFLINE="1", WANDB_MODE="disabled")
    proc = subprocess.run([sys.executable, "scripts/gpu_check.py", "--smoke", "--out", str(out), "--data",
                           str(tmp_path / "data")], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    md = (out / "gpu_check.md").read_text()
    header = md.splitlines()[0]
    assert header.startswith("# CPU smoke check") and "torch " in header and "git " in header
    assert "gpu tests (`pytest -m gpu -q`): skipped" in md and "| run |" in proc.stdout
    rows = table_rows(md)
    assert [r[0] for r in rows] == list(gpu_check.RUN_NAMES)  # one row per run, in order
    assert all(len(r) == len(gpu_check.COLUMNS) and r[-1] == "ok" for r in rows)
    rec = json.loads((out / "gpu_check.json").read_text())
    assert rec["ok"] is True and [r["run"] for r in rec["runs"]] == list(gpu_check.RUN_NAMES)
    for name in gpu_check.RUN_NAMES:
        summary = rundir.read_summary(out / name)
        assert summary is not None and summary["completed"] is True, name
        assert summary["steps"] == gpu_check.SMOKE["steps"]
    assert rundir.read_config(out / "fig1")["figure"]["name"] == "fig1"  # experiment=fig1 really ran
    eager = rundir.read_config(out / "eager64")
    assert str(eager["compile"]).lower() == "false" and eager["batch"]["micro_seqs"] == 2
