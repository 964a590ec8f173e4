"""Distributed (gloo, 2 and 3 CPU processes) equals single-process, for every variant and hand-over."""

from __future__ import annotations

import os

import optim_workers as W  # noqa: E402
import pytest
import torch
import torch.multiprocessing as mp

STEPS = 4
RESUME = [
    ("muon_mvr", "mars_clip_moonlight", "lookahead_prev_params"),
    ("gluon", "mvr2", "last_prev_batch"),
    ("muon_mvr", "mars_nesterov", "prev_step"),
]


def max_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


@pytest.mark.dist
@pytest.mark.parametrize("world", [2, 3])
def test_distributed_equals_single_process(tmp_path: os.PathLike[str], world: int) -> None:
    variants = W.dist_variants()
    if world == 3:  # cheaper: one variant per estimator, the two-pass hand-overs included
        variants = [
            ("muon_mvr", "mars_clip_moonlight", "lookahead_prev_params"),
            ("muon_mvr", "ema_baseline", "none"),
            ("gluon", "mvr1", "last_prev_params"),
            ("gluon", "mvr3", "prev_step"),
            ("gluon", "gluon", "none"),
        ]
    resume = RESUME if world == 2 else []
    mp.spawn(
        W.dist_worker,
        args=(world, os.path.join(tmp_path, "store"), str(tmp_path), variants, STEPS, resume),
        nprocs=world,
        join=True,
    )
    results = [torch.load(os.path.join(tmp_path, f"rank{r}.pt"), weights_only=False) for r in range(world)]
    for v in variants:
        single, single_bytes = W.run_variant(*v, steps=STEPS, imitate_world=world)
        per_rank_bytes = [results[r][v][1] for r in range(world)]
        for r in range(world):
            params = results[r][v][0]
            for i, (a, b) in enumerate(zip(params, results[0][v][0])):
                assert torch.equal(a, b), f"{v}: rank {r} param {i} differs from rank 0"
            for i, (a, b) in enumerate(zip(params, single)):
                assert max_rel(a, b) <= 1e-5, (v, i, max_rel(a, b))
        # sharded state: every byte of the single-process state is held by exactly one rank
        assert sum(per_rank_bytes) == single_bytes, (v, per_rank_bytes, single_bytes)
        assert max(per_rank_bytes) < single_bytes or single_bytes == 0
    for v in resume:
        for r in range(world):
            for a, b in zip(results[r][("resume", *v)][0], results[r][v][0]):
                assert torch.equal(a, b), f"resumed run differs: {v} rank {r}"
