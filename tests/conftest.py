"""Test harness: every test runs offline and CPU-only unless marked otherwise.

* Hugging Face hub / datasets are forced offline (a hub call otherwise retries for ~23 s).
* wandb is disabled and would write into a temporary directory if a test turned it on.
* tiktoken's download cache points into a temporary directory, so nothing is fetched.
* Any socket connection to a non-loopback address fails at once (gloo on 127.0.0.1 and
  FileStore rendezvous keep working).
* ``gpu`` tests are skipped without CUDA.
* Under pytest-xdist the workers share the cores (``_share_the_cores``).
* optim's estimator and geometry registries are restored after every test: a plugin a test registers
  (a geometry with its own hyperparameter) never becomes a default of later tests' optimizers.
* Freed CPU memory stays in the process (harness/memory.py), as in every training run, so tests that
  build large buffers do not re-fault them ($MVR_CPU_HEAP=release measures the suite without it).
"""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

import pytest

from harness.memory import retain_freed_memory

REPO = Path(__file__).resolve().parents[1]  # on sys.path through pyproject's pytest `pythonpath`

_SCRATCH = Path(tempfile.mkdtemp(prefix="nanogpt-mvr-tests-"))
_OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HOME": str(_SCRATCH / "hf"),
    "WANDB_MODE": "disabled",
    "WANDB_SILENT": "true",
    "WANDB_DIR": str(_SCRATCH / "wandb"),
    "TIKTOKEN_CACHE_DIR": str(_SCRATCH / "tiktoken"),
    "TORCHINDUCTOR_CACHE_DIR": str(_SCRATCH / "inductor"),
}
os.environ.update(_OFFLINE_ENV)
retain_freed_memory()


def _share_the_cores() -> None:
    """Under pytest-xdist (``make test`` runs ``-n auto``), every worker and the processes it launches get
    cores / workers threads: two workers with torch's default of every core each oversubscribe the machine."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers > 1:
        import torch

        threads = max(1, (os.cpu_count() or 1) // workers)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


_share_the_cores()

_real_connect = socket.socket.connect


def _is_local(address) -> bool:
    if isinstance(address, (str, bytes)):  # AF_UNIX path
        return True
    host = address[0] if isinstance(address, tuple) else address
    return host in ("localhost", "::1", "0.0.0.0", "") or str(host).startswith("127.")


def _guarded_connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address):
        raise ConnectionRefusedError(f"tests are offline: refused connection to {address!r}")
    return _real_connect(self, address)


@pytest.fixture(autouse=True)
def _registries():
    """Whatever a test registers with optim.register_estimator / register_geometry is gone after it."""
    from optim.registry import ESTIMATORS, GEOMETRIES

    saved = [(registry, dict(registry)) for registry in (ESTIMATORS, GEOMETRIES)]
    yield
    for registry, before in saved:
        registry.clear()
        registry.update(before)


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """Re-assert the offline environment for every test and block outbound sockets."""
    for key, value in _OFFLINE_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:  # pragma: no cover - torch missing is caught by imports elsewhere
        has_cuda = False
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)
