"""The optimizer benchmark runs end to end with tiny settings and prints its ratio table."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--preset", "tiny", "--steps", "1", "--warmup", "0", "--device", "cpu"]


def test_bench_optim_tiny_single_process() -> None:
    import bench_optim

    variants = "muon,muon_mvr1,muon_mvr2,gluon_mvr3"
    results = bench_optim.main([*TINY, "--world-size", "1", "--variants", variants])
    assert set(results[1]) >= {"muon", "muon_mvr1", "muon_mvr2", "gluon_mvr3"}
    assert results[1]["muon_mvr2"]["state_bytes"] > results[1]["muon"]["state_bytes"] > 0


@pytest.mark.dist
def test_bench_optim_cli_two_ranks(tmp_path: os.PathLike[str]) -> None:
    cmd = [sys.executable, os.path.join(REPO, "scripts", "bench_optim.py"), *TINY, "--world-size", "1,2",
           "--variants", "muon,gluon_mvr1"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True)
    assert "| muon | 2 |" in out.stdout and "× torch.optim.Muon" in out.stdout
    assert "| gluon_mvr1 | 2 |" in out.stdout
