"""Keep freed CPU memory in the process, so a training step does not re-fault its own buffers.

A CPU training step allocates and frees buffers of hundreds of MB every step (the chunked loss's
logits and their gradient: 2,048 tokens x 50,304 x 4 bytes = 412 MB each). glibc serves any request
above its mmap threshold (at most 32 MiB by default) with a fresh `mmap` and hands it back with
`munmap` on free, so the kernel zero-fills every page again on the next step: a quarter of a million
minor page faults a step, a third of a CPU run spent in system time.

`retain_freed_memory()` raises glibc's mmap threshold to 2 GiB and its trim threshold to the same, so
large blocks come from the heap and stay there once freed; the next step reuses the same pages. It
changes where memory comes from, never what is computed: losses and parameters are bit-identical.
The price is that the process keeps its peak heap (what one step needs) until it exits.

It is called by `train.train()` (so every way of starting a run gets it: `python train.py`, torchrun,
the quick start, sweeps, the proxy study) and by the test suite. On GPUs the device memory is cached by
PyTorch's CUDA allocator already; this only concerns host-side buffers there. On a libc other than
glibc (macOS, musl) it does nothing. `MVR_CPU_HEAP=release` turns it off (glibc's own behaviour),
which is how `scripts/bench_cpu_heap.py` measures the difference.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

from harness.config import ConfigError

ENV = "MVR_CPU_HEAP"  # retain (default) | release
MODES = ("retain", "release")
THRESHOLD = 2**31 - 1  # bytes; mallopt takes an int, so just under 2 GiB
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # <malloc.h>

_applied: str | None = None


def heap_mode() -> str:
    """The mode asked for by $MVR_CPU_HEAP (default 'retain'); a value outside MODES is a ConfigError."""
    mode = os.environ.get(ENV, "retain").strip() or "retain"
    if mode not in MODES:
        raise ConfigError(f"${ENV}={mode!r}: expected one of {', '.join(MODES)} (unset means retain)")
    return mode


def retain_freed_memory() -> str:
    """Apply $MVR_CPU_HEAP once per process; return what is in effect: 'retain', 'release' or
    'unsupported' (not glibc). Calling it again is free and returns the same."""
    global _applied
    if _applied is not None:
        return _applied
    mode = heap_mode()
    if mode == "release":
        _applied = "release"
        return _applied
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        _applied = "unsupported"
        return _applied
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    ok = libc.mallopt(_M_MMAP_THRESHOLD, ctypes.c_int(THRESHOLD)) == 1
    ok &= libc.mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(THRESHOLD)) == 1
    _applied = "retain" if ok else "unsupported"
    return _applied
