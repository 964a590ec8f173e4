"""One acceptance command for a GPU machine: the gpu tests, then short GPT-124M runs, then one table.

    python scripts/gpu_check.py --quick             # one GPU, about 4.4 minutes: five runs, no tests
    python scripts/gpu_check.py                     # one GPU, about 9.0 minutes: the tests and seven runs
    python scripts/gpu_check.py --nproc 8           # the same runs under torchrun --standalone x 8
    python scripts/gpu_check.py --quick --plan      # print the plan and its estimate, run nothing
    python scripts/gpu_check.py --smoke [--quick]   # the same plumbing on a CPU at tiny sizes (< 1 min)

What it does, in order:
  1. prints the plan: each step with its estimated minutes on one H100 from a cold start (`plan`, from
     the costs below) and the total, and refuses to start (exit 2) when the total is over --budget-min
     (default 5 with --quick, 10 without; none under --smoke), so that a short allocation is never
     overrun silently;
  2. writes synthetic GPT-2-vocabulary shards (data/synthetic.py) into --data (default
     <out>/scratch/data; the smoke's own 512-token vocabulary) unless they are already there;
  3. runs the gpu-marked tests, `pytest -m gpu -q` (skipped under --quick and --smoke unless --tests run);
  4. launches one `python train.py ...` process per run (torchrun with --nproc > 1), one after the other,
     each in its own run directory <out>/<run>, its stdout and stderr in <out>/<run>/launcher.out:
        muon, muon_mvr1, gluon, gluon_mvr1    model=gpt124m batch=b512 optimizer=<name> compile=true
                                              data.seq_len=1024 (the papers' 512 x 1024 tokens per step)
        fig1                                  experiment=fig1 exactly as shipped (Gluon-MVR-1, B=512,
                                              compile=auto and max_micro_seqs=auto: compiled, probed)
        eager64                               muon, model=gpt124m batch=b512 compile=false
                                              batch.micro_seqs=64: the memory of the eager path; a peak of
                                              40 GiB or more fails the run (the target is well under it)
        fsdp2                                 muon_mvr1 as above with sharding=fsdp2: FSDP2 over NCCL, bf16
                                              weight gathers with float32 gradient reduction, each block
                                              compiled, the checkpoint through torch.distributed.checkpoint
     all on the synthetic shards with train.steps=12 (--quick: 5) train.val_every=0 train.ckpt_every=0
     and a validation set of one global batch (only the end-of-run validation and checkpoint are done;
     the checkpoint is deleted once the run's summary is read). --quick leaves out gluon (the one-pass
     Gluon costs what muon does), fsdp2 (`--quick --runs fsdp2` checks it alone: ~1.5 min) and the gpu
     tests;
  5. prints each run's table row as it finishes and rewrites the table after every run, so a check cut
     short (Ctrl-C, or SIGTERM from `timeout` or a scheduler: exit 130) still leaves the rows it finished,
     as <out>/gpu_check.md (markdown) and <out>/gpu_check.json: run, median ms/step after the timing
     warm-up (train.timing_warmup steps), data tokens/s, processed tokens/s (two-pass optimizers process
     2x the data tokens), MFU, peak GiB, and data tokens/s relative to muon's; the header line names the
     date, GPU, torch version and git SHA; below the table, each step's estimated and actual minutes. The
     numbers are read from each run's summary.json (rundir.read_summary); a number the trainer did not
     write shows as "–".

Everything the check writes is under --out (default runs/gpu_check/<YYYYmmdd-HHMMSS>, new each time), so
that folder can be copied back whole: the table, the pytest log and each run's directory (config, metrics,
summary, train.log, launcher.out: a few hundred KiB in all). The bulky files live in <out>/scratch and are
deleted when the check ends (--keep-scratch keeps them): the synthetic shards, torch.compile's caches
(TORCHINDUCTOR_CACHE_DIR and TRITON_CACHE_DIR point there instead of /tmp and ~/.triton, which also makes
every check start from the cold caches the estimate assumes) and pytest's temporary files. Only Python's
bytecode (__pycache__ beside the sources) is written elsewhere.

--smoke runs the same runs with model=tiny model.vocab_size=512 device=cpu compile=false, a global
batch of 8 x 64 tokens and 3 steps (the small vocabulary keeps each process to a few seconds on a CPU);
tests/test_gpu_check.py runs `--smoke --quick`, so the plumbing is exercised by every test run.

A run that fails (out of memory, a config error, a crash, --timeout) becomes a row carrying the last line of
its error, the remaining runs still go ahead, and the script exits 1 at the end; a failed or all-skipped
gpu test step also makes it exit 1. Exit 2: it could not start (the plan is over --budget-min, no CUDA
without --smoke, unusable --out or --data). A run directory that already holds files is refused (a failure
row) rather than resumed or read.

The estimate (`GPU_COSTS`; the plan prints each term): the step times on one H100 measured on 2026-11-22
(results/README.md, "GPU (GPT-124M, one H100)": 1.11 s a step compiled with a one-pass optimizer, 2.23 s
with a two-pass one, 2.39 s eager), plus per process ~15 s of start-up, final validation and checkpoint,
~5 s for the micro-batch probe of a compiled run, and torch.compile: ~60 s for the first compiled process
(cold caches), ~20 s for each later one (the same model and micro-batch: inductor's caches are warm).
With the default 12 steps: gpu tests ~1 min, muon ~1.6 min, muon_mvr1 and gluon ~0.9 min each, gluon_mvr1
and fig1 ~1.1 min each, eager64 ~0.7 min, fsdp2 ~1.6 min (its blocks compile cold; its step time is an
estimate, 1.25 s, until a GPU measures it), set-up ~0.1 min: ~9.0 min in all; with --quick's 5 steps
(median over the 3 after the warm-up): muon 1.4 min, muon_mvr1 0.8, gluon_mvr1 and fig1 0.9 each,
eager64 0.4, set-up 0.1: ~4.4 min. Lower --steps (at least
train.timing_warmup + 1 = 3) if a slower GPU runs over.
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
import shutil
import signal
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
RUN_NAMES = (*OPTIMIZER_RUNS, "fig1", "eager64", "fsdp2")
OWN_GRAPHS = ("fsdp2",)  # compiled block by block: graphs of their own, so a cold compile whatever ran before
QUICK_RUNS = ("muon", "muon_mvr1", "gluon_mvr1", "fig1", "eager64")  # gluon: a one-pass run like muon
EAGER_TARGET_GIB = 40.0  # issue target: the figure configs' micro-batch of 64 in eager mode, well under this
MISSING = "–"  # what a number the summary does not hold prints as

# What runs: the full check and --quick (steps, the gpu test step, the budget the plan must fit, in minutes)
FULL = dict(name="full", runs=RUN_NAMES, steps=12, tests=True, budget_min=10.0, timeout=420)
QUICK = dict(name="quick", runs=QUICK_RUNS, steps=5, tests=False, budget_min=5.0, timeout=240)
# At what size: GPT-124M on a GPU, or the tiny CPU smoke (its own steps, no budget)
GPU = dict(seq_len=1024, global_seqs=512, vocab=50257, train_tokens=8_000_000, val_tokens=1_100_000,
           tests_timeout=600)
SMOKE = dict(steps=3, seq_len=64, global_seqs=8, vocab=512, train_tokens=200_000, val_tokens=20_000,
             timeout=180, tests_timeout=300)
DATA_MARKER = "gpu_check_data.json"  # what the data directory was made with (vocabulary and sizes)
SCRATCH = "scratch"  # <out>/scratch: shards, compile caches, pytest's files; deleted at the end


@dataclass(frozen=True)
class Costs:
    """What the plan's estimate is made of, in seconds."""

    step_s: dict  # run name -> seconds per optimizer step on one device
    process_s: float  # start-up, final validation and checkpoint of one train.py process
    compile_cold_s: float  # torch.compile in the first compiled process (empty caches)
    compile_warm_s: float  # torch.compile in a later one (the same model and micro-batch: cache hits)
    probe_s: float  # the micro-batch probe of a run with max_micro_seqs=auto on CUDA
    tests_s: float  # `pytest -m gpu -q`
    setup_s: float  # the device query, git and the synthetic shards


# One H100. Step times: the measurements of 2026-11-22 (results/README.md, "GPU (GPT-124M, one H100)");
# eager64 takes the eager micro-32 row, the nearest measured. The per-process costs: earlier runs (docstring).
# fsdp2 has no measurement yet: muon_mvr1's step and ~12 % for FSDP2's weight gathers, an estimate.
GPU_COSTS = Costs(step_s=dict(muon=1.114, muon_mvr1=1.121, gluon=1.119, gluon_mvr1=2.232, fig1=2.232,
                              eager64=2.394, fsdp2=1.25),
                  process_s=15.0, compile_cold_s=60.0, compile_warm_s=20.0, probe_s=5.0, tests_s=60.0,
                  setup_s=5.0)
# The CPU smoke (tiny model, shared 2-core machine): start-up dominates; no compile, no probe.
SMOKE_COSTS = Costs(step_s=dict.fromkeys(RUN_NAMES, 0.3), process_s=10.0, compile_cold_s=0.0,
                    compile_warm_s=0.0, probe_s=0.0, tests_s=60.0, setup_s=2.0)

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


def child_env(scratch: Path) -> dict:
    """The environment of every process the check starts: the launcher's (unbuffered output), with
    torch.compile's caches (inductor's, and the Triton kernels') in the scratch folder under --out rather
    than in /tmp and ~/.triton: nothing lands outside --out, and each check starts from cold caches, as
    the plan's estimate assumes."""
    return launch.environment(extra=dict(TORCHINDUCTOR_CACHE_DIR=str(scratch / "inductor"),
                                         TRITON_CACHE_DIR=str(scratch / "triton")))


def run_process(argv: list[str], log_path: Path, timeout: float,
                env: dict | None = None) -> tuple[int, float, str | None]:
    """One process through the launcher (study/launch.py run_one): (exit code, wall s, error or None)."""
    rc, wall, error = launch.run_one(argv, log_path, timeout, env)
    if rc == -1:
        error = f"{error}; raise --timeout or lower --steps"
    return rc, wall, error


def execute(run: Run, timeout: float, env: dict | None = None) -> Row:
    """Launch one run and read its summary; a failure becomes a row with the error's last line. The run's
    checkpoint (a GB or more for GPT-124M) is deleted afterwards: the check needs only its summary."""
    row = Row(run.name, str(run.run_dir), shlex.join(run.argv), note=run.note)
    if run.run_dir.exists() and any(run.run_dir.iterdir()):
        row.error = (f"{run.run_dir} already exists from an earlier check; pass a new --out (or delete that "
                     f"directory) so that stale results are not read")
        return row
    try:
        row.rc, wall, error = run_process(run.argv, run.run_dir / launch.LAUNCHER_LOG, timeout, env)
    finally:  # a run stopped by SIGTERM writes a checkpoint before it exits: that one goes too
        launch.drop_ckpt(run.run_dir)
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


def run_gpu_tests(out: Path, timeout: float, smoke: bool, env: dict | None = None) -> dict:
    """`pytest -m gpu -q` in the repository, its temporary files under <out>/scratch. On a GPU, tests that
    all skip are a failure."""
    argv = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider",
            f"--basetemp={out / SCRATCH / 'pytest'}"]
    log = out / "pytest_gpu.log"
    rc, wall, error = run_process(argv, log, timeout, env)
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
    """The runs of the check (args.runs, in RUN_NAMES order): the optimizers, then experiment=fig1 as
    shipped, then the eager memory run."""
    mode = SMOKE if args.smoke else GPU
    global_seqs = mode["global_seqs"]  # GPU: batch=b512 (fig1 selects b512 too)
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
    for name in args.runs:
        run_dir = out / name
        if name == "fig1":
            ov = ["experiment=fig1", *fig_size]
            note = "experiment=fig1 as shipped" if not args.smoke else "experiment=fig1, tiny"
        elif name == "eager64":
            micro = 2 if args.smoke else 64  # divides the per-rank batch for every allowed --nproc
            eager = [o for o in opt_size if not o.startswith("compile=")] + ["compile=false"]
            ov = [f"optimizer={BASELINE}", *eager, f"batch.micro_seqs={micro}"]
            note = "" if args.smoke else f"target < {EAGER_TARGET_GIB:g} GiB"  # micro, eager: summary
        elif name == "fsdp2":  # NCCL under FSDP2, bf16 weight gathers, compile per block, DCP checkpoint
            ov = ["optimizer=muon_mvr1", *opt_size, "sharding=fsdp2"]
            note = "muon_mvr1, sharding=fsdp2" + ("" if args.smoke else ", compiled per block")
        else:
            ov = [f"optimizer={name}", *opt_size]
            note = "" if args.smoke else "gpt124m b512 compiled"
        argv = launch.train_argv([*ov, *common, f"run_dir={launch.hydra_value(run_dir)}"], args.nproc)
        runs.append(Run(name, argv, run_dir, note))
    return runs


@dataclass
class Planned:
    """One step of the plan: its estimated seconds (and what they are made of), then what it took."""

    name: str
    est_s: float
    terms: str
    took_s: float | None = None


def plan(args) -> list[Planned]:
    """The check's steps with their estimated seconds (`Costs`): the set-up, the gpu tests if they run,
    then each run. The first compiled run pays the cold compile, later ones the warm one; steps take
    1/nproc of one device's time (ideal scaling)."""
    c = SMOKE_COSTS if args.smoke else GPU_COSTS
    items = [Planned("setup", c.setup_s, "device query, git, synthetic shards")]
    if args.run_tests:
        items.append(Planned("gpu tests", c.tests_s, "pytest -m gpu -q"))
    compiled_before = False
    for name in args.runs:
        step = c.step_s[name] / args.nproc
        secs, terms = c.process_s + args.steps * step, [f"{c.process_s:.0f} s start-up"]
        if not args.smoke and name != "eager64":  # compiled and probed (eager64: compile=false, micro 64)
            warm = compiled_before and name not in OWN_GRAPHS
            compile_s = c.compile_warm_s if warm else c.compile_cold_s
            secs += compile_s + c.probe_s
            terms += [f"{compile_s:.0f} s compile ({'warm' if warm else 'cold'})",
                      f"{c.probe_s:.0f} s probe"]
            compiled_before = True
        terms.append(f"{args.steps} steps x {step:.3g} s")
        items.append(Planned(name, secs, " + ".join(terms)))
    return items


def format_plan(items: list[Planned], budget_min: float | None, where: str) -> str:
    """The plan as lines: each step's estimated minutes and terms, then the total against the budget."""
    total = sum(i.est_s for i in items)
    width = max(len(i.name) for i in items)
    lines = [f"plan ({where}):"]
    lines += [f"  {i.name:<{width}}  {i.est_s / 60:4.1f} min  {i.terms}" for i in items]
    budget = f" (budget {budget_min:g} min)" if budget_min is not None else " (no budget)"
    lines.append(f"  {'total':<{width}}  {total / 60:4.1f} min{budget}")
    return "\n".join(lines)


def over_budget(items: list[Planned], budget_min: float | None) -> str | None:
    """The refusal when the plan's estimate is over the budget, else None."""
    total_min = sum(i.est_s for i in items) / 60
    if budget_min is None or total_min <= budget_min:
        return None
    return (f"the plan's estimate, {total_min:.1f} min, is over --budget-min {budget_min:g}: lower --steps "
            f"(at least 3), leave runs out (--runs), skip the gpu tests (--tests skip), or raise "
            f"--budget-min if the allocation is longer")


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
    if info.get("profile") == "quick":
        what += " (--quick)"
    return (f"{what} {info['date']} · device {info['device']} · torch {info['torch']} · git {info['git']}"
            + (f" · {info['nproc']} processes per run" if info["nproc"] > 1 else ""))


def format_plan_table(items: list[Planned]) -> str:
    """Estimated against actual minutes of each step of the plan, and in all."""
    def minutes(s):
        return MISSING if s is None else f"{s / 60:.1f}"

    lines = ["| step | estimated min | actual min | estimate from |", "|---|---:|---:|---|"]
    lines += [f"| {i.name} | {minutes(i.est_s)} | {minutes(i.took_s)} | {_md_cell(i.terms)} |" for i in items]
    done = [i.took_s for i in items if i.took_s is not None]
    lines.append(f"| total | {minutes(sum(i.est_s for i in items))} | {minutes(sum(done) if done else None)} "
                 f"| |")
    return "\n".join(lines)


def format_report(info: dict, tests: dict | None, rows: list[Row], total_s: float,
                  items: list[Planned] | None = None, pending: int = 0) -> str:
    """The report: header, how to read the table, the test step, the table, the plan against the actual
    times, and the verdict; `pending` runs still to come make the verdict a partial one."""
    if tests is None:
        why = " (--smoke)" if info["smoke"] else " (--quick)" if info.get("profile") == "quick" else ""
        test_line = "gpu tests (`pytest -m gpu -q`): skipped" + why
    else:
        test_line = (f"gpu tests (`pytest -m gpu -q`): {'ok' if tests['ok'] else 'FAILED'}, {tests['result']}"
                     + ("" if tests["ok"] else f" — {tests['error']}"))
    failed = [r.name for r in rows if not r.ok]
    verdict = ("all runs completed" if not failed else f"FAILED runs: {', '.join(failed)}")
    if pending:
        verdict = (f"{len(rows)} of {len(rows) + pending} runs done so far (the check is still running, or "
                   f"was stopped)" + (f"; FAILED runs: {', '.join(failed)}" if failed else ""))
    parts = [
        "# " + header_line(info), "",
        f"{len(rows) + pending} runs of {info['steps']} steps on synthetic shards, one process each; ms/step "
        f"is the median over the steps after the trainer's timing warm-up; data tok/s = tokens of the global "
        f"batch per step / median step time; processed tok/s counts every gradient pass (about 2x for "
        f"two-pass optimizers); vs {BASELINE} = data tok/s / {BASELINE}'s; \"{MISSING}\" = not in the run's "
        f"summary.json.", "",
        test_line, "",
        format_table(rows), "",
    ]
    if items:
        parts += [format_plan_table(items), ""]
    parts.append(f"{verdict}; total {total_s / 60:.1f} min; outputs in {info['out']}")
    return "\n".join(parts) + "\n"


def save_report(out: Path, info: dict, tests: dict | None, rows: list[Row], items: list[Planned],
                total_s: float, pending: int) -> tuple[str, bool]:
    """Judge the rows so far and (re)write <out>/gpu_check.md and .json. Returns (report, ok)."""
    check_memory_target(rows)
    set_baseline_ratios(rows)
    report = format_report(info, tests, rows, total_s, items, pending)
    ok = not pending and all(r.ok for r in rows) and (tests is None or tests["ok"])
    record = dict(info, ok=ok, finished=not pending, total_s=round(total_s, 1),
                  estimate_s=round(sum(i.est_s for i in items), 1),
                  plan=[dict(step=i.name, estimate_s=round(i.est_s, 1), terms=i.terms,
                             actual_s=None if i.took_s is None else round(i.took_s, 1)) for i in items],
                  tests=tests, runs=[r.to_json() for r in rows])
    (out / "gpu_check.md").write_text(report)
    (out / "gpu_check.json").write_text(json.dumps(record, indent=2) + "\n")
    return report, ok


# ----------------------------------------------------------------------------- main
def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help=f"the five-minute profile: runs {', '.join(QUICK_RUNS)}, {QUICK['steps']} steps "
                         f"each, "
                         f"no gpu tests, --budget-min {QUICK['budget_min']:g}")
    ap.add_argument("--smoke", action="store_true",
                    help="CPU, tiny model (512-token vocabulary), batch 8 x 64, 3 steps, no compile")
    ap.add_argument("--plan", action="store_true",
                    help="print the plan and its estimate, then exit (0, or 2 over --budget-min)")
    ap.add_argument("--budget-min", type=float, default=None,
                    help=f"refuse to start when the plan's estimate is over this many minutes (default "
                         f"{QUICK['budget_min']:g} with --quick, {FULL['budget_min']:g} without; none under "
                         f"--smoke)")
    ap.add_argument("--out", type=Path, default=None,
                    help="the one folder everything is written to (default runs/gpu_check/<date-time>)")
    ap.add_argument("--keep-scratch", action="store_true",
                    help="keep <out>/scratch (synthetic shards, compile caches) instead of deleting it")
    ap.add_argument("--nproc", type=int, default=1, help="processes per run; > 1 uses torchrun --standalone")
    ap.add_argument("--steps", type=int, default=None,
                    help=f"train.steps of each run (default {FULL['steps']}; --quick {QUICK['steps']}; "
                         f"smoke {SMOKE['steps']})")
    ap.add_argument("--runs", nargs="+", choices=RUN_NAMES, default=None,
                    help="only these runs (default all; --quick: " + " ".join(QUICK_RUNS) + ")")
    ap.add_argument("--data", type=Path, default=None,
                    help="synthetic shard directory, kept (default <out>/scratch/data, deleted at the end)")
    ap.add_argument("--tests", choices=("auto", "run", "skip"), default="auto",
                    help="the `pytest -m gpu -q` step: auto runs it except under --quick and --smoke")
    ap.add_argument("--timeout", type=float, default=None,
                    help=f"seconds per run before it is stopped (default {FULL['timeout']}; --quick "
                         f"{QUICK['timeout']}; smoke {SMOKE['timeout']})")
    args = ap.parse_args(argv)
    profile = QUICK if args.quick else FULL
    args.profile = profile["name"]
    if args.steps is None:
        args.steps = SMOKE["steps"] if args.smoke else profile["steps"]
    if args.timeout is None:
        args.timeout = SMOKE["timeout"] if args.smoke else profile["timeout"]
    if args.budget_min is None and not args.smoke:
        args.budget_min = profile["budget_min"]
    args.data = None if args.data is None else args.data.resolve()
    args.runs = tuple(n for n in RUN_NAMES if n in (args.runs or profile["runs"]))
    args.run_tests = args.tests == "run" or (args.tests == "auto" and profile["tests"] and not args.smoke)
    if args.steps < 1:
        ap.error(f"--steps {args.steps}: must be >= 1 (the median needs train.timing_warmup + 1 = 3)")
    seqs = (SMOKE if args.smoke else GPU)["global_seqs"]
    if args.nproc < 1 or seqs % args.nproc:
        ap.error(f"--nproc {args.nproc}: must divide the {seqs} sequences of the global batch (1, 2, 4, 8)")
    if args.timeout <= 0:
        ap.error(f"--timeout {args.timeout}: must be positive")
    if args.budget_min is not None and args.budget_min <= 0:
        ap.error(f"--budget-min {args.budget_min:g}: must be positive")
    return args


def _interrupt(signum, frame):
    """SIGTERM (`timeout`, a scheduler's time limit) stops the check as Ctrl-C does: the table so far is
    saved."""
    raise KeyboardInterrupt


def main(argv=None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    now = dt.datetime.now().astimezone()
    items = plan(args)
    where = ("CPU smoke, rough" if args.smoke else
             "minutes on one H100 from a cold start, from the 2026-11-22 step times in results/README.md")
    print(format_plan(items, args.budget_min, where), flush=True)
    refusal = over_budget(items, args.budget_min)
    if refusal:
        print(f"gpu_check: {refusal}", file=sys.stderr, flush=True)
        return 2
    if args.plan:
        return 0
    out = (args.out or REPO / "runs" / "gpu_check" / now.strftime("%Y%m%d-%H%M%S")).resolve()
    scratch = out / SCRATCH
    mode = SMOKE if args.smoke else GPU
    previous = signal.signal(signal.SIGTERM, _interrupt)
    made_scratch = False
    try:
        try:
            device = device_name(args.smoke)
            out.mkdir(parents=True, exist_ok=True)
            made_scratch = not scratch.exists()
            scratch.mkdir(exist_ok=True)
            train_glob, val_glob = ensure_data(args.data or scratch / "data", mode["vocab"],
                                               mode["train_tokens"], mode["val_tokens"],
                                               need_val=mode["global_seqs"] * mode["seq_len"] + 1)
        except (CheckError, OSError) as e:
            print(f"gpu_check: {e}", file=sys.stderr, flush=True)
            return 2
        return _check(args, out, scratch, now, device, items, (train_glob, val_glob), t0)
    finally:
        signal.signal(signal.SIGTERM, previous)
        if made_scratch and not args.keep_scratch:
            shutil.rmtree(scratch, ignore_errors=True)


def _check(args, out: Path, scratch: Path, now, device: str, items: list[Planned], globs, t0: float) -> int:
    """The tests and the runs, the table saved after each; the exit code."""
    mode = SMOKE if args.smoke else GPU
    info = dict(date=now.strftime("%Y-%m-%d %H:%M %Z"), device=device, torch=torch_version(), git=git_sha(),
                smoke=args.smoke, profile=args.profile, nproc=args.nproc, steps=args.steps, out=str(out))
    planned = {i.name: i for i in items}
    planned["setup"].took_s = time.perf_counter() - t0
    print(header_line(info), flush=True)
    env = child_env(scratch)
    runs = build_runs(args, out, *globs)

    tests, rows, interrupted = None, [], False
    try:
        if args.run_tests:
            print("gpu tests: pytest -m gpu -q ...", flush=True)
            tests = run_gpu_tests(out, mode["tests_timeout"], args.smoke, env)
            planned["gpu tests"].took_s = tests["wall_s"]
            verdict = "ok" if tests["ok"] else "FAILED"
            print(f"gpu tests: {verdict} {tests['result']} ({tests['wall_s']:.0f} s)"
                  + ("" if tests["ok"] else f" — {tests['error']}"), flush=True)
        save_report(out, info, tests, rows, items, time.perf_counter() - t0, pending=len(runs))
        print(format_table([]), flush=True)  # the table's head; each row is printed as its run finishes
        for i, run in enumerate(runs, 1):
            est = planned[run.name].est_s if run.name in planned else None
            print(f"[{i}/{len(runs)}] {run.name}: {shlex.join(run.argv)}", flush=True)
            row = execute(run, args.timeout, env)
            rows.append(row)
            if run.name in planned:
                planned[run.name].took_s = row.wall_s
            save_report(out, info, tests, rows, items, time.perf_counter() - t0, pending=len(runs) - i)
            wall = f" in {row.wall_s:.0f} s" if row.wall_s is not None else ""
            plan_s = f" (plan {est:.0f} s)" if est is not None else ""
            print(f"[{i}/{len(runs)}] {run.name}: {'ok' if row.ok else 'FAILED: ' + str(row.error)}"
                  f"{wall}{plan_s}", flush=True)
            print(format_table([row]).splitlines()[-1], flush=True)
    except KeyboardInterrupt:  # the running process group is stopped by now; save what was measured
        interrupted = True
        if len(rows) < len(runs):
            run = runs[len(rows)]
            rows.append(Row(run.name, str(run.run_dir), shlex.join(run.argv), note=run.note,
                            error="interrupted (Ctrl-C or SIGTERM); the remaining runs were not started"))
        print("interrupted: saving the table so far", flush=True)

    total = time.perf_counter() - t0
    report, ok = save_report(out, info, tests, rows, items, total, pending=0)
    print("\n" + report, end="", flush=True)
    estimate = sum(i.est_s for i in items)
    print(f"took {total / 60:.1f} min; the plan estimated {estimate / 60:.1f} min", flush=True)
    if args.budget_min is not None and total > args.budget_min * 60:
        print(f"note: {total / 60:.1f} min is over --budget-min {args.budget_min:g}: this machine is slower "
              f"than the plan's costs (GPU_COSTS in scripts/gpu_check.py); lower --steps or leave runs "
              "out", flush=True)
    print(f"saved {out / 'gpu_check.md'} and {out / 'gpu_check.json'}", flush=True)
    return 130 if interrupted else 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
