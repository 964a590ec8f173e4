"""The helper CLIs run: a user's own comparison (scripts/compare.py, the quick start's loss plot) and the
trainer-overhead benchmark."""

import json
import subprocess
import sys

import pytest
import yaml
from helpers.trainer_utils import REPO

from scripts import compare
from study import plots


def own_run(d, optimizer: str, seed: int, final: float, lr: float = 3e-3, label: str | None = None) -> None:
    """A finished run of a user's own optimizer config under the quick start, as train.py leaves it."""
    d.mkdir(parents=True)
    opt = {"name": optimizer, "lr": lr, **({"label": label} if label else {})}
    cfg = {
        "optimizer": opt,
        "seed": seed,
        "model": {"name": "tiny"},
        "data": {"name": "shakespeare"},
        "batch": {"global_seqs": 16},
        "train": {"steps": 100, "val_every": 20},
        "run_dir": str(d),
        "figure": {"name": "quickstart", "title": "Quick start: Muon vs MuonMVR"},
    }
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    recs = [
        dict(step=s, train_loss=10.8 if s == 1 else 6 - s / 50, tokens=2048 * s, grad_evals=s, time_s=0.5 * s)
        for s in range(1, 101)
    ]
    for r in recs[19::20]:
        r["val_loss"] = final + (100 - r["step"]) / 100
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    (d / "summary.json").write_text(json.dumps({"completed": True, "steps": 100}))


def test_a_users_own_comparison_in_one_command(tmp_path, monkeypatch):
    """Runs of any experiment and optimizer (a QHM config the repository has never seen, against muon, two
    seeds each, in one folder): one figure and one table, seeds averaged and grouped by config, labelled
    from the optimizer configs, one style per setting; the table's Δ is paired by seed."""
    for seed, (a, b) in enumerate([(4.0, 4.1), (4.2, 4.25)]):
        own_run(tmp_path / f"muon_s{seed}", "muon", seed, a)
        own_run(tmp_path / f"qhm_s{seed}", "qhm", seed, b, label="QHM (ν 0.7)")
    figs = []
    real = plots.save
    monkeypatch.setattr(plots, "save", lambda fig, png: figs.append(fig) or real(fig, png))
    assert compare.main([str(tmp_path), "--out", str(tmp_path / "cmp")]) == 0
    (fig,) = figs
    assert fig._suptitle.get_text().startswith("Quick start: Muon vs MuonMVR")  # the runs' figure.title
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["Muon: 4.100 ± 0.141", "QHM (ν 0.7): 4.175 ± 0.106"]  # one entry per setting, 2 seeds
    colours = {ln.get_color() for ln in fig.axes[0].get_lines()}
    assert len(colours) == 2  # one colour per optimizer config, not per seed
    md = (tmp_path / "cmp.md").read_text()
    assert "| Muon | 0 1 | 100 | 4.1000 ± 0.1414 | (baseline) |  |" in md
    assert "| QHM (ν 0.7) | 0 1 | 100 | 4.1750 ± 0.1061 | +0.0750 ± 0.0354 | higher |" in md
    assert (tmp_path / "cmp.png").exists() and (tmp_path / "cmp.pdf").exists()
    # the same optimizer at two learning rates: two settings, told apart by the key they differ in
    own_run(tmp_path / "muon_lr_s0", "muon", 0, 3.9, lr=9e-3)
    assert compare.main([str(tmp_path), "--out", str(tmp_path / "cmp2"), "--baseline", "QHM (ν 0.7)"]) == 0
    md = (tmp_path / "cmp2.md").read_text()
    assert "| QHM (ν 0.7) | 0 1 | 100 |" in md.splitlines()[2]  # the baseline first
    assert "| Muon (lr 0.003) | 0 1 |" in md and "| Muon (lr 0.009) | 0 | 100 | 3.9000 |" in md


def test_compare_names_what_it_cannot_read(tmp_path, capsys):
    assert compare.main([str(tmp_path / "nope")]) == 2
    assert "nope does not exist" in capsys.readouterr().err
    own_run(tmp_path / "a_s0", "muon", 0, 4.0)
    own_run(tmp_path / "b_s0", "muon", 0, 4.1)  # the same setting and seed twice
    assert compare.main([str(tmp_path)]) == 2
    assert "are the same setting and seed 0" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_trainer_runs(tmp_path):
    cmd = [
        sys.executable,
        str(REPO / "scripts" / "bench_trainer.py"),
        "--steps",
        "6",
        "--global-seqs",
        "2",
        "--seq-len",
        "32",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "trainer overhead" in out.stdout and "ms/step" in out.stdout
