"""Helpers for the tests, not tests themselves: shared functions and worker scripts.

* ``trainer_utils``: composing configs, small runs, test shards, reading runs (the trainer tests).
* ``optim_workers``: optimizer cases and spawn-able distributed workers (the optimizer tests).
* ``fsdp_workers``: a model that is not ours under FSDP2, every preset on it (tests/test_optim_fsdp.py).
* ``train_many.py``: several trainer runs in one torchrun launch (tests/test_train_fsdp.py).
* ``fault_train.py``: ``python train.py`` with faults injected, launched by path (tests/test_faults.py).
* ``teardown_repro.py``: the gloo teardown reproducer, launched by path under torchrun
  (tests/test_optim_dist.py).

``tests/`` is on pytest's ``pythonpath``, so tests import these as ``from helpers import ...``.
"""

from __future__ import annotations

import sys


def torchrun(nproc: int, script, *args, launcher: tuple[str, ...] = ()) -> list[str]:
    """The command line ``torchrun --standalone --nproc_per_node=<nproc> <launcher...> <script> <args...>``,
    run by this Python."""
    head = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    return [*head, *launcher, str(script), *map(str, args)]
