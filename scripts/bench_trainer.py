"""How much of a training step is the trainer's own overhead (loader, schedule, logging, bookkeeping)?

Runs, side by side in one process on the same model, optimizer and batches:
  bare:     a loop doing only the gradient passes and optimizer.step() on batches already in memory;
  trainer:  train.train() itself (validation and checkpoints only at the end, excluded), timed by the
            wall clock it records per step, which includes loading, logging and metrics writing.
Prints both per-step times and the overhead ratio (target: <= 5% for the tiny model on CPU).

    python scripts/bench_trainer.py --optimizer muon_mvr1 --steps 40
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--optimizer", default="muon_mvr1")
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--global-seqs", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=128)
    args = ap.parse_args(argv)

    import contextlib

    import torch

    import train
    from data.loader import TrainLoader
    from data.synthetic import write_synthetic_shards
    from harness.batching import micro_batch_size, micro_cap
    from harness.config import compose_config

    tmp = Path(tempfile.mkdtemp(prefix="bench-trainer-"))
    write_synthetic_shards(tmp / "data", train_tokens=1_000_000, val_tokens=20_000)
    overrides = [f"optimizer={args.optimizer}", f"model={args.model}", f"run_dir={tmp / 'run'}",
                 f"data.train_files={tmp / 'data'}/synthetic_train_*.bin",
                 f"data.val_files={tmp / 'data'}/synthetic_val_*.bin", "data.val_tokens=4096",
                 f"data.seq_len={args.seq_len}", f"batch.global_seqs={args.global_seqs}",
                 f"train.steps={args.steps}", "train.val_every=0", "train.ckpt_every=0", "train.log_every=1"]
    cfg = compose_config(overrides)

    # bare loop: same model/optimizer/batches, nothing else
    torch.manual_seed(cfg.seed)
    model = train.build_model(cfg)
    opt = train.build_optimizer(cfg.optimizer, model)
    micro = micro_batch_size(args.global_seqs, None, 1, micro_cap(cfg.train))
    loader = TrainLoader(cfg.data.train_files, args.seq_len, args.global_seqs, micro)
    batches = [loader.batch(s) for s in range(args.steps + 1)]
    null = contextlib.nullcontext()
    times = []
    for s in range(args.steps):
        t0 = time.perf_counter()
        float(train.optimizer_step(model, opt, batches.__getitem__, s, args.steps, null)[0])
        times.append(time.perf_counter() - t0)

    import io
    from contextlib import redirect_stdout

    with redirect_stdout(io.StringIO()):
        train.train(cfg)
    from harness import rundir

    rec = rundir.read_metrics(tmp / "run")
    skip = max(2, args.steps // 5)  # warm-up steps excluded from both
    bare = sum(times[skip:]) / (args.steps - skip)
    full = (rec[-2]["wall_s"] - rec[skip - 1]["wall_s"]) / (args.steps - 1 - skip)  # last step has validation
    overhead = full / bare - 1
    print(f"optimizer {args.optimizer}, model {args.model}, {args.global_seqs}x{args.seq_len} tokens/step")
    print(f"bare gradient passes + step : {1000 * bare:8.1f} ms/step")
    print(f"train.train() wall clock    : {1000 * full:8.1f} ms/step")
    print(f"trainer overhead            : {100 * overhead:+8.1f} %  (target <= 5%)")
    return dict(bare_ms=1000 * bare, trainer_ms=1000 * full, overhead=overhead)


if __name__ == "__main__":
    main()
