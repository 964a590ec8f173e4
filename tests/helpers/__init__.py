"""Helpers for the tests, not tests themselves: shared functions and worker scripts.

* ``trainer_utils``: composing configs, small runs, test shards, reading runs (the trainer tests).
* ``optim_workers``: optimizer cases and spawn-able distributed workers (the optimizer tests).
* ``fault_train.py``: ``python train.py`` with faults injected, launched by path (tests/test_faults.py).
* ``teardown_repro.py``: the gloo teardown reproducer, launched by path under torchrun
  (tests/test_optim_dist.py).

``tests/`` is on pytest's ``pythonpath``, so tests import these as ``from helpers import ...``.
"""
