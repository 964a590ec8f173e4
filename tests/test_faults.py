"""Fault injection for the trainer on CPU (gloo): kill -9 at any moment, preemption signals, resuming
on another number of ranks, config drift, non-finite values, the run-directory lock, bad config
values, a cut-short metrics line, signals to the torchrun agent, and workers outliving their agent.

Each fault is compared with an uninterrupted run record by record (train_loss, val_loss where
present, lr, tokens, grad_evals), bit for bit where the number of ranks is unchanged.

Subprocess runs go through tests/helpers/fault_train.py, which is `python train.py` with faults injected
at exact steps (see its docstring); train.py itself is not changed for the tests. Runs of one kind are
compared only with runs of the same kind (subprocess with subprocess at OMP_NUM_THREADS=1, in-process
with in-process), since a different thread count may change float sums in the last bit.

The mid-run teardown abort of gloo is covered by tests/test_optim_dist.py and not repeated here.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

import pytest
import torch
from helpers import torchrun
from helpers.trainer_utils import (
    REPO,
    VOCAB,
    Crash,
    compose_cfg,
    crash_after_checkpoint,
    read_metrics,
    small_run_overrides,
    write_test_shards,
)

import train
from harness import rundir
from harness.checkpoint import RunLock

WRAPPER = Path(__file__).parent / "helpers" / "fault_train.py"
STEPS = 8  # small_run_overrides: checkpoints and validation at steps 3, 6 and 8
OPT1 = "muon_mvr1"  # single-process runs: one gradient pass a step
OPT2 = "gluon_mvr2"  # two-rank runs: two passes a step, look-ahead gradient kept in the optimizer state
RUN_TIMEOUT_S = 180
# the kill points are drawn once from a fixed seed: the same "random" moments on every run of the suite
RNG = random.Random(1729)
KILL_1RANK = RNG.randint(1, 5)
KILL_2RANK = RNG.randint(1, 5)
CURVE_KEYS = ("step", "train_loss", "val_loss", "lr", "tokens", "data_tokens", "grad_evals", "passes")
LOSSES = ("train_loss", "val_loss")


# ----------------------------------------------------------------------------- helpers
@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """In-process runs on one thread like the subprocesses (OMP_NUM_THREADS=1): on 2 shared cores more
    threads only contend, and a fixed count keeps the in-process runs comparable bit for bit."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_test_shards(tmp_path_factory.mktemp("fault_data"))


def overrides(run_dir: Path, data_dir: Path, optimizer: str = OPT1, steps: int = STEPS, **extra) -> list[str]:
    return small_run_overrides(run_dir, data_dir, optimizer, steps=steps, **extra)


def in_process(run_dir: Path, data_dir: Path, optimizer: str = OPT1, steps: int = STEPS, extra=(), **kw):
    return train.train(compose_cfg([*overrides(run_dir, data_dir, optimizer, steps, **kw), *extra]))


def assert_same_metrics(got: list[dict], want: list[dict], rel: float | None = None, what: str = "") -> None:
    """Every record equal on CURVE_KEYS: losses exactly (rel=None) or to a relative tolerance, the rest
    exactly. A mismatch prints both curves side by side."""
    bad = []
    if len(got) != len(want):
        bad.append(f"{len(got)} records, expected {len(want)}")
    for i, (a, b) in enumerate(zip(got, want)):
        for k in CURVE_KEYS:
            if (k in a) != (k in b):
                where = "present" if k in a else "missing"
                bad.append(f"record {i + 1}: {k} {where} (expected the opposite)")
            elif k in a:
                if k in LOSSES and rel is not None:
                    same = a[k] == pytest.approx(b[k], rel=rel)
                else:
                    same = a[k] == b[k]
                if not same:
                    bad.append(f"record {i + 1}: {k} {a[k]!r} != {b[k]!r}")
    if bad:
        rows = [f"{'step':>4} {'train_loss got':>20} {'expected':>20} {'val_loss got':>20} {'expected':>20}"]
        for i in range(max(len(got), len(want))):
            a = got[i] if i < len(got) else {}
            b = want[i] if i < len(want) else {}
            rows.append(f"{a.get('step', b.get('step', '?')):>4} {a.get('train_loss', '-')!s:>20} "
                        f"{b.get('train_loss', '-')!s:>20} {a.get('val_loss', '-')!s:>20} "
                        f"{b.get('val_loss', '-')!s:>20}")
        tol = "bit-identical" if rel is None else f"rel {rel:g}"
        pytest.fail(f"{what}: metrics differ from the uninterrupted run ({tol}):\n  " + "\n  ".join(bad[:20])
                    + "\n" + "\n".join(rows))


def snapshot(run_dir: Path, skip: tuple[str, ...] = ()) -> dict[str, bytes]:
    """{relative path: bytes} of every file under run_dir, except the names in `skip`."""
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*"))
            if p.is_file() and p.name not in skip}


def assert_unchanged(before: dict[str, bytes], run_dir: Path, skip: tuple[str, ...] = ()) -> None:
    after = snapshot(run_dir, skip)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    assert not changed, f"{run_dir}: files written by a run that was refused: {changed}"


def latest(run_dir: Path) -> str | None:
    pointer = run_dir / "ckpt" / "LATEST"
    return pointer.read_text().strip() if pointer.exists() else None


def tensors(obj):
    """Every tensor inside a (nested) checkpoint object."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from tensors(v)


def assert_checkpoint_finite(path: Path) -> None:
    """torch.load every file of the checkpoint; every floating-point tensor in it is finite."""
    files = sorted(path.glob("*.pt"))
    assert {"model.pt", "state.pt", "optim_rank0.pt"} <= {f.name for f in files}, files
    for f in files:
        obj = torch.load(f, map_location="cpu", weights_only=False)
        found = [t for t in tensors(obj) if t.is_floating_point()]
        assert found or f.name == "state.pt", f"{f} holds no tensors"
        for t in found:
            assert torch.isfinite(t).all(), f"{f} holds a non-finite tensor of shape {tuple(t.shape)}"


def gone(pid: int) -> bool:
    """The process has exited (a zombie waiting for its new parent to reap it counts as exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


class Job:
    """One `python tests/helpers/fault_train.py ...` (nproc=0) or `torchrun --nproc_per_node=nproc` launch
    with faults from FAULT_* variables; output in <tmp>/<name>/output.txt, the wrapper's files beside it."""

    def __init__(self, tmp: Path, name: str, args: list[str], nproc: int = 0, launcher_args=(),
                 **faults) -> None:
        self.name, self.nproc = name, nproc
        self.dir = tmp / "jobs" / name
        self.dir.mkdir(parents=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("FAULT_")}
        env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), FAULT_DIR=str(self.dir),
                   **{f"FAULT_{k.upper()}": str(v) for k, v in faults.items()})
        if nproc:
            cmd = torchrun(nproc, WRAPPER, *args, launcher=tuple(launcher_args))
        else:
            cmd = [sys.executable, str(WRAPPER), *args]
        self.output = self.dir / "output.txt"
        with open(self.output, "wb") as out:
            # a session of its own: the clean-up can end the job and every worker it started by its id
            self.proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def tail(self, n: int = 4000) -> str:
        text = self.output.read_text(errors="replace") if self.output.exists() else ""
        return f"--- {self.name} (last {n} characters of its output) ---\n{text[-n:]}"

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def wait(self, timeout: float = RUN_TIMEOUT_S) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"{self.name} did not finish within {timeout} s\n{self.tail()}")

    def expect(self, ok, timeout: float = RUN_TIMEOUT_S) -> int:
        rc = self.wait(timeout)
        assert ok(rc), f"{self.name}: unexpected exit code {rc}\n{self.tail()}"
        return rc

    def ready_pids(self, ranks, timeout: float = 90) -> list[int]:
        """The pids the wrapper wrote when each rank reached FAULT_WAIT_AT."""
        files = [self.dir / f"ready_rank{r}" for r in ranks]
        deadline = time.monotonic() + timeout
        while not all(f.exists() for f in files):
            if self.proc.poll() is not None:
                rc = self.proc.returncode
                pytest.fail(f"{self.name} exited ({rc}) before reaching its wait\n{self.tail()}")
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"{self.name}: ranks {list(ranks)} not ready within {timeout} s\n{self.tail()}")
            time.sleep(0.05)
        return [int(f.read_text()) for f in files]

    def exit_codes(self) -> dict[int, str | None]:
        """What each rank's wrapper recorded as its exit code (None: it left no record, e.g. kill -9)."""
        ranks = range(max(self.nproc, 1))
        return {r: (self.dir / f"exit_rank{r}").read_text() if (self.dir / f"exit_rank{r}").exists() else None
                for r in ranks}

    def kill(self) -> None:
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)


@pytest.fixture
def jobs():
    """Start Jobs through this; any still running when the test ends is killed (its whole session)."""
    started: list[Job] = []

    def start(*args, **kw) -> Job:
        job = Job(*args, **kw)
        started.append(job)
        return job

    yield start
    for job in started:
        if job.proc.poll() is None:
            job.kill()


def uninterrupted(tmp: Path, data_dir: Path, optimizer: str, nproc: int) -> list[dict]:
    run_dir = tmp / "run"
    job = Job(tmp, "reference", overrides(run_dir, data_dir, optimizer), nproc=nproc)
    job.expect(lambda rc: rc == 0)
    records = read_metrics(run_dir)
    assert [r["step"] for r in records] == list(range(1, STEPS + 1)), job.tail()
    return records


@pytest.fixture(scope="module")
def reference_1rank(tmp_path_factory, data_dir) -> list[dict]:
    """An uninterrupted single-process run of OPT1 (subprocess)."""
    return uninterrupted(tmp_path_factory.mktemp("ref1"), data_dir, OPT1, nproc=0)


@pytest.fixture(scope="module")
def reference_2rank(tmp_path_factory, data_dir) -> list[dict]:
    """An uninterrupted two-rank torchrun run of OPT2."""
    return uninterrupted(tmp_path_factory.mktemp("ref2"), data_dir, OPT2, nproc=2)


@pytest.fixture(scope="module")
def reference_in_process(tmp_path_factory, data_dir) -> list[dict]:
    """An uninterrupted run of OPT1 inside this process (for faults injected in-process)."""
    run_dir = tmp_path_factory.mktemp("ref_in_process") / "run"
    in_process(run_dir, data_dir)
    return read_metrics(run_dir)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, data_dir) -> Path:
    """A finished 6-step OPT1 run (in-process); tests copy it before touching it."""
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    in_process(run_dir, data_dir, steps=6)
    return run_dir


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# ----------------------------------------------------------------------------- 1. kill -9
@pytest.mark.slow
def test_kill9_anywhere_then_rerun_equals_uninterrupted_1rank(tmp_path, data_dir, jobs, reference_1rank):
    """kill -9 after a random step, twice inside Checkpointer.save of step 6 (after the optimizer
    file; after state.pt, i.e. a complete directory that LATEST does not name yet), and after step 7;
    each time the same command is rerun (resume=auto). The final curve is the uninterrupted one."""
    run_dir = tmp_path / "run"
    args = overrides(run_dir, data_dir)
    plan = [("kill_after", str(KILL_1RANK)), ("kill_in_save", "6:optim_rank0.pt"),
            ("kill_in_save", "6:state.pt"), ("kill_after", "7")]
    for i, (fault, value) in enumerate(plan):
        job = jobs(tmp_path, f"{i}_{fault}_{value.replace(':', '_')}", args, **{fault: value})
        job.expect(lambda rc: rc == -signal.SIGKILL)
        if fault == "kill_in_save":  # the previous checkpoint stays the one to resume from
            assert latest(run_dir) == "step_000003", (plan[: i + 1], job.tail())
            assert (run_dir / "ckpt" / "step_000003" / "state.pt").exists()
    job = jobs(tmp_path, "final", args)
    job.expect(lambda rc: rc == 0)
    assert "resumed from" in job.text() and "at step 6" in job.text(), job.tail()
    assert_same_metrics(read_metrics(run_dir), reference_1rank, what=f"1 rank, kill plan {plan}")
    assert latest(run_dir) == "step_000008"
    assert sorted(p.name for p in (run_dir / "ckpt").iterdir()) == ["LATEST", "step_000008"]


@pytest.mark.dist
@pytest.mark.slow
def test_kill9_anywhere_then_rerun_equals_uninterrupted_2ranks(tmp_path, data_dir, jobs, reference_2rank):
    """The same on two gloo ranks: rank 1 killed after a random step, rank 0 killed inside save of
    step 6 after state.pt (rank 1's optimizer file is written, LATEST not moved), both ranks killed
    after step 7; torchrun tears the rest down each time. Compared with the uninterrupted 2-rank run."""
    run_dir = tmp_path / "run"
    args = overrides(run_dir, data_dir, OPT2)
    plan = [(dict(kill_after=KILL_2RANK, ranks="1")), dict(kill_in_save="6:state.pt", ranks="0"),
            dict(kill_after=7)]
    for i, faults in enumerate(plan):
        job = jobs(tmp_path, f"{i}_kill", args, nproc=2, **faults)
        job.expect(lambda rc: rc != 0)
        assert "Signal 9 (SIGKILL)" in job.text(), job.tail()
        if "kill_in_save" in faults:
            assert latest(run_dir) == "step_000003", job.tail()
            assert (run_dir / "ckpt" / "step_000006" / "optim_rank1.pt").exists()
    job = jobs(tmp_path, "final", args, nproc=2)
    job.expect(lambda rc: rc == 0)
    assert "at step 6" in job.text(), job.tail()
    assert job.exit_codes() == {0: "0", 1: "0"}
    assert_same_metrics(read_metrics(run_dir), reference_2rank, what=f"2 ranks, kill plan {plan}")


# ----------------------------------------------------------------------------- 2. SIGTERM / SIGUSR1
def stop_line(run_dir: Path, step: int) -> str:
    return f"checkpoint {run_dir / 'ckpt' / f'step_{step:06d}'} written; rerun the same command to resume"


@pytest.mark.slow
def test_preemption_signals_1rank(tmp_path, data_dir, jobs, reference_1rank):
    """SIGTERM while step 4 runs: the step finishes, a checkpoint of step 4 is written (not a regular
    checkpoint step), exit code 75, the log names the checkpoint. Rerun; SIGUSR1 during step 7: the
    same. Rerun to the end: the curve is the uninterrupted one."""
    run_dir = tmp_path / "run"
    args = overrides(run_dir, data_dir)
    for i, (sig, wait_at) in enumerate([(signal.SIGTERM, 3), (signal.SIGUSR1, 6)]):
        job = jobs(tmp_path, f"{i}_{sig.name}", args, wait_at=wait_at)
        (pid,) = job.ready_pids([0])
        assert pid == job.proc.pid
        os.kill(pid, sig)
        job.expect(lambda rc: rc == train.EXIT_PREEMPTED)
        stop = wait_at + 1
        line = f"stopping on {sig.name} after step {stop}: " + stop_line(run_dir, stop)
        assert line in job.text(), job.tail()
        assert line in (run_dir / "train.log").read_text()
        assert latest(run_dir) == f"step_{stop:06d}"
        assert [r["step"] for r in read_metrics(run_dir)] == list(range(1, stop + 1))
    job = jobs(tmp_path, "final", args)
    job.expect(lambda rc: rc == 0)
    assert "resumed from" in job.text() and "at step 7" in job.text(), job.tail()
    assert_same_metrics(read_metrics(run_dir), reference_1rank, what="1 rank, SIGTERM at 4, SIGUSR1 at 7")


@pytest.mark.dist
@pytest.mark.slow
def test_preemption_signals_2ranks(tmp_path, data_dir, jobs, reference_2rank):
    """SIGTERM to both torchrun workers (as Slurm signals every task) while step 4 runs: both exit 75
    with a complete checkpoint of step 4 on disk. Rerun; SIGUSR1 to rank 1 only during step 7: rank 0
    learns of it through the step's collective and both stop after step 7. Rerun to the end."""
    run_dir = tmp_path / "run"
    args = overrides(run_dir, data_dir, OPT2)
    for i, (sig, wait_at, ranks) in enumerate([(signal.SIGTERM, 3, [0, 1]), (signal.SIGUSR1, 6, [1])]):
        job = jobs(tmp_path, f"{i}_{sig.name}", args, nproc=2, wait_at=wait_at,
                   wait_ranks=",".join(map(str, ranks)))
        for pid in job.ready_pids(ranks):
            os.kill(pid, sig)
        job.wait()
        assert job.exit_codes() == {0: str(train.EXIT_PREEMPTED), 1: str(train.EXIT_PREEMPTED)}, job.tail()
        stop = wait_at + 1
        who = sig.name if 0 in ranks else "a signal to another rank"
        line = f"stopping on {who} after step {stop}: " + stop_line(run_dir, stop)
        assert line in job.text(), job.tail()
        assert line in (run_dir / "train.log").read_text()
        assert latest(run_dir) == f"step_{stop:06d}"
        saved = {p.name for p in (run_dir / "ckpt" / f"step_{stop:06d}").iterdir()}
        assert saved == {"model.pt", "state.pt", "optim_rank0.pt", "optim_rank1.pt"}, saved
        assert [r["step"] for r in read_metrics(run_dir)] == list(range(1, stop + 1))
    job = jobs(tmp_path, "final", args, nproc=2)
    job.expect(lambda rc: rc == 0)
    assert "at step 7" in job.text(), job.tail()
    assert_same_metrics(read_metrics(run_dir), reference_2rank, what="2 ranks, SIGTERM at 4, SIGUSR1 at 7")


AGENT_SIGNALS = [
    (signal.SIGTERM, []),  # torchrun's agent forwards SIGTERM by default
    # ... but not SIGUSR1: by default the agent dies of it and takes its workers along, no checkpoint
    (signal.SIGUSR1, ["--signals-to-handle=SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1"]),
]


@pytest.mark.dist
@pytest.mark.slow
@pytest.mark.parametrize("sig,launcher_args", AGENT_SIGNALS, ids=[s.name for s, _ in AGENT_SIGNALS])
def test_preemption_signal_to_the_torchrun_agent(tmp_path, data_dir, jobs, sig, launcher_args):
    """The signal sent to the torchrun agent only (srun's task): the agent passes it to its workers,
    which finish step 4, write its checkpoint and exit 75."""
    run_dir = tmp_path / "run"
    job = jobs(tmp_path, sig.name, overrides(run_dir, data_dir, OPT2), nproc=2, launcher_args=launcher_args,
               wait_at=3)
    job.ready_pids([0, 1])
    os.kill(job.proc.pid, sig)
    rc = job.wait()
    assert rc != 0, "torchrun reports the workers' exit code 75 as a failure"
    assert job.exit_codes() == {0: str(train.EXIT_PREEMPTED), 1: str(train.EXIT_PREEMPTED)}, job.tail()
    assert f"stopping on {sig.name} after step 4: " + stop_line(run_dir, 4) in job.text(), job.tail()
    assert latest(run_dir) == "step_000004"
    saved = {p.name for p in (run_dir / "ckpt" / "step_000004").iterdir()}
    assert saved == {"model.pt", "state.pt", "optim_rank0.pt", "optim_rank1.pt"}, saved


# ----------------------------------------------------------------------------- 3. another world size
@pytest.mark.dist
@pytest.mark.slow
def test_resume_on_another_number_of_ranks(tmp_path, data_dir, jobs):
    """2 ranks killed after the step-3 checkpoint → 1 rank resumes it (optimizer state re-sharded) and is
    killed after the step-6 checkpoint → 3 ranks resume that and finish. The curve equals the
    uninterrupted 2-rank run to float tolerance: sums over another number of ranks round differently and
    training amplifies that (uninterrupted 1-, 2- and 3-rank runs of this setting differ by up to 6e-4
    relative at step 8), so rel 2e-3; a wrongly re-sharded optimizer state moves the loss by far more
    (the exact re-sharding is tested in test_optim_dist.py). A global batch of 12 sequences and 24
    validation sequences split over 1, 2 and 3 ranks."""
    sizes = {"batch.global_seqs": 12, "batch.micro_seqs": 2, "data.val_tokens": 24 * 64}
    ref_dir = tmp_path / "reference"
    ref = jobs(tmp_path, "reference", overrides(ref_dir, data_dir, OPT2, **sizes), nproc=2)
    ref.expect(lambda rc: rc == 0)
    reference = read_metrics(ref_dir)
    assert [r["step"] for r in reference] == list(range(1, STEPS + 1))
    run_dir = tmp_path / "run"
    args = overrides(run_dir, data_dir, OPT2, **sizes)
    job = jobs(tmp_path, "2ranks", args, nproc=2, kill_after=4)
    job.expect(lambda rc: rc != 0)
    assert latest(run_dir) == "step_000003", job.tail()
    job = jobs(tmp_path, "1rank", args, kill_after=7)
    job.expect(lambda rc: rc == -signal.SIGKILL)
    assert "resumed from" in job.text() and "at step 3 (saved by 2 ranks, re-sharded onto 1)" in job.text(), \
        job.tail()
    assert latest(run_dir) == "step_000006"
    job = jobs(tmp_path, "3ranks", args, nproc=3)
    job.expect(lambda rc: rc == 0)
    assert "at step 6 (saved by 1 ranks, re-sharded onto 3)" in job.text(), job.tail()
    assert_same_metrics(read_metrics(run_dir), reference, rel=2e-3, what="2 → 1 → 3 ranks")


FSDP2 = {"batch.global_seqs": 12, "batch.micro_seqs": 2, "data.val_tokens": 24 * 64, "sharding": "fsdp2"}


@pytest.fixture(scope="module")
def reference_fsdp2(tmp_path_factory, data_dir) -> list[dict]:
    """An uninterrupted two-rank run of OPT2 with sharding=fsdp2 (12 sequences: 1, 2, 3 ranks divide it)."""
    tmp = tmp_path_factory.mktemp("ref_fsdp2")
    job = Job(tmp, "reference", overrides(tmp / "run", data_dir, OPT2, **FSDP2), nproc=2)
    job.expect(lambda rc: rc == 0)
    return read_metrics(tmp / "run")


@pytest.mark.dist
@pytest.mark.slow
def test_fsdp2_kill9_sigterm_and_resume_on_another_number_of_ranks(
    tmp_path, data_dir, jobs, reference_fsdp2
):
    """sharding=fsdp2 (torch.distributed.checkpoint): 2 ranks, rank 1 killed after a random step; 1 rank
    reruns and is killed inside the save of step 6 after state.pt (its DCP folder complete, LATEST not
    moved); rerun, it gets SIGTERM during step 7 and exits 75 with the step-7 checkpoint; 3 ranks resume it
    and finish. The curve equals the
    uninterrupted 2-rank fsdp2 run to the tolerance of another number of ranks (see the test above)."""
    run_dir = tmp_path / "run"
    args = overrides(run_dir, data_dir, OPT2, **FSDP2)
    jobs(tmp_path, "2ranks", args, nproc=2, kill_after=KILL_2RANK, ranks="1").expect(lambda rc: rc != 0)
    job = jobs(tmp_path, "1rank_in_save", args, kill_in_save="6:state.pt")
    job.expect(lambda rc: rc == -signal.SIGKILL)
    assert latest(run_dir) == "step_000003", job.tail()
    assert (run_dir / "ckpt" / "step_000006" / "dcp" / ".metadata").exists()
    assert not list((run_dir / "ckpt" / "step_000006").glob("optim_rank*.pt"))
    job = jobs(tmp_path, "1rank_sigterm", args, wait_at=6)  # SIGTERM while step 7 runs
    for pid in job.ready_pids([0]):
        os.kill(pid, signal.SIGTERM)
    job.wait()
    assert job.exit_codes() == {0: str(train.EXIT_PREEMPTED)}, job.tail()
    assert latest(run_dir) == "step_000007", job.tail()
    assert {p.name for p in (run_dir / "ckpt" / "step_000007").iterdir()} == {"dcp", "model.pt", "state.pt"}
    job = jobs(tmp_path, "3ranks", args, nproc=3)
    job.expect(lambda rc: rc == 0)
    assert "at step 7 (saved by 1 ranks, re-sharded onto 3)" in job.text(), job.tail()
    assert_same_metrics(read_metrics(run_dir), reference_fsdp2, rel=2e-3, what="fsdp2: 2 → 1 → 3 ranks")


# ----------------------------------------------------------------------------- 4. config drift
def refused(run_dir: Path, data_dir: Path, extra: list[str], match: str | None = None, **kw) -> str:
    """Resume run_dir with changed overrides: a ConfigError (a ValueError), and nothing written,
    the lock file included (its holder is recorded only once a run has passed every check)."""
    before = snapshot(run_dir)
    with pytest.raises(train.ConfigError) as err:
        in_process(run_dir, data_dir, extra=extra, **kw)
    assert isinstance(err.value, ValueError)
    msg = str(err.value)
    if match is not None:
        assert match in msg, msg
    assert_unchanged(before, run_dir)
    return msg


def test_config_drift_is_refused_and_nothing_written(tmp_path, data_dir, finished_run):
    run_dir = copy_run(finished_run, tmp_path / "run")
    steps = dict(steps=6)
    msg = refused(run_dir, data_dir, ["optimizer.lr=0.03"], "optimizer.lr: 0.003 → 0.03", **steps)
    assert "Nothing was written" in msg and "run_dir=" in msg, msg
    assert "resume_allow" not in msg, "optimizer.lr cannot be opted in; the message must not suggest it"
    msg = refused(run_dir, data_dir, [], "optimizer.name: 'muon_mvr1' → 'muon'", optimizer="muon", **steps)
    assert "optimizer.gamma" in msg and "cannot change on resume" in msg, msg
    # resume_allow accepts only the opt-in keys, before anything else is looked at
    msg = refused(run_dir, data_dir, ["optimizer.lr=0.03", "resume_allow=[optimizer.lr]"], "resume_allow",
                  **steps)
    assert "may never change on resume" in msg, msg
    # a longer run: refused unless opted in, with what it means for the LR schedule
    msg = refused(run_dir, data_dir, [], "train.steps: 6 → 8", steps=8)
    assert "resume_allow=[train.steps]" in msg and "LR schedule" in msg, msg
    # a shorter run than the checkpoint: refused, also when opted in
    refused(run_dir, data_dir, [], "train.steps: 6 → 4", steps=4)
    refused(run_dir, data_dir, ["resume_allow=[train.steps]"], "past train.steps=4", steps=4)
    # opted in: accepted, the consequence logged, the first 6 records kept
    old = read_metrics(run_dir)
    in_process(run_dir, data_dir, steps=8, extra=["resume_allow=[train.steps]"])
    log = (run_dir / "train.log").read_text()
    assert "resume_allow: train.steps 6 → 8 (the LR schedule is a function of train.steps" in log, log[-2000:]
    new = read_metrics(run_dir)
    assert [r["step"] for r in new] == list(range(1, 9))
    assert new[:6] == old


def test_moved_shards_resume_when_opted_in_and_other_shards_do_not(tmp_path, data_dir, finished_run):
    """data.train_files may change with resume_allow when the shards only moved: the continued curve equals
    a continuation from the original path. Shards with the same names and sizes but other tokens are
    refused by the loader's content hash."""
    from data.synthetic import write_synthetic_shards

    here = copy_run(finished_run, tmp_path / "here")
    in_process(here, data_dir, steps=8, extra=["resume_allow=[train.steps]"])
    moved_data = tmp_path / "moved"
    shutil.copytree(data_dir, moved_data)
    moved = copy_run(finished_run, tmp_path / "moved_run")
    allow = "resume_allow=[train.steps,data.train_files,data.val_files]"
    in_process(moved, moved_data, steps=8, extra=[allow])
    assert_same_metrics(read_metrics(moved), read_metrics(here), what="resumed on moved shards")
    other_data = tmp_path / "other"
    write_synthetic_shards(other_data, train_tokens=200_000, val_tokens=20_000, vocab_size=VOCAB, seed=1)
    other = copy_run(finished_run, tmp_path / "other_run")
    with pytest.raises(ValueError, match="content"):
        in_process(other, other_data, steps=8, extra=[allow])


def test_config_drift_other_optimizer_class(tmp_path, data_dir):
    """A gluon optimizer on a muon run: refused with old → new lines (no KeyError on keys one class
    lacks), nothing written."""
    run_dir = tmp_path / "run"
    in_process(run_dir, data_dir, "muon", steps=3)
    msg = refused(run_dir, data_dir, [], "optimizer._target_: 'optim.MuonMVR' → 'optim.GluonMVR'",
                  optimizer="gluon_mvr1", steps=3)
    assert "optimizer.name: 'muon' → 'gluon_mvr1'" in msg, msg


# ----------------------------------------------------------------------------- 5. non-finite values
def assert_diverged(run_dir: Path, steps: int, why: str) -> None:
    """summary.json records the divergence: status, the last recorded step, and why (no log parsing)."""
    summary = rundir.read_summary(run_dir)
    assert summary["status"] == rundir.STATUS_DIVERGED and summary["completed"] is False, summary
    assert summary["steps"] == steps and why in summary["error"], summary
    assert rundir.diverged(run_dir) == summary["error"]
    assert not rundir.completion(run_dir)[0]


def test_exploding_lr_stops_at_a_finite_checkpoint(tmp_path, data_dir):
    """optimizer.lr=1e30 with a checkpoint every step: FloatingPointError naming the last good
    checkpoint, which loads and is finite; LATEST names it; rerunning fails the same way."""
    run_dir = tmp_path / "run"
    extra = ["optimizer.lr=1e30", "train.ckpt_every=1"]
    with pytest.raises(FloatingPointError) as err:
        in_process(run_dir, data_dir, extra=extra)
    msg = str(err.value)
    m = re.search(r"The last good \(finite\) checkpoint is (\S+);", msg)
    assert m, msg
    named = Path(m.group(1))
    assert named.parent == run_dir / "ckpt" and latest(run_dir) == named.name, (msg, latest(run_dir))
    assert_checkpoint_finite(named)
    step = int(named.name.split("_")[1])
    assert f"at step {step + 1}" in msg, msg
    written = [p.name for p in (run_dir / "ckpt").glob("step_*")]
    assert written == [named.name], f"only the last good checkpoint may exist: {written}"
    assert [r["step"] for r in read_metrics(run_dir)] == list(range(1, step + 1))
    assert_diverged(run_dir, steps=step, why=f"at step {step + 1}")
    with pytest.raises(FloatingPointError, match=re.escape(str(named))):
        in_process(run_dir, data_dir, extra=extra)  # resumes from it, and it loads
    assert latest(run_dir) == named.name


def test_poisoned_gradient_stops_at_a_finite_checkpoint(tmp_path, data_dir, monkeypatch):
    """A NaN gradient in step 5 makes the parameters non-finite: FloatingPointError naming step_000004."""
    real = train.optimizer_step

    def poisoned(model, optimizer, batch, step, steps, autocast):
        if step == 4:
            real_acc = train.accumulate_grad

            def nan_grad(model, micro_batches, autocast):
                loss = real_acc(model, micro_batches, autocast)
                next(model.parameters()).grad.view(-1)[0] = float("nan")
                return loss

            monkeypatch.setattr(train, "accumulate_grad", nan_grad)
            try:
                return real(model, optimizer, batch, step, steps, autocast)
            finally:
                monkeypatch.setattr(train, "accumulate_grad", real_acc)
        return real(model, optimizer, batch, step, steps, autocast)

    monkeypatch.setattr(train, "optimizer_step", poisoned)
    run_dir = tmp_path / "run"
    with pytest.raises(FloatingPointError, match=r"non-finite parameters at step 5.*step_000004"):
        in_process(run_dir, data_dir, extra=["train.ckpt_every=1"])
    assert latest(run_dir) == "step_000004"
    assert_checkpoint_finite(run_dir / "ckpt" / "step_000004")
    assert_diverged(run_dir, steps=4, why="non-finite parameters at step 5")


def test_non_finite_optimizer_state_is_never_checkpointed(tmp_path, data_dir, monkeypatch):
    """Finite parameters but an infinite optimizer-state entry after step 4: no checkpoint of step 4,
    FloatingPointError naming step_000003, LATEST still step_000003."""
    real = train.optimizer_step

    def poison_state(model, optimizer, batch, step, steps, autocast):
        out = real(model, optimizer, batch, step, steps, autocast)
        if step == 3:
            state = next(v for s in optimizer.state.values() for v in s.values()
                         if isinstance(v, torch.Tensor) and v.is_floating_point() and v.numel() > 0)
            state.view(-1)[0] = float("inf")
        return out

    monkeypatch.setattr(train, "optimizer_step", poison_state)
    run_dir = tmp_path / "run"
    with pytest.raises(FloatingPointError, match=r"optimizer state is not finite at step 4.*step_000003"):
        in_process(run_dir, data_dir, extra=["train.ckpt_every=1"])
    assert latest(run_dir) == "step_000003"
    assert not (run_dir / "ckpt" / "step_000004").exists()
    assert_checkpoint_finite(run_dir / "ckpt" / "step_000003")
    assert_diverged(run_dir, steps=4, why="optimizer state is not finite at step 4")  # step 4 was recorded


# ----------------------------------------------------------------------------- 6. the run_dir lock
@pytest.mark.slow
def test_lock_refuses_a_second_run_and_dies_with_its_holder(tmp_path, data_dir, jobs, reference_in_process):
    """A run holds run_dir (waiting after step 1): a second run on it fails at once naming host and pid
    and writes nothing. After kill -9 of the holder the lock is free (flock dies with the process)
    and a new run completes with the uninterrupted curve."""
    run_dir = tmp_path / "run"
    holder = jobs(tmp_path, "holder", overrides(run_dir, data_dir), wait_at=1, wait_for="kill")
    (pid,) = holder.ready_pids([0])
    assert f"pid {pid}" in (run_dir / ".lock").read_text()
    before = snapshot(run_dir)
    t0 = time.monotonic()
    with pytest.raises(RuntimeError) as err:
        in_process(run_dir, data_dir)
    elapsed = time.monotonic() - t0
    msg = str(err.value)
    assert f"host {socket.gethostname()}, pid {pid}" in msg and "in use by another run" in msg, msg
    assert elapsed < 10, f"the second run took {elapsed:.1f} s to fail"
    assert_unchanged(before, run_dir)
    os.kill(pid, signal.SIGKILL)
    holder.expect(lambda rc: rc == -signal.SIGKILL)
    in_process(run_dir, data_dir)
    assert f"pid {os.getpid()}" in (run_dir / ".lock").read_text()
    assert_same_metrics(read_metrics(run_dir), reference_in_process, what="after the lock holder was killed")


# ----------------------------------------------------------------------------- 7. bad values
BAD = [
    ("train.log_every=0", "train.log_every"),
    ("batch.micro_seqs=0", "batch.micro_seqs"),
    ("model.n_head=0", "model.n_head"),
    ("+optimizer.ns_dtype=foo", "optimizer.ns_dtype"),
    ("train.val_every=-1", "train.val_every"),
    ("train.ckpt_every=-5", "train.ckpt_every"),
    ("model.n_layer=0", "model.n_layer"),
    ("train.warmup_steps=-3", "train.warmup_steps"),
    ("+train.foo=1", "train.foo"),
    ("+optimizer.lrr=0.1", "optimizer.lrr"),
    ("model.vocab_size=100", "model.vocab_size"),
    ("train.warmup_steps=5", "train.warmup_steps"),  # overlaps the warm-down of 6 steps
    ("data.val_tokens=100", "data.val_tokens"),  # not whole sequences of 64 tokens
    ("optimizer.momentum=1.0", "optimizer.momentum"),  # invalid, not reported as a change on resume
    ("+optimizer.adamw_betas=[0.9,1.2]", "optimizer.adamw_betas"),
]


@pytest.mark.parametrize("override,key", BAD, ids=[b[0] for b in BAD])
def test_bad_value_is_refused_before_any_work(tmp_path, data_dir, finished_run, override, key):
    """Refused at composition (Hydra) or by train.train (ConfigError), the message naming the key; the
    finished run in run_dir is untouched, its lock file included (a bad value is refused before the lock
    is even taken, except model.vocab_size, which differs from the checkpoint's and is refused as config
    drift after the lock is taken but before it is claimed)."""
    run_dir = copy_run(finished_run, tmp_path / "run")
    before = snapshot(run_dir)
    with pytest.raises(Exception) as err:
        in_process(run_dir, data_dir, steps=6, extra=[override])
    assert isinstance(err.value, (ValueError, train.ConfigError)) or \
        type(err.value).__name__ == "ConfigCompositionException", repr(err.value)
    assert key in str(err.value), str(err.value)
    assert_unchanged(before, run_dir)


def test_vocab_too_small_for_the_shards(tmp_path, data_dir):
    """A fresh run whose vocabulary is smaller than the shards' token ids: the error says
    model.vocab_size is too small (the shard is fine), and neither the run_dir it would have made nor
    the parent folders it made for it are left behind (the lock taken before the data were read is
    removed with them); the folder that was there before stays, with what it held."""
    (tmp_path / "runs" / "earlier").mkdir(parents=True)
    run_dir = tmp_path / "runs" / "group" / "sub" / "run"
    with pytest.raises(train.ConfigError) as err:
        in_process(run_dir, data_dir, extra=["model.vocab_size=100"])
    msg = str(err.value)
    assert "model.vocab_size=100 is too small" in msg and "model.vocab_size >= 512" in msg, msg
    assert "delete" not in msg.lower(), msg
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == ["runs", "runs/earlier"]


def test_a_refused_lock_keeps_a_parent_another_run_now_uses(tmp_path):
    """Two launches into a new folder: the refused one removes its run_dir, not the parent folder that
    another launch's run directory now sits in (nor anything above it)."""
    lock = RunLock(tmp_path / "runs" / "track3" / "a")
    (tmp_path / "runs" / "track3" / "b").mkdir()  # the other launch, started meanwhile
    lock.release()
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == [
        "runs", "runs/track3", "runs/track3/b"]
    lock = RunLock(tmp_path / "runs" / "track3" / "c" / "d")
    lock.claim()  # a run that passed its checks keeps what it made
    lock.release()
    assert (tmp_path / "runs" / "track3" / "c" / "d" / ".lock").exists()


# ----------------------------------------------------------------------------- 8. a cut-short metrics line
def test_partial_last_metrics_line_is_dropped_on_resume(tmp_path, data_dir, reference_in_process):
    """A crash right after the step-6 checkpoint, then the torn first bytes of record 7 appended:
    resuming warns naming the file, drops the line, and the final curve is the uninterrupted one."""
    run_dir = tmp_path / "run"
    with crash_after_checkpoint(6), pytest.raises(Crash):
        in_process(run_dir, data_dir)
    metrics = run_dir / "metrics.jsonl"
    with open(metrics, "ab") as f:
        f.write(b'{"step": 7, "train_lo')
    with pytest.warns(UserWarning, match=re.escape(str(metrics))):
        in_process(run_dir, data_dir)
    assert metrics.read_bytes().endswith(b"}\n")
    assert f"warning: {metrics}: line 7 (the last) is cut short" in (run_dir / "train.log").read_text()
    assert_same_metrics(read_metrics(run_dir), reference_in_process, what="after a cut-short metrics line")


# ----------------------------------------------------------------------------- 10. the agent dies
@pytest.mark.dist
@pytest.mark.slow
def test_workers_die_with_their_torchrun_agent(tmp_path, data_dir, jobs):
    """kill -9 of the torchrun agent (which cannot forward anything): both workers exit within 10 s."""
    run_dir = tmp_path / "run"
    job = jobs(tmp_path, "agent", overrides(run_dir, data_dir, OPT2), nproc=2, wait_at=1, wait_for="kill")
    workers = job.ready_pids([0, 1])
    for pid in workers:
        ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        assert ppid == job.proc.pid, f"worker {pid} is not a child of the agent {job.proc.pid}"
    os.kill(job.proc.pid, signal.SIGKILL)
    job.proc.wait(timeout=30)
    deadline = time.monotonic() + 10
    while not all(gone(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = [p for p in workers if not gone(p)]
    for pid in alive:  # do not leave them behind; the assertion below still fails
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert not alive, f"workers {alive} outlived their agent by 10 s\n{job.tail()}"
