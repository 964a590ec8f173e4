"""The tuned CPU proxy study: every optimizer of the papers' five figures, each at its own best learning rate
(and β/q), three seeds, on a GPT whose hidden matrices hold most of the parameters. One command:

    python scripts/proxy_study.py --results results/proxy --parallel 2       # 107 runs: 65 min on 2 cores
    python scripts/proxy_study.py --dry-run                                  # what is done, what is next
    python scripts/proxy_study.py --report-only                              # tables and figures only

Setting (configs/experiment/proxy.yaml, proxy_small.yaml): model=proxy (4 layers, d_model 128, 0.82M
parameters, 96% in hidden matrices; GPT-124M has 69%), data=shakespeare_bytes (make it with
``python -m data.shakespeare --tokenizer bytes``), 150 steps of 16 x 128 bytes (the papers' B=512) or
4 x 128 (B=128, the Gluon-MVR paper's Fig. 2), Gluon's sign-LMO radius rescaled to d_model 128
(optimizer.embed_scale=500, the paper's per-entry move).

Variants: muon, muon_mvr1/2/3, gluon, gluon_mvr1/2/3 (reading A), gluon_mvr3_b, gluon_mvr3_c at the large
batch; gluon and gluon_mvr1 also at the small batch (``name@small`` on the command line). The phases:

    1   a learning-rate grid at seed 0: the paper's lr (configs/optimizer/<name>.yaml: Muon family 3e-3,
        Gluon family 3.6e-4) times --lr-factors (1/3 1 3 10); and seeds 1, 2 at the paper's lr
    1b  when the best lr of the grid is its smallest or largest, one more value beyond that edge
        (--extend-low 1/10, --extend-high 30 times the paper's lr)
    2   seeds 1, 2 at each variant's best lr (best: the lowest final validation loss at seed 0)
    3   the MVR estimators: one alternative β or q at the best lr, seed 0 (ALTERNATIVES); if it beats the
        default at seed 0, seeds 1 and 2 of it too (3b)

A phase is planned as soon as what it depends on has finished, and the loop runs until nothing is left,
at most --parallel runs at a time (scripts/sweep.py's launcher, one thread per run, niced by --nice).
Completed runs (rundir.completion) are skipped, so an interrupted study resumes where it stopped. A run
whose loss, parameters or optimizer state became non-finite is diverged (train.py records it in its
summary.json: status "diverged", harness/rundir.py) and counts as an infinite loss; any other failure
stops the study, naming the run and its log.

Run directories, each a normal train.py run directory (config.yaml, metrics.jsonl, summary.json, train.log;
ckpt/ is deleted once the run is complete, and the launcher's copy of the log with it):

    <results>/<optimizer>_b<B>_lr<lr>_s<seed>[_<key><value>]    e.g. gluon_mvr1_b16_lr3.6e-4_s0_beta0.95

Outputs in <results>: tables.md (at the papers' hyperparameters; each at its best; the lr grid; the β/q
table; the timing; a paragraph of what the runs show, generated from the numbers), summary.csv (one row per
run), figures/<figure>.png and .pdf (each paper figure with every optimizer at its best setting, plus
gluon_mvr3_readings with the three Gluon-MVR-3 readings, drawn by scripts/make_figures.py's plot_figure;
lr_grid.png/.pdf). Differences to a figure's baseline (Gluon for Gluon-MVR, Muon for MuonMVR, at the same
batch) are paired by seed; |Δ| < 2 x the std of the paired differences is reported as within noise.

Code: scripts/proxy_plan.py (the variants, the phases, run state), scripts/proxy_report.py (statistics,
tables, the generated paragraph, figures); this file is the command.

Size overrides (for a toy run or another machine): --variants, --lr-factors, --seeds, --large-batch,
--small-batch, and Hydra overrides after ``--`` (e.g. ``-- train.steps=300``), applied to every run.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import time
from pathlib import Path

from harness import rundir
from scripts import sweep
from scripts.proxy_plan import (
    EXPERIMENTS,
    EXTEND_HIGH,
    EXTEND_LOW,
    LR_FACTORS,
    SEEDS,
    VARIANT_IDS,
    Plan,
    Runs,
    StudyError,
    Variant,
    classify,
    make_plan,
    mark_diverged,
    parse_variants,
    read_outcome,
    steps_of,
    tidy,
)
from scripts.proxy_report import report


# ----------------------------------------------------------------------------- CLI
def parse_factor(text: str) -> float:
    try:
        if "/" in text:
            a, b = text.split("/", 1)
            value = float(a) / float(b)
        else:
            value = float(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number or a fraction like 1/3") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: an lr factor must be positive")
    return value


def parse_args(argv=None):
    argv, extra = sweep.split_passthrough(argv)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=Path("results/proxy"),
                    help="parent of the run directories and the outputs (default results/proxy)")
    ap.add_argument("--variants", nargs="+", default=list(VARIANT_IDS),
                    help="optimizers to study; name@small for the small batch (default: "
                         + " ".join(VARIANT_IDS) + ")")
    ap.add_argument("--lr-factors", nargs="+", type=parse_factor, default=list(LR_FACTORS),
                    help="multiples of the paper's lr in the grid (default 1/3 1 3 10)")
    ap.add_argument("--extend-low", type=parse_factor, default=EXTEND_LOW,
                    help="grid value added below when the best is the smallest (default 1/10)")
    ap.add_argument("--extend-high", type=parse_factor, default=EXTEND_HIGH,
                    help="grid value added above when the best is the largest (default 30)")
    ap.add_argument("--no-extend", action="store_true", help="never add a value beyond the grid's edges")
    ap.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS),
                    help="seeds (default 0 1 2); the grid and the β/q choice use the first")
    ap.add_argument("--large-batch", type=int, default=None,
                    help="global batch (sequences) of the large-batch runs (default: experiment proxy's, 16)")
    ap.add_argument("--small-batch", type=int, default=None,
                    help="global batch (sequences) of the @small runs (default: experiment proxy_small's, 4)")
    ap.add_argument("--parallel", type=int, default=2, help="runs at a time (default 2)")
    ap.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS per run (default 1)")
    ap.add_argument("--nice", type=int, default=5,
                    help="niceness added to the study and its runs (default 5)")
    ap.add_argument("--python", default=sys.executable, help="interpreter for train.py (default: this one)")
    ap.add_argument("--progress-every", type=float, default=120.0, help="seconds between progress lines")
    what = ap.add_mutually_exclusive_group()
    what.add_argument("--dry-run", action="store_true",
                      help="print the runs known now (done / to run) and what waits on them; run nothing")
    what.add_argument("--report-only", action="store_true",
                      help="write tables.md, summary.csv and the figures from the finished runs; run nothing")
    args = ap.parse_args(argv)
    args.extra = extra
    for name in ("parallel", "threads"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be at least 1")
    for name in ("large_batch", "small_batch"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1 sequence")
    if len(set(args.seeds)) != len(args.seeds):
        ap.error(f"--seeds {args.seeds} repeats a seed")
    clash = sorted({sweep.override_key(o) for o in extra}
                   & {"experiment", "optimizer", "seed", "run_dir", "run_name", "optimizer.lr"})
    if clash:
        ap.error(f"the study sets {clash} itself; use --variants / --seeds / --lr-factors / --results "
                 f"instead of passing them after --")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    say = lambda msg: print(f"[proxy {time.strftime('%H:%M:%S')}] {msg}", flush=True)  # noqa: E731
    results = (args.results if args.results.is_absolute() else Path.cwd() / args.results).resolve()
    large = args.large_batch or rundir.experiment_batch(EXPERIMENTS["large"])
    small = args.small_batch or rundir.experiment_batch(EXPERIMENTS["small"])
    try:
        variants = parse_variants(args.variants, large, small)
    except (StudyError, ValueError) as e:
        print(f"error: --variants: {e}", file=sys.stderr)
        return 2
    extend = None if args.no_extend else (args.extend_low, args.extend_high)
    runs = Runs(results, args.extra, {"large": large, "small": small})
    argv = list(sys.argv[1:] if argv is None else argv)
    command = shlex.join(["python", "scripts/proxy_study.py", *[a for a in argv if a != "--report-only"]])
    try:
        steps = steps_of(runs)

        def current() -> Plan:
            return make_plan(variants, read_outcome(results, steps), args.lr_factors, args.seeds, extend)

        if args.dry_run:
            plan = current()
            known = [runs.run(s) for s in plan.specs]
            for i, run in enumerate(known):
                run.index = i
                classify(run)
            counts = {k: sum(r.status == k for r in known) for k in ("done", "diverged", "resume", "new")}
            say(f"{len(known)} runs known now ({counts['done']} done, {counts['diverged']} diverged, "
                f"{counts['resume']} to resume, {counts['new']} new) under {sweep.display_path(results)}; "
                f"{len(plan.pending)} decision(s) wait on them")
            for run in known:
                note = f" ({run.detail})" if run.detail else ""
                print(f"[{run.index}] {run.status:<8} {run.label} -> {sweep.display_path(run.run_dir)}{note}")
                if run.status in ("new", "resume"):
                    print("    " + sweep.shell_command(run, 1, args.python))
            for p in plan.pending:
                print(f"waiting: {p}")
            return 0
        if not args.report_only:
            if args.nice:
                os.nice(args.nice)  # inherited by every train.py the launcher starts
            signal.signal(signal.SIGTERM, sweep._raise_interrupt)
            t0, launched = time.time(), 0
            for _ in range(20):  # each round runs everything decidable; the phases need at most 4
                plan = current()
                known = [runs.run(s) for s in plan.specs]
                for i, run in enumerate(known):
                    run.index = i
                    classify(run)
                    if run.status == "done":
                        tidy(run)
                todo = [r for r in known if r.status in ("new", "resume")]
                if not todo:
                    break
                # the longest first (two-pass, large batch), so that the two cores finish a round together
                todo.sort(key=lambda r: -Variant(r.optimizer, "large", r.global_seqs).passes * r.global_seqs)
                say(f"round: {len(todo)} run(s) to do of {len(known)} known; waiting on them: "
                    + ("; ".join(plan.pending) or "nothing"))
                failed = sweep.execute(todo, 1, args.parallel, args.python, args.threads, [],
                                       args.progress_every, say, drop=True)
                launched += len(todo)
                hard = [r for r in failed if not mark_diverged(r, say)]
                for run in todo:
                    if run not in failed:
                        tidy(run)
                if hard:
                    raise StudyError(f"{len(hard)} run(s) failed (not by divergence): " + "; ".join(
                        f"{r.name}: see {sweep.display_path(r.run_dir)}/launcher.out" for r in hard)
                        + ". Fix the cause and rerun the same command: finished runs are kept")
            else:
                raise StudyError("the plan kept growing after 20 rounds; this is a bug in make_plan")
            say(f"all {len(plan.specs)} runs finished ({launched} run now, in {time.time() - t0:.0f} s)")
        plan = current()
        out = report(plan, results, steps, args.seeds, large, small, say, command)
    except StudyError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume (finished runs are kept)", file=sys.stderr)
        return 130
    finally:
        runs.close()
    print(out["tables"].read_text())
    for p in [out["tables"], out["csv"], *out["figures"]]:
        say(f"wrote {sweep.display_path(p)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
