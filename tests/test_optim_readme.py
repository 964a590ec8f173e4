"""optim/README.md: the registration example runs as printed, outside optim/, and every equation
section the docstrings point at exists."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "optim" / "README.md"


def _example() -> str:
    text = README.read_text()
    match = re.search(r"<!-- example: register-estimator -->\s*```python\n(.*?)```", text, re.S)
    assert match, "optim/README.md lost its runnable example"
    return match.group(1)


def test_register_estimator_example_runs_from_outside_optim(tmp_path) -> None:
    script = tmp_path / "example.py"  # outside the package, as a user's own file
    script.write_text(_example())
    out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "lion step ok; reference source: none" in out.stdout


def test_no_reference_outside_the_repository() -> None:
    """Code, configs, docs and tests point only at files a clone has (this file names the patterns)."""
    patterns = ("*.py", "*.md", "*.yaml", "*.sh", "Makefile", "*.toml")
    paths = [p for pat in patterns for p in REPO.rglob(pat)
             if not ({".venv", ".git", "runs", "data_cache", "results"} & set(p.relative_to(REPO).parts))
             and p.resolve() != Path(__file__).resolve()]
    assert len(paths) > 50, paths
    for path in paths:
        text = path.read_text(errors="replace")
        for bad in ("ALGORITHMS.md", "DESIGN.md", "../shared", "shared/research", "seed 000", "seed 001"):
            assert bad not in text, f"{path.relative_to(REPO)} mentions {bad!r}"


def test_registered_estimator_trains_through_a_config(tmp_path, monkeypatch) -> None:
    """The README's yaml route: the example as the user's module, named in optimizer.plugins, trained by
    family=registered with no trainer edit."""
    from trainer_utils import compose_cfg, small_run_overrides, write_test_shards

    import train

    (tmp_path / "my_estimators.py").write_text(_example())
    monkeypatch.syspath_prepend(str(tmp_path))
    data = write_test_shards(tmp_path / "data")
    extra = {"optimizer.family": "registered", "optimizer.plugins": "[my_estimators]",
             "optimizer.estimator": "lion", "++optimizer.hparams.beta2": 0.95,
             "++optimizer.hparams.scale": "muon", "optimizer.lr": 0.02}
    summary = train.train(compose_cfg(small_run_overrides(tmp_path / "run", data, "muon", steps=2, **extra)))
    assert summary["completed"] and summary["final_val_loss"] is not None
    missing = compose_cfg(small_run_overrides(tmp_path / "bad", data, "muon", steps=1,
                                              **{**extra, "optimizer.plugins": "[no_such_module]"}))
    with pytest.raises(ValueError, match="optimizer.plugins='no_such_module'.*importing it failed"):
        train.train(missing)
