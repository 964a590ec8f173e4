"""The trainer's helper CLIs run: the loss plot of the quick start and the trainer-overhead benchmark."""

import json
import subprocess
import sys

import pytest
from trainer_utils import REPO


def test_plot_runs_writes_png_and_names_a_missing_run(tmp_path):
    for name, offset in (("a", 0.0), ("b", 0.1)):
        d = tmp_path / name
        d.mkdir()
        recs = [dict(step=s, train_loss=5 - s / 10 + offset) for s in range(1, 7)]
        for r in recs[1::2]:
            r["val_loss"] = r["train_loss"]
        (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    plot = str(REPO / "scripts" / "plot_runs.py")
    out = subprocess.run([sys.executable, plot, str(tmp_path / "a"), str(tmp_path / "b"), "--out",
                          str(tmp_path / "loss.png")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"
    bad = subprocess.run([sys.executable, plot, str(tmp_path / "nope"),
                          "--out", str(tmp_path / "x.png")], capture_output=True, text=True)
    assert bad.returncode != 0 and "nope/metrics.jsonl does not exist" in bad.stderr


@pytest.mark.slow
def test_bench_trainer_runs(tmp_path):
    cmd = [sys.executable, str(REPO / "scripts" / "bench_trainer.py"), "--steps", "6", "--global-seqs", "2",
           "--seq-len", "32"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "trainer overhead" in out.stdout and "ms/step" in out.stdout
