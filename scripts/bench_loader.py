"""CPU cost of serving one global batch from memory-mapped shards (default 512 x 1024 tokens).

    python scripts/bench_loader.py                       # synthetic shards in a temporary directory
    python scripts/bench_loader.py --device cuda         # pinned staging + non-blocking copies
    python scripts/bench_loader.py --files 'data_cache/fineweb10B/fineweb_train_*.bin'

Times ``TrainLoader.batch(step)`` for steps never served before (no cache hits), after one warm-up step,
and prints the median CPU time (process time, which other processes on a shared machine do not inflate)
and the median wall time, in milliseconds. With ``--device cuda`` it is the time to gather, stage and
launch the copies (the call does not wait for the GPU).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time

from data.loader import TrainLoader
from data.synthetic import write_synthetic_shards


def bench(files: str, seq_len: int, global_seqs: int, micro_seqs: int, steps: int,
          device: str) -> tuple[float, float]:
    """Median (CPU ms, wall ms) per ``batch(step)`` over ``steps`` fresh steps."""
    loader = TrainLoader(files, seq_len, global_seqs, micro_seqs, device=device, seed=0)
    loader.batch(0)  # warm-up: opens the memory maps
    cpu, wall = [], []
    for step in range(1, steps + 1):
        c0, t0 = time.process_time(), time.perf_counter()
        loader.batch(step)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(cpu), 1e3 * statistics.median(wall)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", help="train shard glob (default: write synthetic shards to a temp dir)")
    ap.add_argument("--train-tokens", type=int, default=8_000_000, help="size of the synthetic shards")
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--global-seqs", type=int, default=512)
    ap.add_argument("--micro-seqs", type=int, default=64)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        files = a.files
        if files is None:
            files, _ = write_synthetic_shards(tmp, a.train_tokens, 1000, seed=0)
        cpu_ms, wall_ms = bench(files, a.seq_len, a.global_seqs, a.micro_seqs, a.steps, a.device)
    print(f"loader: {cpu_ms:.2f} ms CPU ({wall_ms:.2f} ms wall) per {a.global_seqs}x{a.seq_len} global batch "
          f"(median of {a.steps} steps, micro_seqs={a.micro_seqs}, device={a.device})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
