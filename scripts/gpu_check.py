"""One acceptance command for a GPU machine: the gpu tests, then short GPT-124M runs, then one table.

    python scripts/gpu_check.py                     # one GPU: about 8 minutes on an H100, 10 at most
    python scripts/gpu_check.py --nproc 8           # the same runs under torchrun --standalone x 8
    python scripts/gpu_check.py --smoke             # the same plumbing on a CPU at tiny sizes (< 1 min)

What it does, in order:
  1. writes synthetic GPT-2-vocabulary shards (data/synthetic.py) into --data (default
     data_cache/gpu_check; the smoke's own 512-token vocabulary goes to data_cache/gpu_check_smoke)
     unless they are already there;
  2. runs the gpu-marked tests, `pytest -m gpu -q` (skipped under --smoke unless --tests run);
  3. launches one `python train.py ...` process per run (torchrun with --nproc > 1), one after the other,
     each in its own run directory <out>/<run>, its stdout and stderr in <out>/<run>/launcher.out:
        muon, muon_mvr1, gluon, gluon_mvr1    model=gpt124m batch=b512 optimizer=<name> compile=true
                                              data.seq_len=1024 (the papers' 512 x 1024 tokens per step)
        fig1                                  experiment=fig1 exactly as shipped (Gluon-MVR-1, B=512,
                                              compile=auto and max_micro_seqs=auto: compiled, probed)
        eager64                               muon, model=gpt124m batch=b512 compile=false
                                              batch.micro_seqs=64: the memory of the eager path; a peak of
                                              40 GiB or more fails the run (the target is well under it)
     all on the synthetic shards with train.steps=12 train.val_every=0 train.ckpt_every=0 and a validation
     set of one global batch (only the end-of-run validation and checkpoint are done);
  4. prints the table and saves it as <out>/gpu_check.md (markdown) and <out>/gpu_check.json:
     run, median ms/step after the timing warm-up (train.timing_warmup steps), data tokens/s, processed
     tokens/s (two-pass optimizers process 2x the data tokens), MFU, peak GiB, and data tokens/s relative
     to muon's; the header line names the date, GPU, torch version and git SHA. The numbers are read from
     each run's summary.json (rundir.read_summary); a number the trainer did not write shows as "–".

--smoke runs the same five runs with model=tiny model.vocab_size=512 device=cpu compile=false, a global
batch of 8 x 64 tokens and 3 steps (the small vocabulary keeps each process to a few seconds on a CPU);
tests/test_gpu_check.py runs it, so the plumbing is exercised by every test run.

A run that fails (out of memory, a config error, a crash, --timeout) becomes a row carrying the last line of
its error, the remaining runs still go ahead, and the script exits 1 at the end; a failed or all-skipped
gpu test step also makes it exit 1. Exit 2: it could not start (no CUDA without --smoke, unusable --out or
--data). Ctrl-C stops the current run, saves the table so far and exits 130. The default --out,
runs/gpu_check/<YYYYmmdd-HHMMSS>, is new each time; a run directory that already holds files is refused
(a failure row) rather than resumed or read.

Time on one H100 (an estimate from earlier measurements; the total is printed at the end): GPT-124M at
B=512 x 1024 takes ~1.1 s/step compiled with a one-pass optimizer (muon, muon_mvr1, gluon), ~2.2 s with a
two-pass one (gluon_mvr1, fig1), ~2.4 s eager; torch.compile costs ~1 min the first time per
model/optimizer (later processes reuse inductor's cache), fig1's micro-batch probe a few seconds, and each
process adds ~15 s of start-up, final validation and checkpoint. So: gpu tests ~1 min, muon/muon_mvr1/gluon
~1.5 min each, gluon_mvr1 and fig1 ~1 min each (cache warm), eager64 ~1 min: ~9 min in all. Lower --steps
(at least train.timing_warmup + 1 = 3) if a slower GPU runs over.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, from a plain checkout too
from harness import rundir  # noqa: E402
from harness.provenance import git_sha  # noqa: E402
from study import REPO, launch  # noqa: E402

BASELINE = "muon"
OPTIMIZER_RUNS = ("muon", "muon_mvr1", "gluon", "gluon_mvr1")
RUN_NAMES = (*OPTIMIZER_RUNS, "fig1", "eager64")
EAGER_TARGET_GIB = 40.0  # issue target: the figure configs' micro-batch of 64 in eager mode, well under this
MISSING = "–"  # what a number the summary does not hold prints as

GPU = dict(steps=12, seq_len=1024, data="data_cache/gpu_check", vocab=50257, train_tokens=8_000_000,
           val_tokens=1_100_000, timeout=420, tests_timeout=600)
SMOKE = dict(steps=3, seq_len=64, global_seqs=8, data="data_cache/gpu_check_smoke", vocab=512,
             train_tokens=200_000, val_tokens=20_000, timeout=180, tests_timeout=300)
DATA_MARKER = "gpu_check_data.json"  # what the data directory was made with (vocabulary and sizes)

COLUMNS = ("run", "ms/step", "data tok/s", "processed tok/s", "MFU", "peak GiB", f"vs {BASELINE}", "setup",
           "status")
SUMMARY_KEYS = ("completed", "steps", "median_step_ms", "data_tokens_per_s", "processed_tokens_per_s", "mfu",
                "peak_mem_gib", "device", "world_size", "micro_seqs", "compile")


class CheckError(Exception):
    """The check cannot start; the message says what to change."""


@dataclass
class Run:
    name: str
    argv: list[str]
    run_dir: Path
    note: str = ""  # what the run is, for the table's setup column


@dataclass
class Row:
    name: str
    run_dir: str
    command: str
    ok: bool = False
    error: str | None = None
    rc: int | None = None
    wall_s: float | None = None
    note: str = ""
    summary: dict = field(default_factory=dict)
    vs_baseline: float | None = None

    def to_json(self) -> dict:
        out = dict(run=self.name, ok=self.ok, error=self.error, rc=self.rc, wall_s=self.wall_s,
                   run_dir=self.run_dir, command=self.command, note=self.note,
                   **{k: self.summary.get(k) for k in SUMMARY_KEYS})
        out[f"vs_{BASELINE}"] = self.vs_baseline
        return out


# ----------------------------------------------------------------------------- pieces
def torch_version() -> str:
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def device_name(smoke: bool) -> str:
    """The GPU's name (nvidia-smi, else torch), or the CPU for --smoke. Raises CheckError without CUDA."""
    if smoke:
        return f"cpu ({platform.machine()}, {os.cpu_count()} cores)"
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=30)
        names = [ln.strip() for ln in out.stdout.splitlines() if ln.strip()] if out.returncode == 0 else []
    except (OSError, subprocess.TimeoutExpired):
        names = []
    if not names:
        import torch  # only when nvidia-smi is missing: this initialises CUDA in this process

        if not torch.cuda.is_available():
            raise CheckError("no CUDA device is visible (nvidia-smi lists none and torch.cuda.is_available() "
                             "is False): run this on the GPU machine, or pass --smoke to check the plumbing "
                             "on a CPU")
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    counts = {n: names.count(n) for n in names}
    return ", ".join(f"{n} x{c}" if c > 1 else n for n, c in counts.items())


def ensure_data(data_dir: Path, vocab: int, train_tokens: int, val_tokens: int,
                need_val: int) -> tuple[str, str]:
    """Synthetic shards in data_dir (written if absent); their (train, val) glob patterns."""
    from data.shards import read_header

    train_glob, val_glob = data_dir / "synthetic_train_*.bin", data_dir / "synthetic_val_*.bin"
    marker = data_dir / DATA_MARKER
    have = sorted(data_dir.glob(train_glob.name)), sorted(data_dir.glob(val_glob.name))
    if not (have[0] and have[1]):
        from data.synthetic import write_synthetic_shards

        t0 = time.perf_counter()
        write_synthetic_shards(data_dir, train_tokens=train_tokens, val_tokens=val_tokens, vocab_size=vocab)
        marker.write_text(json.dumps(dict(vocab_size=vocab, train_tokens=train_tokens,
                                          val_tokens=val_tokens)) + "\n")
        print(f"wrote synthetic shards (vocabulary {vocab}, {train_tokens:,} train + {val_tokens:,} val "
              f"tokens) to {data_dir} in {time.perf_counter() - t0:.1f} s", flush=True)
    else:
        made = json.loads(marker.read_text()) if marker.exists() else {}
        if made.get("vocab_size", vocab) != vocab:
            raise CheckError(f"--data {data_dir} holds synthetic shards with a {made['vocab_size']}-token "
                             f"vocabulary ({marker}), this mode needs {vocab}: pass another --data "
                             f"directory or delete {data_dir}")
        n_val = sum(read_header(p) for p in have[1])
        if n_val < need_val:
            raise CheckError(f"--data {data_dir}: the val shards ({val_glob.name}) hold {n_val:,} tokens, "
                             f"the runs need {need_val:,}: delete {data_dir} so that it is rewritten larger, "
                             f"or pass another --data directory")
    return str(train_glob), str(val_glob)


def run_process(argv: list[str], log_path: Path, timeout: float) -> tuple[int, float, str | None]:
    """One process through the launcher (study/launch.py run_one): (exit code, wall s, error or None)."""
    rc, wall, error = launch.run_one(argv, log_path, timeout)
    if rc == -1:
        error = f"{error}; raise --timeout or lower --steps"
    return rc, wall, error


def execute(run: Run, timeout: float) -> Row:
    """Launch one run and read its summary; a failure becomes a row with the error's last line."""
    row = Row(run.name, str(run.run_dir), shlex.join(run.argv), note=run.note)
    if run.run_dir.exists() and any(run.run_dir.iterdir()):
        row.error = (f"{run.run_dir} already exists from an earlier check; pass a new --out (or delete that "
                     f"directory) so that stale results are not read")
        return row
    row.rc, wall, error = run_process(run.argv, run.run_dir / "launcher.out", timeout)
    row.wall_s = round(wall, 1)
    if error is None:
        try:
            summary = rundir.read_summary(run.run_dir)
        except ValueError as e:
            summary, error = None, str(e)
        if error is None and summary is None:
            error = (f"the process exited 0 but wrote no {run.run_dir / rundir.SUMMARY}; see "
                     f"{run.run_dir / 'launcher.out'}")
        elif error is None and summary.get("completed") is not True:
            error = (f"{run.run_dir / rundir.SUMMARY} says completed={summary.get('completed')!r}; see "
                     f"{run.run_dir / 'launcher.out'}")
        row.summary = summary or {}
    row.error, row.ok = error, error is None
    return row


def run_gpu_tests(out: Path, timeout: float, smoke: bool) -> dict:
    """`pytest -m gpu -q` in the repository. On a GPU, tests that all skip are a failure."""
    argv = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider"]
    log = out / "pytest_gpu.log"
    rc, wall, error = run_process(argv, log, timeout)
    lines = [ln.strip() for ln in launch.tail(log).splitlines() if ln.strip()]
    tally = re.compile(r"\d+ (passed|failed|skipped|deselected|errors?|xfailed|xpassed)")
    result = next((ln.strip("= ") for ln in reversed(lines) if tally.search(ln)), lines[-1] if lines else "")
    ok = rc == 0
    if rc == 5:
        error = "no gpu-marked tests were collected (pytest exit 5): check the `gpu` marker in pyproject.toml"
    elif ok and not smoke and "passed" not in result:
        ok, error = False, f"no gpu test passed ({result}): pytest does not see CUDA on this machine"
    elif not ok and error and "timed out" not in error:
        error = f"{result or error} (see {log})"
    return dict(ok=ok, result=result, error=error, rc=rc, wall_s=round(wall, 1), log=str(log),
                command=shlex.join(argv))


# ----------------------------------------------------------------------------- the plan
def build_runs(args, out: Path, train_glob: str, val_glob: str) -> list[Run]:
    """The runs of the check, in order: the four optimizers, then experiment=fig1 as shipped."""
    mode = SMOKE if args.smoke else GPU
    global_seqs = SMOKE["global_seqs"] if args.smoke else 512  # batch=b512 (fig1 selects b512 too)
    common = [f"data.train_files={launch.hydra_value(train_glob)}",
              f"data.val_files={launch.hydra_value(val_glob)}",
              # one global batch: divisible by micro_seqs x ranks whatever micro-batch the trainer picks
              f"data.val_tokens={global_seqs * mode['seq_len']}",
              f"train.steps={args.steps}", "train.val_every=0", "train.ckpt_every=0", "resume=never"]
    if args.smoke:  # tiny sizes on the CPU; the same flags for fig1 so that it does not build GPT-124M
        size = ["model=tiny", f"model.vocab_size={SMOKE['vocab']}", "device=cpu", "compile=false",
                f"batch.global_seqs={global_seqs}", f"data.seq_len={SMOKE['seq_len']}"]
        opt_size, fig_size = size, size
    else:
        opt_size = ["model=gpt124m", "batch=b512", "compile=true", f"data.seq_len={GPU['seq_len']}",
                    "device=cuda"]
        fig_size = ["device=cuda"]
    runs = []
    for name in RUN_NAMES:
        if args.runs and name not in args.runs:
            continue
        run_dir = out / name
        if name == "fig1":
            ov = ["experiment=fig1", *fig_size]
            note = "experiment=fig1 as shipped" if not args.smoke else "experiment=fig1, tiny"
        elif name == "eager64":
            micro = 2 if args.smoke else 64  # divides the per-rank batch for every allowed --nproc
            eager = [o for o in opt_size if not o.startswith("compile=")] + ["compile=false"]
            ov = [f"optimizer={BASELINE}", *eager, f"batch.micro_seqs={micro}"]
            note = f"eager, micro {micro}" + ("" if args.smoke else f" (target < {EAGER_TARGET_GIB:g} GiB)")
        else:
            ov = [f"optimizer={name}", *opt_size]
            note = "" if args.smoke else "gpt124m b512 compiled"
        argv = launch.train_argv([*ov, *common, f"run_dir={launch.hydra_value(run_dir)}"], args.nproc)
        runs.append(Run(name, argv, run_dir, note))
    return runs


# ----------------------------------------------------------------------------- the table
def _num(value, fmt: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:  # NaN too
        return MISSING
    return format(value, fmt)


def _setup(row: Row) -> str:
    s = row.summary
    parts = [row.note] if row.note else []
    if isinstance(s.get("micro_seqs"), int):
        ws = s.get("world_size")
        parts.append(f"micro {s['micro_seqs']}" + (f" x{ws} ranks" if isinstance(ws, int) and ws > 1 else ""))
    if isinstance(s.get("compile"), bool):
        parts.append("compile" if s["compile"] else "eager")
    return ", ".join(parts)


def check_memory_target(rows: list[Row]) -> None:
    """eager64 fails when its peak GPU memory reaches EAGER_TARGET_GIB (not checked where none was
    measured: the CPU smoke)."""
    for r in rows:
        peak = r.summary.get("peak_mem_gib")
        if r.name == "eager64" and r.ok and isinstance(peak, (int, float)) and peak >= EAGER_TARGET_GIB:
            r.ok, r.error = False, f"peak {peak:.1f} GiB: not under the {EAGER_TARGET_GIB:g} GiB target"


def set_baseline_ratios(rows: list[Row]) -> None:
    """vs_baseline = a run's data tokens/s / muon's (none where either is missing)."""
    base = next((r for r in rows if r.name == BASELINE and r.ok), None)
    ref = base.summary.get("data_tokens_per_s") if base else None
    for r in rows:
        mine = r.summary.get("data_tokens_per_s") if r.ok else None
        ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in (ref, mine))
        r.vs_baseline = mine / ref if ok else None


def table_cells(row: Row) -> list[str]:
    s = row.summary
    status = "ok" if row.ok else "FAILED: " + (row.error or "unknown error")
    if len(status) > 240:
        status = status[:237] + "..."
    mfu = _num(s.get("mfu"), ".1%")  # a fraction 0..1 -> "41.3%"
    return [row.name, _num(s.get("median_step_ms"), ",.1f"), _num(s.get("data_tokens_per_s"), ",.0f"),
            _num(s.get("processed_tokens_per_s"), ",.0f"), mfu, _num(s.get("peak_mem_gib"), ".1f"),
            _num(row.vs_baseline, ".2f"), _setup(row), status]


def _md_cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def format_table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |",
             "|" + "|".join("---" if c in ("run", "setup", "status") else "---:" for c in COLUMNS) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in table_cells(r)) + " |" for r in rows]
    return "\n".join(lines)


def header_line(info: dict) -> str:
    what = "CPU smoke check" if info["smoke"] else "GPU acceptance check"
    return (f"{what} {info['date']} · device {info['device']} · torch {info['torch']} · git {info['git']}"
            + (f" · {info['nproc']} processes per run" if info["nproc"] > 1 else ""))


def format_report(info: dict, tests: dict | None, rows: list[Row], total_s: float) -> str:
    if tests is None:
        test_line = "gpu tests (`pytest -m gpu -q`): skipped" + (" (--smoke)" if info["smoke"] else "")
    else:
        test_line = (f"gpu tests (`pytest -m gpu -q`): {'ok' if tests['ok'] else 'FAILED'}, {tests['result']}"
                     + ("" if tests["ok"] else f" — {tests['error']}"))
    failed = [r.name for r in rows if not r.ok]
    verdict = ("all runs completed" if not failed else f"FAILED runs: {', '.join(failed)}")
    return "\n".join([
        "# " + header_line(info), "",
        f"{len(rows)} runs of {info['steps']} steps on synthetic shards, one process each; ms/step is the "
        f"median over the steps after the trainer's timing warm-up; data tok/s = tokens of the global batch "
        f"per step / median step time; processed tok/s counts every gradient pass (about 2x for two-pass "
        f"optimizers); vs {BASELINE} = data tok/s / {BASELINE}'s; \"{MISSING}\" = not in the run's "
        f"summary.json.", "",
        test_line, "",
        format_table(rows), "",
        f"{verdict}; total {total_s / 60:.1f} min; outputs in {info['out']}",
    ]) + "\n"


# ----------------------------------------------------------------------------- main
def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true",
                    help="CPU, tiny model (512-token vocabulary), batch 8 x 64, 3 steps, no compile")
    ap.add_argument("--out", type=Path, default=None,
                    help="scratch directory for the runs and the table (default runs/gpu_check/<date-time>)")
    ap.add_argument("--nproc", type=int, default=1, help="processes per run; > 1 uses torchrun --standalone")
    ap.add_argument("--steps", type=int, default=None, help="train.steps of each run (default 12; smoke 3)")
    ap.add_argument("--runs", nargs="+", choices=RUN_NAMES, default=None, help="only these runs")
    ap.add_argument("--data", type=Path, default=None,
                    help=f"synthetic shard directory (default {GPU['data']}; smoke {SMOKE['data']})")
    ap.add_argument("--tests", choices=("auto", "run", "skip"), default="auto",
                    help="the `pytest -m gpu -q` step: auto runs it except under --smoke")
    ap.add_argument("--timeout", type=float, default=None,
                    help=f"seconds per run before it is stopped (default {GPU['timeout']}; smoke "
                         f"{SMOKE['timeout']})")
    args = ap.parse_args(argv)
    mode = SMOKE if args.smoke else GPU
    args.steps = mode["steps"] if args.steps is None else args.steps
    args.timeout = mode["timeout"] if args.timeout is None else args.timeout
    args.data = (REPO / mode["data"]) if args.data is None else args.data.resolve()
    if args.steps < 1:
        ap.error(f"--steps {args.steps}: must be >= 1 (the median needs train.timing_warmup + 1 = 3)")
    seqs = SMOKE["global_seqs"] if args.smoke else 512
    if args.nproc < 1 or seqs % args.nproc:
        ap.error(f"--nproc {args.nproc}: must divide the {seqs} sequences of the global batch (1, 2, 4, 8)")
    if args.timeout <= 0:
        ap.error(f"--timeout {args.timeout}: must be positive")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    now = dt.datetime.now().astimezone()
    out = (args.out or REPO / "runs" / "gpu_check" / now.strftime("%Y%m%d-%H%M%S")).resolve()
    try:
        device = device_name(args.smoke)
        out.mkdir(parents=True, exist_ok=True)
        mode = SMOKE if args.smoke else GPU
        gseqs = SMOKE["global_seqs"] if args.smoke else 512
        train_glob, val_glob = ensure_data(args.data, mode["vocab"], mode["train_tokens"], mode["val_tokens"],
                                           need_val=gseqs * mode["seq_len"] + 1)
    except (CheckError, OSError) as e:
        print(f"gpu_check: {e}", file=sys.stderr)
        return 2
    info = dict(date=now.strftime("%Y-%m-%d %H:%M %Z"), device=device, torch=torch_version(), git=git_sha(),
                smoke=args.smoke, nproc=args.nproc, steps=args.steps, out=str(out))
    print(header_line(info), flush=True)

    tests = None
    if args.tests == "run" or (args.tests == "auto" and not args.smoke):
        print("gpu tests: pytest -m gpu -q ...", flush=True)
        tests = run_gpu_tests(out, mode["tests_timeout"], args.smoke)
        print(f"gpu tests: {'ok' if tests['ok'] else 'FAILED'} {tests['result']} ({tests['wall_s']:.0f} s)"
              + ("" if tests["ok"] else f" — {tests['error']}"), flush=True)

    rows: list[Row] = []
    interrupted = False
    runs = build_runs(args, out, train_glob, val_glob)
    for i, run in enumerate(runs, 1):
        print(f"[{i}/{len(runs)}] {run.name}: {shlex.join(run.argv)}", flush=True)
        try:
            row = execute(run, args.timeout)
        except KeyboardInterrupt:  # the run's processes are stopped by now; still save what was measured
            rows.append(Row(run.name, str(run.run_dir), shlex.join(run.argv), note=run.note,
                            error="interrupted (Ctrl-C); the remaining runs were not started"))
            interrupted = True
            break
        rows.append(row)
        wall = f" in {row.wall_s:.0f} s" if row.wall_s is not None else ""
        print(f"[{i}/{len(runs)}] {run.name}: {'ok' if row.ok else 'FAILED: ' + str(row.error)}{wall}",
              flush=True)
    check_memory_target(rows)
    set_baseline_ratios(rows)

    total = time.perf_counter() - t0
    report = format_report(info, tests, rows, total)
    ok = all(r.ok for r in rows) and (tests is None or tests["ok"])
    (out / "gpu_check.md").write_text(report)
    record = dict(info, ok=ok, total_s=round(total, 1), tests=tests, runs=[r.to_json() for r in rows])
    (out / "gpu_check.json").write_text(json.dumps(record, indent=2) + "\n")
    print("\n" + report, end="", flush=True)
    if not args.smoke and total > 600:
        print(f"note: {total / 60:.1f} min is over the 10-minute budget; lower --steps", flush=True)
    print(f"saved {out / 'gpu_check.md'} and {out / 'gpu_check.json'}", flush=True)
    return 130 if interrupted else 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
