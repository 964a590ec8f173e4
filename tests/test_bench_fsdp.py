"""The replicated-vs-fsdp2 benchmark runs as a command line on 2 gloo ranks and reports sane bytes.

Structural checks only (what each rank holds); no timing is asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def close(a: float, b: float, rel: float = 0.02) -> bool:
    return abs(a - b) <= rel * abs(b)


@pytest.mark.dist
def test_bench_fsdp_cli_two_ranks(tmp_path: os.PathLike[str]) -> None:
    out_json = os.path.join(tmp_path, "fsdp.json")
    cmd = [sys.executable, os.path.join(REPO, "scripts", "bench_fsdp.py"), "--models", "small",
           "--steps", "1", "--warmup", "0", "--world", "2", "--vocab", "256", "--json", out_json]
    env = {**os.environ, "PYTHONPATH": REPO, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "| small | replicated |" in out.stdout and "| small | fsdp2 |" in out.stdout
    assert "total × replicated" in out.stdout

    with open(out_json) as f:
        report = json.load(f)
    assert report["world"] == 2 and report["optimizer"] == "muon_mvr1"
    small = report["models"]["small"]
    rep, fsdp = small["replicated"], small["fsdp2"]
    # the small GPT with vocabulary 256: 4 layers of 256 wide (12·256² each) and the tied 256×256 embedding
    numel = 4 * 12 * 256 * 256 + 256 * 256
    assert rep["params_bytes"] == rep["grads_bytes"] == 4 * numel  # every rank holds the whole model
    assert close(2 * fsdp["params_bytes"], rep["params_bytes"])  # each rank holds half of every weight
    assert close(2 * fsdp["grads_bytes"], rep["grads_bytes"])
    # MVR1 keeps two tensors per parameter (momentum and the previous gradient; AdamW's two moments on the
    # embedding), sharded over the 2 ranks in both modes: as many bytes as the whole model
    assert close(rep["state_bytes"], rep["params_bytes"]) and close(fsdp["state_bytes"], rep["state_bytes"])
    assert fsdp["state_bytes"] < rep["params_bytes"] + rep["grads_bytes"]
    for row in (rep, fsdp):
        assert row["total_bytes"] == row["params_bytes"] + row["grads_bytes"] + row["state_bytes"]
        assert row["step_ms"] > 0
    assert small["ratio_total_bytes"] == pytest.approx(fsdp["total_bytes"] / rep["total_bytes"])
    assert small["ratio_total_bytes"] < 1
    assert small["ratio_step_time"] == pytest.approx(fsdp["step_ms"] / rep["step_ms"])


@pytest.mark.parametrize("args, message", [
    (["--models", "small,nope"], "no configs/model/<name>.yaml for ['nope']"),
    (["--world", "1"], "needs 2 or more ranks"),
    (["--steps", "0"], "need steps >= 1"),
])
def test_bench_fsdp_refuses_bad_arguments(args: list[str], message: str, capsys) -> None:
    import bench_fsdp

    with pytest.raises(SystemExit) as exc:
        bench_fsdp.main(args)
    assert exc.value.code == 2 and message in capsys.readouterr().err
