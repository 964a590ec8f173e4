"""Launch a sweep of train.py runs, one process per run, skipping finished runs and resuming unfinished ones.

    python scripts/sweep.py --experiments fig1 fig3 --seeds 0 1 2        # full scale, one process each
    python scripts/sweep.py --nproc 8 --seeds 0 1 2                      # all five figures, torchrun x 8
    python scripts/sweep.py --results results/small --large-batch 16 --small-batch 4 --parallel 2 \\
        -- model=tiny data=shakespeare train.steps=300                   # small scale on a CPU
    python scripts/sweep.py ... --dry-run                                # the plan and the commands

Each experiment (configs/experiment/<name>.yaml; by default the paper figures, rundir.figure_experiments())
contributes the optimizers of its `figure.optimizers` (or those given with --optimizers) for every seed.
A run is named by what it trains, not by the figure it appears in (rundir.run_name):

    <results>/<optimizer>_b<global batch in sequences>_s<seed>        e.g. results/gluon_b512_s0

--large-batch / --small-batch replace the papers' 512 / 128 sequences of the experiments at that batch
(rundir.experiment_batch reads which one an experiment selects).

so the Gluon baseline at B=512, which figs. 1, 3 and 4 all compare against, runs once and every figure
finds it (scripts/make_figures.py looks runs up by optimizer, batch and seed). Two planned runs that
would share a directory must resolve to the same config apart from `figure`/`run_name`; otherwise the
sweep stops before launching anything.

Before launching, each run directory is classified (the run-directory contract is harness/rundir.py's):
    done     rundir.completion: summary.json says completed and metrics.jsonl has steps 1..train.steps
             with a final val_loss: skipped
    resume   a checkpoint exists: rerun with resume=auto, which continues from it
    new      nothing yet (or only stale metrics without a checkpoint: the trainer starts over)
An existing run directory whose config.yaml differs from the planned config (another step count, batch,
learning rate, ...) is an error rather than being resumed into a different run.

Slurm (or any scheduler): the plan is deterministic, so a job array can run one planned run per task:
    N=$(python scripts/sweep.py <same args> --count)
    sbatch --array=0-$((N-1)) --gpus-per-node=8 --wrap \\
        "python scripts/sweep.py <same args> --nproc 8 --task-index \\$SLURM_ARRAY_TASK_ID"
or feed `--print-commands` (one shell command per run still to do) to your own submission script.
Each process's stdout and stderr go to <run_dir>/launcher.out; the sweep exits non-zero naming failed runs.
--drop-ckpt removes <run_dir>/ckpt of each completed run (metrics, config, summary and logs stay; a completed
run is recognised by those alone), which keeps a many-run CPU sweep's disk use small.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness import rundir

REPO = Path(__file__).resolve().parents[1]

MANAGED_KEYS = ("experiment", "optimizer", "seed", "run_dir", "run_name")


# ----------------------------------------------------------------------------- planning
@dataclass
class Run:
    run_dir: Path  # absolute
    optimizer: str
    global_seqs: int
    seed: int
    steps: int
    experiments: list[str]
    overrides: list[str]  # hydra overrides, run_dir last
    config: dict  # resolved config
    index: int = 0
    status: str = ""  # done | resume | new
    detail: str = ""

    @property
    def name(self) -> str:
        return self.run_dir.name

    @property
    def label(self) -> str:
        return f"{self.optimizer} B={self.global_seqs} seed={self.seed} ({'/'.join(self.experiments)})"


def display_path(path: Path) -> str:
    """A path relative to the repository root when it lies inside it (what train.py, run from there, sees)."""
    try:
        return str(path.relative_to(REPO))
    except ValueError:
        return str(path)


def override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def config_diff(a: dict, b: dict) -> list[str]:
    """Keys whose values differ, as 'key: a -> b': the trainer's own comparison
    (harness/checkpoint.py `config_changes`, which skips the keys harness/config.py declares free on
    resume), so the sweep refuses exactly what a resume would refuse (keys newer than a run's config
    count as unchanged at their defaults)."""
    from harness.checkpoint import config_changes

    return [f"{k}: {va!r} -> {vb!r}" for k, va, vb in config_changes(a, b)]


class Composer:
    """Hydra compose of configs/, exactly as `python train.py <overrides>` resolves it."""

    def __call__(self, overrides: list[str]) -> dict:
        from omegaconf import OmegaConf

        from harness.config import compose_config

        return OmegaConf.to_container(compose_config(overrides), resolve=True, enum_to_str=True)

    def close(self) -> None:
        """Nothing to release: every config is composed on its own (harness/config.py `compose_config`)."""


def plan(experiments: list[str], seeds: list[int], optimizers: list[str] | None, results: Path,
         extra: list[str], large_batch: int | None = None, small_batch: int | None = None,
         composer: Composer | None = None) -> list[Run]:
    """The deduplicated list of runs, in a stable order (experiment, optimizer, seed as given)."""
    clash = sorted({override_key(o) for o in extra} & set(MANAGED_KEYS))
    if clash:
        raise SystemExit(f"error: the sweep sets {clash} itself; use --experiments/--optimizers/--seeds/"
                         f"--results instead of passing them after --")
    own = composer is None
    composer = composer or Composer()
    batch_for = {"large": large_batch, "small": small_batch}
    runs: dict[Path, Run] = {}
    try:
        for exp in experiments:
            base = composer([f"experiment={exp}", *extra])
            exp_optimizers = optimizers or base.get("figure", {}).get("optimizers") or []
            if not exp_optimizers:
                raise SystemExit(f"error: experiment {exp} lists no figure.optimizers; pass --optimizers")
            scaled = batch_for.get(rundir.BATCH_ROLES.get(rundir.experiment_batch(exp), ""))
            unchanged = scaled in (None, base["batch"]["global_seqs"])
            scale = [] if unchanged else [f"batch.global_seqs={scaled}"]
            for opt in exp_optimizers:
                for seed in seeds:
                    ov = [f"experiment={exp}", f"optimizer={opt}", f"seed={seed}", *extra, *scale]
                    cfg = composer(ov)
                    b = cfg["batch"]["global_seqs"]
                    run_dir = results / rundir.run_name(cfg["optimizer"]["name"], b, seed)
                    ov.append(f"run_dir={display_path(run_dir)}")
                    cfg["run_dir"] = display_path(run_dir)
                    if run_dir in runs:
                        first = runs[run_dir]
                        diff = config_diff(first.config, cfg)
                        if diff:
                            raise SystemExit(
                                f"error: {first.experiments[0]} and {exp} both need {display_path(run_dir)} "
                                f"({opt}, B={b}, seed {seed}) but resolve to different configs: "
                                + "; ".join(diff[:6]) + ". Run them with different --results.")
                        if exp not in first.experiments:
                            first.experiments.append(exp)
                        continue
                    runs[run_dir] = Run(run_dir=run_dir, optimizer=cfg["optimizer"]["name"], global_seqs=b,
                                        seed=seed, steps=cfg["train"]["steps"], experiments=[exp],
                                        overrides=ov, config=cfg)
    finally:
        if own:
            composer.close()
    out = list(runs.values())
    for i, r in enumerate(out):
        r.index = i
    return out


# ----------------------------------------------------------------------------- run state
def classify(run: Run) -> None:
    """Set run.status to done | resume | new (with run.detail), or raise SystemExit on a config clash."""
    d = run.run_dir
    old = rundir.read_config(d)
    if old is not None:
        diff = config_diff(old, run.config)
        if diff:
            raise SystemExit(
                f"error: {display_path(d)} holds a run with a different config than planned for {run.label}: "
                + "; ".join(diff[:6]) + ". Use another --results, or delete that directory to start it over.")
    ok, why = rundir.completion(d, run.steps)
    try:
        summary = rundir.read_summary(d) or {}
    except ValueError:  # unreadable: not a completed run (completion says why)
        summary = {}
    completed = summary.get("completed") is True
    latest = d / rundir.CKPT / "LATEST"
    if ok:
        run.status, run.detail = "done", ""
    elif latest.exists():
        rec = rundir.last_record(d)
        run.status = "resume"
        run.detail = f"from {latest.read_text().strip()}"
        if rec:
            run.detail += f", metrics at step {rec['step']}"
    elif completed:  # summary but no checkpoint to continue from and incomplete metrics
        raise SystemExit(f"error: {display_path(d)} has {rundir.SUMMARY} but {why} and no checkpoint to "
                         f"resume from; delete that directory to run {run.label} again")
    else:
        run.status, run.detail = "new", ("stale metrics, no checkpoint: starts over" if (d / rundir.METRICS)
                                         .exists() else "")


# ----------------------------------------------------------------------------- commands
def command(run: Run, nproc: int, python: str) -> list[str]:
    if nproc > 1:
        # the same as `torchrun --standalone --nproc_per_node=N`, without relying on PATH
        head = [python, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    else:
        head = [python]
    return [*head, "train.py", *run.overrides]


def shell_command(run: Run, nproc: int, python: str) -> str:
    return f"cd {shlex.quote(str(REPO))} && " + shlex.join(command(run, nproc, python))


@dataclass
class Job:
    run: Run
    proc: subprocess.Popen
    start: float
    log: object
    gpus: list[str] = field(default_factory=list)


def launch(run: Run, nproc: int, python: str, threads: int, gpus: list[str]) -> Job:
    run.run_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
    log = open(run.run_dir / "launcher.out", "a")
    log.write(f"# sweep: {shlex.join(command(run, nproc, python))}\n")
    log.flush()
    proc = subprocess.Popen(command(run, nproc, python), cwd=REPO, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    return Job(run, proc, time.time(), log, gpus)


def tail(path: Path, n: int = 15) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join("    " + ln for ln in lines[-n:])


def stop(jobs: list[Job]) -> None:
    for job in jobs:
        if job.proc.poll() is None:
            with_suppressed(os.killpg, job.proc.pid, signal.SIGTERM)
    deadline = time.time() + 20
    for job in jobs:
        try:
            job.proc.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            with_suppressed(os.killpg, job.proc.pid, signal.SIGKILL)
        job.log.close()


def with_suppressed(fn, *args) -> None:
    try:
        fn(*args)
    except (ProcessLookupError, PermissionError):
        pass


def drop_ckpt(run: Run, say) -> None:
    ckpt = run.run_dir / rundir.CKPT
    if ckpt.is_dir():
        shutil.rmtree(ckpt)
        say(f"removed {display_path(ckpt)} (--drop-ckpt)")


def execute(todo: list[Run], nproc: int, parallel: int, python: str, threads: int, gpus: list[str],
            progress_every: float, say, drop: bool = False) -> list[Run]:
    """Run `todo` with at most `parallel` processes at a time. Returns the runs that failed."""
    pending, running, failed = list(todo), [], []
    free_gpus = [gpus[i * nproc:(i + 1) * nproc] if gpus else [] for i in range(parallel)]
    total, finished, last_progress = len(todo), 0, time.time()
    try:
        while pending or running:
            while pending and free_gpus:
                run = pending.pop(0)
                job = launch(run, nproc, python, threads, free_gpus.pop(0))
                running.append(job)
                how = f"resume {run.detail}" if run.status == "resume" else "new"
                say(f"start [{run.index}] {run.label} -> {display_path(run.run_dir)} "
                    f"({how}; pid {job.proc.pid})")
            time.sleep(0.2)
            for job in list(running):
                rc = job.proc.poll()
                if rc is None:
                    continue
                running.remove(job)
                job.log.close()
                free_gpus.append(job.gpus)
                finished += 1
                run, secs = job.run, time.time() - job.start
                ok, why = rundir.completion(run.run_dir, run.steps)
                if rc == 0 and ok:
                    val = rundir.last_record(run.run_dir)["val_loss"]
                    say(f"done  [{run.index}] {run.label} in {secs:.0f} s, final val_loss {val:.4f} "
                        f"({finished}/{total} finished, {len(failed)} failed)")
                    if drop:
                        drop_ckpt(run, say)
                else:
                    failed.append(run)
                    reason = f"exit code {rc}" if rc != 0 else f"exit code 0 but {why}"
                    say(f"FAIL  [{run.index}] {run.label}: {reason}; "
                        f"log {display_path(run.run_dir)}/launcher.out:\n"
                        + tail(run.run_dir / "launcher.out"))
            if progress_every and running and time.time() - last_progress >= progress_every:
                last_progress = time.time()
                parts = []
                for job in running:
                    rec = rundir.last_record(job.run.run_dir)
                    parts.append(f"{job.run.name} step {rec['step'] if rec else 0}/{job.run.steps}")
                say(f"running: {', '.join(parts)}; {len(pending)} queued, {finished}/{total} finished")
    except KeyboardInterrupt:
        say("interrupted: stopping running jobs (rerun the same command to resume them)")
        stop(running)
        raise SystemExit(130) from None
    return failed


# ----------------------------------------------------------------------------- CLI
def split_passthrough(argv) -> tuple[list[str], list[str]]:
    """(this script's arguments, the train.py overrides after `--`); argv None means sys.argv[1:]."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        return argv, []
    cut = argv.index("--")
    return argv[:cut], argv[cut + 1:]


def parse_args(argv=None):
    argv, extra = split_passthrough(argv)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    figures = rundir.figure_experiments()
    ap.add_argument("--experiments", nargs="+", default=figures,
                    help=f"experiment configs to sweep (default, the paper figures: {' '.join(figures)})")
    ap.add_argument("--optimizers", nargs="+", default=None,
                    help="optimizers to run under every experiment (default: its figure.optimizers)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--results", type=Path, default=Path("results"),
                    help="parent of the run directories <optimizer>_b<B>_s<seed> (default: results)")
    ap.add_argument("--large-batch", type=int, default=None,
                    help="global batch (sequences) for experiments at the papers' 512 (default: 512)")
    ap.add_argument("--small-batch", type=int, default=None,
                    help="global batch (sequences) for experiments at the papers' 128 (default: 128)")
    ap.add_argument("--nproc", type=int, default=1,
                    help="processes per run; more than 1 launches torchrun --standalone")
    ap.add_argument("--parallel", type=int, default=1, help="runs at a time (default 1)")
    ap.add_argument("--threads", type=int, default=None,
                    help="OMP_NUM_THREADS per process (default: CPU cores // (parallel * nproc), at least 1)")
    ap.add_argument("--gpus", default=None,
                    help="comma-separated GPU ids shared out, nproc per concurrent run (e.g. 0,1,2,3)")
    ap.add_argument("--python", default=sys.executable, help="interpreter for train.py (default: this one)")
    ap.add_argument("--drop-ckpt", action="store_true",
                    help="delete <run_dir>/ckpt once a run is complete (also of runs found complete)")
    ap.add_argument("--progress-every", type=float, default=60.0,
                    help="seconds between progress lines (0: off)")
    what = ap.add_mutually_exclusive_group()
    what.add_argument("--dry-run", action="store_true", help="print the plan and each command; run nothing")
    what.add_argument("--print-commands", action="store_true",
                      help="print one shell command per run still to do (for a scheduler); run nothing")
    what.add_argument("--count", action="store_true",
                      help="print the number of planned runs (for a job array)")
    what.add_argument("--task-index", type=int, default=None,
                      help="run only planned run number I (0-based, as --dry-run lists them): one array task")
    args = ap.parse_args(argv)
    args.extra = extra
    if args.nproc < 1 or args.parallel < 1:
        ap.error("--nproc and --parallel must be at least 1")
    args.gpus = [g for g in args.gpus.split(",") if g] if args.gpus else []
    if args.gpus and len(args.gpus) < args.nproc * args.parallel:
        ap.error(f"--gpus lists {len(args.gpus)} devices but --parallel {args.parallel} x --nproc "
                 f"{args.nproc} needs {args.nproc * args.parallel}")
    return args


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None) -> int:
    args = parse_args(argv)
    say = lambda msg: print(f"[sweep {time.strftime('%H:%M:%S')}] {msg}", flush=True)
    results = (args.results if args.results.is_absolute() else Path.cwd() / args.results).resolve()
    runs = plan(args.experiments, args.seeds, args.optimizers, results, args.extra,
                args.large_batch, args.small_batch)
    if args.count:
        print(len(runs))
        return 0
    if args.task_index is not None:
        if not 0 <= args.task_index < len(runs):
            raise SystemExit(f"error: --task-index {args.task_index} is outside the plan of {len(runs)} runs "
                             f"(0..{len(runs) - 1})")
        runs = [runs[args.task_index]]
    for run in runs:
        classify(run)
    todo = [r for r in runs if r.status != "done"]

    if args.print_commands:
        for run in todo:
            print(shell_command(run, args.nproc, args.python))
        return 0
    counts = {s: sum(r.status == s for r in runs) for s in ("done", "resume", "new")}
    say(f"{len(runs)} runs ({counts['done']} done, {counts['resume']} to resume, {counts['new']} new) "
        f"under {display_path(results)}")
    if args.dry_run:
        for run in runs:
            note = f" ({run.detail})" if run.detail else ""
            print(f"[{run.index}] {run.status:<6} {run.label} -> {display_path(run.run_dir)}{note}")
            if run.status != "done":
                print("    " + shell_command(run, args.nproc, args.python))
        return 0
    for run in runs:
        if run.status == "done":
            say(f"skip  [{run.index}] {run.label}: complete in {display_path(run.run_dir)}")
            if args.drop_ckpt:
                drop_ckpt(run, say)
    if not todo:
        say("nothing to do")
        return 0
    threads = args.threads or max(1, (os.cpu_count() or 1) // (args.parallel * args.nproc))
    signal.signal(signal.SIGTERM, _raise_interrupt)  # scancel / kill: stop the children too
    t0 = time.time()
    failed = execute(todo, args.nproc, args.parallel, args.python, threads, args.gpus, args.progress_every,
                     say, args.drop_ckpt)
    say(f"finished {len(todo) - len(failed)} of {len(todo)} runs in {time.time() - t0:.0f} s")
    if failed:
        say(f"{len(failed)} run(s) FAILED:")
        for run in failed:
            print(f"  [{run.index}] {run.label}: {display_path(run.run_dir)}/launcher.out", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
