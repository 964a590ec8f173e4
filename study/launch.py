"""Starting train.py processes: the one launcher every script that trains goes through.

- `train_argv(overrides, nproc)`: ``python train.py <overrides>``, or under torchrun
  (``python -m torch.distributed.run --standalone --nproc_per_node=N``: nothing needed on PATH) for N > 1.
- `shell_command(argv)`: the same as one shell line run from the repository root, for a scheduler (a Slurm
  job array runs one planned run per task; see scripts/sweep.py).
- `run_one(argv, log, timeout)`: one process, its output in `log`, stopped with its whole process group at
  the timeout or on Ctrl-C; returns its exit code, wall time and the line it died of.
- `Pool`: planned runs, at most `parallel` at a time, each with `threads` OMP threads and its share of the
  GPUs, its output in ``<run_dir>/launcher.out``; reports each start, finish and failure.
- `state(run)`: what a planned run's directory holds (harness/rundir.py is the contract): ``done``
  (rundir.completion), ``diverged`` (summary.json says so), ``resume`` (a checkpoint to continue from, which
  train.py's resume=auto does) or ``new``; a directory holding a run of another config is an error.

Nothing here imports Hydra until `Composer` is used, so the GPU check runs where only torch is installed.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness import rundir
from study import REPO

LAUNCHER_LOG = "launcher.out"  # a launched run's stdout and stderr, in its run directory


class LaunchError(RuntimeError):
    """A run cannot be launched as planned; the message names the run directory and the fix."""


# ----------------------------------------------------------------------------- commands
def train_argv(overrides: list[str], nproc: int = 1, python: str = sys.executable) -> list[str]:
    """The command of one training run with these Hydra overrides, on `nproc` processes."""
    head = [python]
    if nproc > 1:
        head += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    return [*head, "train.py", *overrides]


def shell_command(argv: list[str]) -> str:
    """`argv` as one shell line that can run from anywhere: cd to the repository root first."""
    return f"cd {shlex.quote(str(REPO))} && " + shlex.join(argv)


def display_path(path: Path) -> str:
    """A path relative to the repository root when it lies inside it (what train.py, run from there, sees)."""
    try:
        return str(Path(path).relative_to(REPO))
    except ValueError:
        return str(path)


def override_key(override: str) -> str:
    """The key an override sets: ``+optimizer.groups.embed={...}`` -> ``optimizer.groups.embed``."""
    return override.split("=", 1)[0].lstrip("+~")


def hydra_value(value) -> str:
    """A value safe inside a Hydra override: anything beyond [A-Za-z0-9_.+-/] (a glob's `*`, a space) is
    double-quoted, which Hydra reads as a plain string."""
    s = str(value)
    return s if re.fullmatch(r"[\w.+\-/]*", s) else '"' + s.replace('"', '\\"') + '"'


def environment(threads: int | None = None, gpus: list[str] | None = None, extra: dict | None = None) -> dict:
    """This process's environment for a child: its OMP/MKL threads, its GPUs, unbuffered output."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", **(extra or {}))
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
    return env


def start(argv: list[str], log_path: Path, env: dict) -> tuple[subprocess.Popen, object]:
    """Start `argv` in the repository root in a process group of its own (so that stopping it stops every
    rank), its output appended to `log_path` after a ``$ command`` line. Returns (process, open log)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "a")
    log.write("$ " + shlex.join(argv) + "\n")
    log.flush()
    proc = subprocess.Popen(
        argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    return proc, log


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the process group, SIGKILL 15 s later if it is still there."""
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


_EXCEPTION_LINE = re.compile(r"^(?:\[rank\d+\]:\s*)?([A-Za-z_][\w.]*(?:Error|Exception|Interrupt)(?::.*)?)$")


def last_error_line(text: str) -> str:
    """The error a failed process died of: the last `SomeError: message` line (also torchrun's `[rankN]:`
    lines), else the last non-empty line of its output."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        m = _EXCEPTION_LINE.match(ln)
        if m:
            return m.group(1)
    return lines[-1] if lines else "(no output)"


def tail(path: Path, n_bytes: int = 65536) -> str:
    """The end of a log file ('' if there is none)."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - n_bytes))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def run_one(
    argv: list[str], log_path: Path, timeout: float | None = None, env: dict | None = None
) -> tuple[int, float, str | None]:
    """Run `argv` to its end: (exit code, wall seconds, None or the error it died of). A timeout stops its
    process group (exit code -1); Ctrl-C stops it and is raised on."""
    t0 = time.perf_counter()
    proc, log = start(argv, log_path, env or environment())
    try:
        rc = proc.wait(timeout=timeout)
    except BaseException as e:  # the timeout, or Ctrl-C: end the whole process group we started
        stop(proc)
        if not isinstance(e, subprocess.TimeoutExpired):
            raise
        return -1, time.perf_counter() - t0, (f"timed out after {timeout:.0f} s; see {log_path}")
    finally:
        log.close()
    return rc, time.perf_counter() - t0, None if rc == 0 else last_error_line(tail(log_path))


# ----------------------------------------------------------------------------- planned runs
@dataclass
class Run:
    """One planned training run."""

    run_dir: Path  # absolute
    overrides: list[str]  # Hydra overrides, run_dir=... last
    steps: int  # train.steps
    config: dict | None = None  # the resolved config (None: not composed; then no clash check)
    label: str = ""  # how messages name it
    index: int = 0
    status: str = ""  # done | diverged | resume | new
    detail: str = ""

    @property
    def name(self) -> str:
        return self.run_dir.name


def config_diff(a: dict, b: dict) -> list[str]:
    """Keys whose values differ, as 'key: a -> b': the trainer's own resume comparison
    (harness/checkpoint.py `config_changes`), so a planned run is refused exactly where a resume would be."""
    from harness.checkpoint import config_changes

    return [f"{k}: {va!r} -> {vb!r}" for k, va, vb in config_changes(a, b)]


def state(run: Run) -> None:
    """Set run.status (done | diverged | resume | new) and run.detail. A finished run is kept as it is; an
    unfinished one whose directory holds a run of another config is a LaunchError (resuming it would mix two
    runs), and so is a summary with metrics that do not match it and nothing to resume from."""
    d = run.run_dir
    try:
        reason = rundir.diverged(d)
    except ValueError as e:
        reason = str(e)
    if reason is not None:
        run.status, run.detail = "diverged", reason
        return
    ok, why = rundir.completion(d, run.steps)
    if ok:
        run.status, run.detail = "done", ""
        return
    old = rundir.read_config(d)
    if old is not None and run.config is not None:
        diff = config_diff(old, run.config)
        if diff:
            raise LaunchError(
                f"{display_path(d)} holds a run with a different config than planned for "
                f"{run.label or run.name}: "
                + "; ".join(diff[:6])
                + ". Use another results folder, or delete that directory to start it over."
            )
    latest = d / rundir.CKPT / "LATEST"
    if latest.exists():
        rec = rundir.last_record(d)
        run.status = "resume"
        run.detail = f"from {latest.read_text().strip()}" + (
            f", metrics at step {rec['step']}" if rec else ""
        )
    elif _says_completed(d):  # a summary, but metrics that do not match it, and nothing to resume from
        raise LaunchError(
            f"{display_path(d)} has {rundir.SUMMARY} but {why} and no checkpoint to resume "
            f"from; delete that directory to run {run.label or run.name} again"
        )
    else:
        stale = (d / rundir.METRICS).exists()
        run.status, run.detail = "new", "stale metrics, no checkpoint: starts over" if stale else ""


def _says_completed(run_dir: Path) -> bool:
    try:
        return (rundir.read_summary(run_dir) or {}).get("completed") is True
    except ValueError:
        return False


def drop_ckpt(run_dir: Path) -> bool:
    """Remove a finished run's checkpoints (its metrics, config, summary and log stay). True if removed."""
    ckpt = Path(run_dir) / rundir.CKPT
    if ckpt.is_dir():
        shutil.rmtree(ckpt)
        return True
    return False


@dataclass
class _Job:
    run: Run
    proc: subprocess.Popen
    log: object
    start: float
    gpus: list[str] = field(default_factory=list)


class Pool:
    """Runs planned runs with at most `parallel` processes at a time (each `nproc` ranks)."""

    def __init__(
        self,
        nproc: int = 1,
        parallel: int = 1,
        threads: int | None = None,
        gpus: list[str] | None = None,
        python: str = sys.executable,
        say=print,
        progress_every: float = 60.0,
    ):
        if gpus and len(gpus) < nproc * parallel:
            raise LaunchError(
                f"{len(gpus)} GPUs given but {parallel} runs x {nproc} processes need {nproc * parallel}"
            )
        self.nproc, self.parallel, self.python, self.say = nproc, parallel, python, say
        self.threads = threads or max(1, (os.cpu_count() or 1) // (parallel * nproc))
        self.gpus, self.progress_every = list(gpus or []), progress_every

    def argv(self, run: Run) -> list[str]:
        return train_argv(run.overrides, self.nproc, self.python)

    def run(self, todo: list[Run], on_done=None) -> list[Run]:
        """Launch `todo`; `on_done(run)` after each success. Returns the runs that failed. Ctrl-C (or
        SIGTERM, e.g. scancel) stops every running process and raises KeyboardInterrupt."""
        pending, running, failed = list(todo), [], []
        slots = [
            self.gpus[i * self.nproc : (i + 1) * self.nproc] if self.gpus else []
            for i in range(self.parallel)
        ]
        finished, last_progress = 0, time.time()
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            while pending or running:
                while pending and slots:
                    run, gpus = pending.pop(0), slots.pop(0)
                    proc, log = start(
                        self.argv(run), run.run_dir / LAUNCHER_LOG, environment(self.threads, gpus)
                    )
                    running.append(_Job(run, proc, log, time.time(), gpus))
                    how = f"resume {run.detail}" if run.status == "resume" else "new"
                    self.say(
                        f"start [{run.index}] {run.label} -> {display_path(run.run_dir)} "
                        f"({how}; pid {proc.pid})"
                    )
                time.sleep(0.2)
                for job in list(running):
                    rc = job.proc.poll()
                    if rc is None:
                        continue
                    running.remove(job)
                    job.log.close()
                    slots.append(job.gpus)
                    finished += 1
                    self._finished(job, rc, failed, finished, len(todo), on_done)
                if self.progress_every and running and time.time() - last_progress >= self.progress_every:
                    last_progress = time.time()
                    parts = [
                        f"{j.run.name} step {(rundir.last_record(j.run.run_dir) or {}).get('step', 0)}"
                        f"/{j.run.steps}"
                        for j in running
                    ]
                    self.say(
                        f"running: {', '.join(parts)}; {len(pending)} queued, {finished}/{len(todo)} finished"
                    )
        except KeyboardInterrupt:
            self.say("interrupted: stopping running jobs (rerun the same command to resume them)")
            for job in running:
                stop(job.proc)
                job.log.close()
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)
        return failed

    def _finished(self, job: _Job, rc: int, failed: list, finished: int, total: int, on_done) -> None:
        run, secs = job.run, time.time() - job.start
        ok, why = rundir.completion(run.run_dir, run.steps)
        if rc == 0 and ok:
            val = rundir.last_record(run.run_dir)["val_loss"]
            self.say(
                f"done  [{run.index}] {run.label} in {secs:.0f} s, final val_loss {val:.4f} "
                f"({finished}/{total} finished, {len(failed)} failed)"
            )
            if on_done is not None:
                on_done(run)
            return
        failed.append(run)
        reason = f"exit code {rc}" if rc != 0 else f"exit code 0 but {why}"
        log = run.run_dir / LAUNCHER_LOG
        lines = tail(log, 4096).splitlines()[-15:]
        self.say(
            f"FAIL  [{run.index}] {run.label}: {reason}; log {display_path(log)}:\n"
            + "\n".join("    " + ln for ln in lines)
        )


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


# ----------------------------------------------------------------------------- composing configs
class Composer:
    """Configs exactly as `python train.py <overrides>` resolves them (harness/config.py
    `compose_config`), as plain dicts; a context manager, so that callers can hold one for a whole plan."""

    def __enter__(self):
        return self

    def __call__(self, overrides: list[str]) -> dict:
        from omegaconf import OmegaConf

        from harness.config import compose_config

        return OmegaConf.to_container(compose_config(overrides), resolve=True, enum_to_str=True)

    def __exit__(self, *exc) -> None:
        """Nothing to release: each config is composed on its own."""
