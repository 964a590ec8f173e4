"""The trainer's helper CLIs run: the loss plot of the quick start and the trainer-overhead benchmark."""

import json
import subprocess
import sys

import pytest
import yaml
from trainer_utils import REPO

from scripts import plot_runs


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
    assert (tmp_path / "loss.pdf").read_bytes()[:5] == b"%PDF-"
    bad = subprocess.run([sys.executable, plot, str(tmp_path / "nope"),
                          "--out", str(tmp_path / "x.png")], capture_output=True, text=True)
    assert bad.returncode != 0 and "nope/metrics.jsonl does not exist" in bad.stderr


def test_plot_runs_titles_labels_and_frames_the_curves(tmp_path, monkeypatch):
    """Labels from the optimizer configs, the runs' figure title, and a y-range that the first steps'
    loss (ln 50257 = 10.8) does not stretch."""
    runs = []
    for opt, offset in (("muon", 0.1), ("muon_mvr1", 0.0)):
        d = tmp_path / f"{opt}_s0"
        d.mkdir()
        recs = [dict(step=s, train_loss=10.8 if s == 1 else 6 - s / 50 + offset) for s in range(1, 101)]
        for r in recs[19::20]:
            r["val_loss"] = r["train_loss"] + 0.05
        (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
        cfg = {"optimizer": {"name": opt}, "seed": 0, "figure": {"title": "Quick start: Muon vs MuonMVR"}}
        (d / "config.yaml").write_text(yaml.safe_dump(cfg))
        runs.append(str(d))
    figs = []
    monkeypatch.setattr(plot_runs, "save", lambda fig, png: figs.append(fig) or [png])
    plot_runs.main([*runs, "--out", str(tmp_path / "loss.png")])
    (fig,) = figs
    (ax,) = fig.axes
    assert ax.get_title() == "Quick start: Muon vs MuonMVR"
    lo, hi = ax.get_ylim()
    assert 3.9 < lo < 4.1 and 5.8 < hi < 6.3  # every evaluation and the curves, not the first step's 10.8
    (legend,) = fig.legends  # below the axes, not over the curves
    assert [t.get_text() for t in legend.get_texts()] == ["Muon, seed 0 (val 4.150 at step 100)",
                                                          "MuonMVR (MVR1), seed 0 (val 4.050 at step 100)"]
    plot_runs.main([*runs, "--out", str(tmp_path / "loss.png"), "--title", "Mine"])
    assert figs[-1].axes[0].get_title() == "Mine"


@pytest.mark.slow
def test_bench_trainer_runs(tmp_path):
    cmd = [sys.executable, str(REPO / "scripts" / "bench_trainer.py"), "--steps", "6", "--global-seqs", "2",
           "--seq-len", "32"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "trainer overhead" in out.stdout and "ms/step" in out.stdout
