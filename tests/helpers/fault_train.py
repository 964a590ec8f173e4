"""`python train.py ...` with faults injected at exact points, for tests/test_faults.py.

Run it exactly like train.py (directly, or as the script of torchrun); it patches the trainer, then
calls `train.main()`. Every fault is chosen by an environment variable (all optional):

    FAULT_DIR            directory for this wrapper's files: ``exit_rank{r}`` (the process's exit code,
                         written as it leaves) and ``ready_rank{r}`` (its pid, written when it reaches
                         FAULT_WAIT_AT)
    FAULT_RANKS          comma-separated ranks the kill faults apply to (default: every rank)
    FAULT_KILL_AFTER=N   SIGKILL this process when step N is completely done (metrics record and any
                         checkpoint of step N written), i.e. as optimizer step N+1 begins
    FAULT_KILL_IN_SAVE=S:NAME
                         SIGKILL this process inside `Checkpointer.save` of step S, right after the file
                         NAME (optim_rank0.pt, model.pt or state.pt) was written, before LATEST moves
    FAULT_WAIT_AT=N      when step N is done, write ready_rank{r} and wait before step N+1 begins ...
    FAULT_WAIT_FOR       ... until this process receives SIGTERM or SIGUSR1 ("signal", the default), or
                         until it is killed ("kill"); either way at most 120 s, then exit with code 3
    FAULT_WAIT_RANKS     comma-separated ranks that wait (default: every rank)

Step numbers count completed optimizer steps, as metrics.jsonl does (the first record is step 1).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import train  # the test launches this file with the repository on PYTHONPATH
from harness import checkpoint, distributed

RANK = int(os.environ.get("RANK", "0"))
OUT = Path(os.environ["FAULT_DIR"]) if os.environ.get("FAULT_DIR") else None
WAIT_LIMIT_S = 120.0


def _ranks(var: str) -> bool:
    """Whether this rank is among the comma-separated ranks of `var` (unset: every rank)."""
    value = os.environ.get(var, "").strip()
    return not value or RANK in {int(r) for r in value.split(",")}


def _die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _write(name: str, text: str) -> None:
    if OUT is not None:
        tmp = OUT / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, OUT / name)


_signalled = {"name": None}
_real_handle = distributed.StopSignal._handle


def _handle(self, signum, frame) -> None:
    _signalled["name"] = signal.Signals(signum).name
    _real_handle(self, signum, frame)


def _wait(step: int) -> None:
    mode = os.environ.get("FAULT_WAIT_FOR", "signal")
    _write(f"ready_rank{RANK}", str(os.getpid()))
    deadline = time.monotonic() + WAIT_LIMIT_S
    while time.monotonic() < deadline:
        if mode == "signal" and _signalled["name"] is not None:
            return
        time.sleep(0.02)  # a signal interrupts the sleep; its handler runs at once (PEP 475)
    print(f"fault_train: rank {RANK} waited {WAIT_LIMIT_S:.0f} s after step {step} for {mode}; giving up",
          file=sys.stderr, flush=True)
    _write(f"exit_rank{RANK}", "3")
    os._exit(3)


_real_step = train.optimizer_step


def _optimizer_step(model, optimizer, batch, step, steps, autocast):
    # `step` is the 0-based index of the step about to run, i.e. the number of steps already done
    kill_after = os.environ.get("FAULT_KILL_AFTER")
    if kill_after is not None and step == int(kill_after) and _ranks("FAULT_RANKS"):
        _die()
    wait_at = os.environ.get("FAULT_WAIT_AT")
    if wait_at is not None and step == int(wait_at) and _ranks("FAULT_WAIT_RANKS"):
        _wait(step)
    return _real_step(model, optimizer, batch, step, steps, autocast)


_real_atomic_save = checkpoint.atomic_save


def _atomic_save(obj, path):
    _real_atomic_save(obj, path)
    spec = os.environ.get("FAULT_KILL_IN_SAVE")
    if spec and _ranks("FAULT_RANKS"):
        step, name = spec.split(":", 1)
        if Path(path).name == name and Path(path).parent.name == f"step_{int(step):06d}":
            _die()


distributed.StopSignal._handle = _handle
train.optimizer_step = _optimizer_step
checkpoint.atomic_save = _atomic_save

if __name__ == "__main__":
    # train.main's config_path is relative to train.py only when train.py is the script itself
    sys.argv[1:1] = ["--config-path", str(Path(train.__file__).resolve().parent / "configs")]
    code: object = 0
    try:
        train.main()
    except SystemExit as e:
        code = e.code
        raise
    except BaseException:
        code = 1
        raise
    finally:
        _write(f"exit_rank{RANK}", str(0 if code is None else code))
