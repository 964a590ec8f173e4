"""What the command lines that launch runs share: their launch options, the scheduler modes, and the loop
that launches a plan until nothing is left (a plan may grow as its runs finish: a tuned study's phases)."""

from __future__ import annotations

import argparse
import os
import sys
import time

from harness import rundir
from study import launch

ROUNDS = 20  # a plan that still grows after this many rounds is a bug in its kind


def add_launch_arguments(
    ap: argparse.ArgumentParser, parallel: int = 1, progress_every: float = 60.0
) -> None:
    ap.add_argument("--nproc", type=int, default=1, help="processes per run; more than 1 launches torchrun")
    ap.add_argument("--parallel", type=int, default=parallel, help=f"runs at a time (default {parallel})")
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="OMP_NUM_THREADS per process (default: CPU cores // (parallel * nproc), at least 1)",
    )
    ap.add_argument(
        "--gpus",
        default=None,
        help="comma-separated GPU ids shared out, nproc per concurrent run (e.g. 0,1,2,3)",
    )
    ap.add_argument("--python", default=sys.executable, help="interpreter for train.py (default: this one)")
    ap.add_argument("--nice", type=int, default=0, help="niceness added to this command and its runs")
    ap.add_argument(
        "--progress-every", type=float, default=progress_every, help="seconds between progress lines (0: off)"
    )
    what = ap.add_mutually_exclusive_group()
    what.add_argument("--dry-run", action="store_true", help="print the runs known now and their commands")
    what.add_argument(
        "--print-commands",
        action="store_true",
        help="print one shell command per run still to do (for a scheduler); run nothing",
    )
    what.add_argument("--count", action="store_true", help="print the number of planned runs (a job array)")
    what.add_argument(
        "--task-index",
        type=int,
        default=None,
        help="run only planned run number I (0-based, as --dry-run lists them): one array task",
    )


def check_launch_arguments(ap: argparse.ArgumentParser, args) -> None:
    if args.nproc < 1 or args.parallel < 1 or (args.threads is not None and args.threads < 1):
        ap.error("--nproc, --parallel and --threads must be at least 1")
    args.gpus = [g for g in args.gpus.split(",") if g] if args.gpus else []
    if args.gpus and len(args.gpus) < args.nproc * args.parallel:
        ap.error(
            f"--gpus lists {len(args.gpus)} devices but --parallel {args.parallel} x --nproc "
            f"{args.nproc} needs {args.nproc * args.parallel}"
        )


def split_passthrough(argv) -> tuple[list[str], list[str]]:
    """(the command's own arguments, the train.py overrides after `--`); None means sys.argv[1:]."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        return argv, []
    cut = argv.index("--")
    return argv[:cut], argv[cut + 1 :]


def sayer(name: str):
    return lambda msg: print(f"[{name} {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def drive(plan, args, say, tidy: bool = False) -> int:
    """Launch what `plan()` -> (runs, pending) lists until nothing is left, or do the scheduler mode args
    asks for. `tidy`: a finished run keeps only config, metrics, summary and log (no ckpt/, no launcher
    log). Returns the exit code: 0, or 1 naming the runs that failed (diverged runs count as finished)."""
    pool = launch.Pool(
        args.nproc, args.parallel, args.threads, args.gpus, args.python, say, args.progress_every
    )
    done_now = 0
    for _ in range(ROUNDS):
        runs, pending = plan()
        for i, run in enumerate(runs):
            run.index = i
            launch.state(run)
        if args.count:
            print(len(runs))
            return 0
        if args.task_index is not None:
            if not 0 <= args.task_index < len(runs):
                raise launch.LaunchError(
                    f"--task-index {args.task_index} is outside the plan of {len(runs)} "
                    f"runs (0..{len(runs) - 1})"
                )
            runs = [runs[args.task_index]]
        todo = [r for r in runs if r.status in ("new", "resume")]
        if args.print_commands:
            for run in todo:
                print(launch.shell_command(pool.argv(run)))
            return 0
        counts = {s: sum(r.status == s for r in runs) for s in ("done", "diverged", "resume", "new")}
        say(
            f"{len(runs)} runs known now ({', '.join(f'{n} {s}' for s, n in counts.items())})"
            + (f"; waiting on them: {'; '.join(pending)}" if pending else "")
        )
        if args.dry_run:
            for run in runs:
                note = f" ({run.detail})" if run.detail else ""
                print(
                    f"[{run.index}] {run.status:<8} {run.label} -> {launch.display_path(run.run_dir)}{note}"
                )
                if run.status in ("new", "resume"):
                    print("    " + launch.shell_command(pool.argv(run)))
            return 0
        for run in runs:
            if run.status == "done" and tidy:
                clean(run.run_dir)
        if not todo:
            if done_now:
                say(f"finished the {done_now} run(s) launched")
            return 0
        if args.nice:
            os.nice(args.nice)  # inherited by every process the pool starts
            args.nice = 0
        failed = pool.run(todo, on_done=(lambda r: clean(r.run_dir)) if tidy else None)
        hard = [r for r in failed if not is_diverged(r, say)]
        done_now += len(todo) - len(hard)
        if hard:
            say(f"{len(hard)} run(s) FAILED:")
            for run in hard:
                print(
                    f"  [{run.index}] {run.label}: {launch.display_path(run.run_dir)}/{launch.LAUNCHER_LOG}",
                    flush=True,
                )
            return 1
        if args.task_index is not None:
            return 0
    raise launch.LaunchError(f"the plan kept growing after {ROUNDS} rounds")


def clean(run_dir) -> None:
    launch.drop_ckpt(run_dir)
    (run_dir / launch.LAUNCHER_LOG).unlink(missing_ok=True)


def is_diverged(run, say) -> bool:
    """A failed run that stopped on a non-finite value (its summary.json says so) counts as finished."""
    try:
        reason = rundir.diverged(run.run_dir)
    except ValueError:
        return False
    if reason is None:
        return False
    launch.drop_ckpt(run.run_dir)
    say(f"diverged [{run.index}] {run.label}: {reason} (it counts as an infinite loss)")
    return True
