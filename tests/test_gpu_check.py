"""scripts/gpu_check.py: the table (numbers, "–" for keys a summary lacks, the ratio to muon), a failed run
as a row carrying its error's last line and a non-zero exit, the plan's estimate and the budget refusal, the
table saved after every run and on SIGTERM, an import without Hydra, and the whole --smoke --quick check
through the real train.py on the CPU (one row per run, every run completed, nothing left but small files)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

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
    """The rows of the results table: the block of table lines that starts with its header."""
    lines = text.splitlines()
    start = lines.index("| " + " | ".join(gpu_check.COLUMNS) + " |")
    block = []
    for ln in lines[start + 2:]:
        if not ln.startswith("|"):
            break
        block.append(cells(ln))
    return block


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
    def fake_run_process(argv, log_path, timeout, env=None):
        assert argv[1:5] == ["-m", "pytest", "-m", "gpu"]
        assert argv[-1] == f"--basetemp={tmp_path / 'scratch' / 'pytest'}"  # pytest's files under --out
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




# ----------------------------------------------------------------------------- the plan and the budget
def estimates(argv: list[str]) -> dict[str, float]:
    return {i.name: i.est_s for i in gpu_check.plan(gpu_check.parse_args(argv))}


def test_quick_plan_rows_and_estimates_from_the_h100_reference():
    # 15 s start-up (+ 60 s cold / 20 s warm compile + 5 s probe when compiled) + 5 steps x the 2026-11-22
    # H100 step time; the first compiled run pays the cold compile; eager64 is neither compiled nor probed
    got = estimates(["--quick"])
    assert list(got) == ["setup", "muon", "muon_mvr1", "gluon_mvr1", "fig1", "eager64"]
    want = dict(setup=5.0, muon=15 + 60 + 5 + 5 * 1.114, muon_mvr1=15 + 20 + 5 + 5 * 1.121,
                gluon_mvr1=15 + 20 + 5 + 5 * 2.232, fig1=15 + 20 + 5 + 5 * 2.232, eager64=15 + 5 * 2.394)
    assert got == pytest.approx(want)
    assert sum(got.values()) / 60 == pytest.approx(4.42, abs=0.01)  # under the five-minute budget
    args = gpu_check.parse_args(["--quick"])
    assert (args.steps, args.run_tests, args.budget_min) == (5, False, 5.0)


def test_full_plan_has_the_tests_six_runs_and_fits_ten_minutes():
    got = estimates([])
    assert list(got) == ["setup", "gpu tests", *gpu_check.RUN_NAMES]
    assert got["gpu tests"] == 60.0 and got["muon"] == pytest.approx(15 + 60 + 5 + 12 * 1.114)
    assert got["gluon"] == pytest.approx(15 + 20 + 5 + 12 * 1.119)  # warm: the model compiled before
    assert got["fsdp2"] == pytest.approx(15 + 60 + 5 + 12 * 1.25)  # its blocks compile cold, always
    assert 8.5 < sum(got.values()) / 60 <= gpu_check.FULL["budget_min"]
    assert gpu_check.parse_args([]).budget_min == 10.0


def test_plan_cold_compile_goes_to_the_first_compiled_run_and_steps_scale_with_nproc():
    got = estimates(["--quick", "--runs", "eager64", "fig1", "--nproc", "2", "--steps", "4"])
    assert list(got) == ["setup", "fig1", "eager64"]  # run order, not the order given
    assert got["fig1"] == pytest.approx(15 + 60 + 5 + 4 * 2.232 / 2)
    assert got["eager64"] == pytest.approx(15 + 4 * 2.394 / 2)
    assert "gpu tests" in estimates(["--quick", "--tests", "run"])


def test_plan_is_printed_with_each_rows_minutes_and_the_total(capsys):
    assert gpu_check.main(["--quick", "--plan"]) == 0
    out = capsys.readouterr().out
    lines = {ln.split()[0]: ln for ln in out.splitlines() if ln.startswith("  ")}
    assert " 1.4 min " in lines["muon"] and "60 s compile (cold)" in lines["muon"]
    assert " 0.8 min " in lines["muon_mvr1"] and "20 s compile (warm)" in lines["muon_mvr1"]
    assert " 0.9 min " in lines["gluon_mvr1"] and " 0.9 min " in lines["fig1"]
    assert " 0.4 min " in lines["eager64"] and "5 steps x 2.39 s" in lines["eager64"]
    assert lines["total"].split()[1:] == ["4.4", "min", "(budget", "5", "min)"]


def test_a_plan_over_the_budget_is_refused_before_any_work(tmp_path, capsys):
    out = tmp_path / "out"
    assert gpu_check.main(["--quick", "--steps", "40", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "the plan's estimate, 9.7 min, is over --budget-min 5: lower --steps" in err
    assert not out.exists()  # refused before the device check, the data and the runs
    assert gpu_check.main(["--plan", "--budget-min", "8.9"]) == 2  # the full check's 9.0 min
    assert gpu_check.main(["--plan", "--budget-min", "9.1"]) == 0
    assert gpu_check.parse_args(["--smoke", "--quick"]).budget_min is None  # CPU estimates are rough
    assert gpu_check.main(["--smoke", "--quick", "--plan", "--budget-min", "0.1"]) == 2
    with pytest.raises(SystemExit):
        gpu_check.parse_args(["--quick", "--budget-min", "0"])


def test_children_keep_the_compile_caches_under_out(tmp_path):
    env = gpu_check.child_env(tmp_path / "scratch")
    assert env["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "scratch" / "inductor")
    assert env["TRITON_CACHE_DIR"] == str(tmp_path / "scratch" / "triton")
    assert env["PYTHONUNBUFFERED"] == "1"


def write_summary_code(run_dir, check_md: str | None = None) -> str:
    """A fake run: optionally assert that gpu_check.md already holds a row, then write a summary."""
    code = "import pathlib\n"
    if check_md is not None:
        md = run_dir.parent / "gpu_check.md"
        code += f"assert {check_md!r} in pathlib.Path(r'{md}').read_text(), 'no row saved yet'\n"
    code += f"pathlib.Path(r'{run_dir}', 'summary.json').write_text({json.dumps(FULL)!r})\n"
    return code


FIRST_ROW = "| muon | 1,104.3"


def test_the_table_is_saved_and_printed_after_every_run(tmp_path, monkeypatch, capsys):
    def fake_runs(args, out, train_glob, val_glob):  # the second run fails unless the first row is saved
        return [gpu_check.Run("muon", [sys.executable, "-c", write_summary_code(out / "muon")], out / "muon"),
                gpu_check.Run("fig1", [sys.executable, "-c", write_summary_code(out / "fig1", FIRST_ROW)],
                              out / "fig1")]

    monkeypatch.setattr(gpu_check, "build_runs", fake_runs)
    out = tmp_path / "out"
    assert gpu_check.main(["--smoke", "--quick", "--runs", "muon", "fig1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    first_row = printed.index(FIRST_ROW)
    assert first_row < printed.index("[2/2] fig1: ")  # printed before the next run starts
    md = (out / "gpu_check.md").read_text()
    assert "# CPU smoke check (--quick)" in md and "all runs completed" in md
    assert "| step | estimated min | actual min |" in md and "| total |" in md
    rec = json.loads((out / "gpu_check.json").read_text())
    assert rec["finished"] is True and [p["step"] for p in rec["plan"]] == ["setup", "muon", "fig1"]
    assert all(p["actual_s"] is not None for p in rec["plan"])
    assert not (out / "scratch").exists()  # the smoke's shards were written there, then deleted


def test_sigterm_saves_the_rows_so_far_and_cleans_up(tmp_path):
    out = tmp_path / "out"
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        from pathlib import Path
        from scripts import gpu_check
        out = Path({str(out)!r})
        def fake_runs(args, out, train_glob, val_glob):
            return [gpu_check.Run("muon", [sys.executable, "-c", {write_summary_code(out / "muon")!r}],
                                  out / "muon"),
                    gpu_check.Run("fig1", [sys.executable, "-c", "import time; time.sleep(120)"],
                                  out / "fig1")]
        gpu_check.build_runs = fake_runs
        sys.exit(gpu_check.main(["--smoke", "--quick", "--runs", "muon", "fig1", "--out", str(out)]))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 60
    while not (out / "fig1" / "launcher.out").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)  # what `timeout` or a scheduler's time limit sends
    printed, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, printed
    muon, fig1 = table_rows((out / "gpu_check.md").read_text())
    assert muon[-1] == "ok" and fig1[-1].startswith("FAILED: interrupted (Ctrl-C or SIGTERM)")
    assert json.loads((out / "gpu_check.json").read_text())["finished"] is True
    assert not (out / "scratch").exists()


BLOCK_HYDRA = """
import sys


class _NoHydra:
    \"\"\"A GPU node without Hydra and OmegaConf: importing either fails.\"\"\"

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("hydra", "omegaconf"):
            raise ImportError(f"No module named {name!r} (blocked by the test)")
        return None


sys.meta_path.insert(0, _NoHydra())
"""


def test_the_check_imports_plans_and_refuses_without_hydra_or_omegaconf(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(BLOCK_HYDRA)
    env = dict(os.environ, PYTHONPATH=str(tmp_path))

    def run(*args):
        return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=120)

    blocked = run("-c", "import omegaconf")
    assert blocked.returncode == 1 and "blocked by the test" in blocked.stderr  # the blocker works
    helped = run("scripts/gpu_check.py", "--help")
    assert helped.returncode == 0 and "--quick" in helped.stdout and "--budget-min" in helped.stdout
    planned = run("scripts/gpu_check.py", "--quick", "--plan")
    assert planned.returncode == 0 and "  total" in planned.stdout, planned.stderr
    refused = run("scripts/gpu_check.py", "--quick", "--plan", "--budget-min", "1")
    assert refused.returncode == 2 and "over --budget-min 1" in refused.stderr
    imported = run("-c", "import sys; sys.path.insert(0, '.'); from scripts import gpu_check; "
                         "assert not {'hydra', 'omegaconf'} & set(sys.modules), sorted(sys.modules)")
    assert imported.returncode == 0, imported.stderr


def test_full_profile_builds_all_six_runs_with_their_overrides(tmp_path):
    args = gpu_check.parse_args([])
    runs = gpu_check.build_runs(args, tmp_path, "tr_*.bin", "va_*.bin")
    assert [r.name for r in runs] == list(gpu_check.RUN_NAMES)
    by = {r.name: r.argv for r in runs}
    gluon = {"optimizer=gluon", "model=gpt124m", "batch=b512", "compile=true", "train.steps=12"}
    assert gluon <= set(by["gluon"])
    assert by["fig1"][2:4] == ["experiment=fig1", "device=cuda"]
    assert {"compile=false", "batch.micro_seqs=64"} <= set(by["eager64"])
    quick = gpu_check.build_runs(gpu_check.parse_args(["--quick"]), tmp_path, "tr_*.bin", "va_*.bin")
    assert [r.name for r in quick] == list(gpu_check.QUICK_RUNS) and "train.steps=5" in quick[0].argv


# ----------------------------------------------------------------------------- the real smoke check
@pytest.mark.slow
def test_smoke_quick_check_runs_every_run_to_completion_on_cpu(tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, HF_HUB_OFFLINE="1", WANDB_MODE="disabled")
    proc = subprocess.run([sys.executable, "scripts/gpu_check.py", "--smoke", "--quick", "--out", str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert proc.stdout.startswith("plan (") and "took " in proc.stdout  # the plan first, the total last
    md = (out / "gpu_check.md").read_text()
    header = md.splitlines()[0]
    assert header.startswith("# CPU smoke check (--quick)") and "torch " in header and "git " in header
    assert "gpu tests (`pytest -m gpu -q`): skipped" in md and "| run |" in proc.stdout
    rows = table_rows(md)
    assert [r[0] for r in rows] == list(gpu_check.QUICK_RUNS)  # one row per run, in order
    assert all(len(r) == len(gpu_check.COLUMNS) and r[-1] == "ok" for r in rows)
    rec = json.loads((out / "gpu_check.json").read_text())
    assert rec["ok"] is True and [r["run"] for r in rec["runs"]] == list(gpu_check.QUICK_RUNS)
    for name in gpu_check.QUICK_RUNS:
        summary = rundir.read_summary(out / name)
        assert summary is not None and summary["completed"] is True, name
        assert summary["steps"] == gpu_check.SMOKE["steps"]
        assert not (out / name / rundir.CKPT).exists()  # dropped once the summary was read
    assert rundir.read_config(out / "fig1")["figure"]["name"] == "fig1"  # experiment=fig1 really ran
    eager = rundir.read_config(out / "eager64")
    assert str(eager["compile"]).lower() == "false" and eager["batch"]["micro_seqs"] == 2
    # what is left to copy back: the table and the runs' small files; the shards went with the scratch
    assert sorted(p.name for p in out.iterdir()) == sorted(["gpu_check.md", "gpu_check.json",
                                                            *gpu_check.QUICK_RUNS])
    assert sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) < 2_000_000


@pytest.mark.slow
def test_smoke_fsdp2_run_completes_on_cpu(tmp_path):
    """The fsdp2 row (left out of --quick; checked alone with --runs fsdp2) trains with sharding=fsdp2."""
    out = tmp_path / "out"
    env = dict(os.environ, HF_HUB_OFFLINE="1", WANDB_MODE="disabled")
    proc = subprocess.run([sys.executable, "scripts/gpu_check.py", "--smoke", "--quick", "--runs", "fsdp2",
                           "--out", str(out)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert [r[0] for r in table_rows((out / "gpu_check.md").read_text())] == ["fsdp2"]
    assert rundir.read_config(out / "fsdp2")["sharding"] == "fsdp2"
    assert rundir.read_summary(out / "fsdp2")["completed"] is True
