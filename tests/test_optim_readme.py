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


def _block(tag: str, lang: str) -> str:
    match = re.search(rf"<!-- example: {tag} -->\s*```{lang}\n(.*?)```", README.read_text(), re.S)
    assert match, f"optim/README.md lost its example {tag!r}"
    return match.group(1)


def test_a_preset_with_a_new_hyperparameter_is_its_module_and_its_yaml(tmp_path) -> None:
    """The README's preset: the module and the yaml, written as printed outside the repository, train by
    the printed command (hydra.searchpath); a misspelled key is refused with the class's closest keys."""
    from helpers.trainer_utils import small_run_overrides, write_test_shards

    (tmp_path / "my_optimizers.py").write_text(_block("preset-module", "python"))
    (tmp_path / "my_configs" / "optimizer").mkdir(parents=True)
    (tmp_path / "my_configs" / "optimizer" / "qhmuon.yaml").write_text(_block("preset-yaml", "yaml"))
    data = write_test_shards(tmp_path / "data")
    args = [*small_run_overrides(tmp_path / "run", data, "qhmuon", steps=2),
            f"hydra.searchpath=[file://{tmp_path / 'my_configs'}]", "optimizer.nu=0.5"]
    env = {"PYTHONPATH": f"{tmp_path}:{REPO}", "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    run = subprocess.run([sys.executable, str(REPO / "train.py"), *args], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    config = (tmp_path / "run" / "config.yaml").read_text()
    assert "_target_: my_optimizers.QHMuon" in config and "nu: 0.5" in config and "label: QH-Muon" in config
    bad = subprocess.run([sys.executable, str(REPO / "train.py"), *args[:-1], "+optimizer.nuu=0.5",
                          f"run_dir={tmp_path / 'bad'}"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=300)
    assert bad.returncode == 2, bad.stderr[-3000:]
    assert "optimizer.nuu (did you mean nu?)" in bad.stderr and "QHMuon does not take" in bad.stderr
    assert not (tmp_path / "bad").exists()


def test_registered_estimator_trains_through_a_config(tmp_path, monkeypatch) -> None:
    """A module that only registers an estimator, named in optimizer.plugins, trained by
    optim.ShardedOptimizer with estimator=<its name>, with no trainer edit."""
    from helpers.trainer_utils import compose_cfg, small_run_overrides, write_test_shards

    import train

    (tmp_path / "my_estimators.py").write_text(_example())
    monkeypatch.syspath_prepend(str(tmp_path))
    data = write_test_shards(tmp_path / "data")
    extra = {"optimizer._target_": "optim.ShardedOptimizer", "+optimizer.plugins": "[my_estimators]",
             "+optimizer.estimator": "lion", "+optimizer.beta2": 0.95, "+optimizer.scale": "muon",
             "optimizer.lr": 0.02, "~optimizer.reference": None, "~optimizer.momentum": None}
    overrides = small_run_overrides(tmp_path / "run", data, "muon_mvr1", steps=2, **extra)
    overrides = [o.removesuffix("=None") for o in overrides]
    summary = train.train(compose_cfg(overrides))
    assert summary["completed"] and summary["final_val_loss"] is not None
    missing = compose_cfg([o.replace("[my_estimators]", "[no_such_module]") for o in overrides])
    with pytest.raises(ValueError, match="optimizer.plugins='no_such_module'.*importing it failed"):
        train.train(missing)
