"""Several trainer runs in one torchrun launch (one process group, one interpreter start-up a rank), for tests
that compare runs: ``torchrun ... tests/helpers/train_many.py RUNS.json``, where RUNS.json is a list of
override lists, each one `python train.py <overrides>` would take."""

from __future__ import annotations

import gc
import json
import sys

import train
from harness.config import compose_config
from harness.distributed import teardown

if __name__ == "__main__":
    try:
        for overrides in json.loads(open(sys.argv[1]).read()):
            train.train(compose_config(overrides))
            gc.collect()  # the last run's sharded model holds the group: free it before the next run
    finally:
        teardown()
