"""What a new user types in the first hour, as typed: a misspelled key, an optimizer config that does not
exist, a data folder that does not exist (each exit 2 with only a message that names the fix, nothing
written); default run directories that tell apart launches that train differently; the log of a short
run and of a rerun of a finished one; the quick-start plot's range."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from helpers.trainer_utils import REPO, compose_cfg, small_run_overrides, write_test_shards

import train
from harness.config import ConfigError, check_command_line


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_test_shards(tmp_path_factory.mktemp("shards"))


def typed(tmp_path, *args: str) -> subprocess.CompletedProcess:
    """`python train.py ARGS` in an empty folder, as a user runs it."""
    return subprocess.run([sys.executable, str(REPO / "train.py"), *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(REPO)))


# ----------------------------------------------------------------------------- refused before Hydra composes
@pytest.mark.parametrize("args, says", [
    (["optimizer.lrr=0.01"], "optimizer.lrr in configs/optimizer/muon_mvr1.yaml; did you mean optimizer.lr?"),
    (["optimizer=gluon", "optimizer.q=0.1"], "is added with +: +optimizer.q=0.1"),
    (["trian.steps=3"], "no key trian.steps; did you mean train.steps?"),
    (["+optimizer.lrr=0.01"], "optimizer.lrr (did you mean lr?): optim.MuonMVR does not take them"),
    (["optimizer=muon_mvr4"], "there is no optimizer config 'muon_mvr4'"),
    (["-m", "optimizer=muon,muon_mvr4"], "there is no optimizer config 'muon_mvr4'"),
    (["experiment=one_gpu/fig9"], "choose one of: fig1, fig2"),
])
def test_a_typo_on_the_command_line_exits_2_with_the_fix(tmp_path, args, says):
    out = typed(tmp_path, *args)
    assert out.returncode == train.EXIT_CONFIG, out.stderr[-2000:]
    assert says in out.stderr and "Traceback" not in out.stderr and "HYDRA_FULL_ERROR" not in out.stderr
    if "optimizer config" in says:
        assert "muon_mvr1" in out.stderr  # the configs there are
    assert list(tmp_path.iterdir()) == []


def test_the_command_line_check_lets_valid_overrides_through():
    check_command_line(["optimizer=gluon_mvr2", "optimizer.lr=1e-3", "experiment=one_gpu/fig1", "model=small",
                        "+optimizer.beta=0.5", "optimizer.beta=0.5", "~wandb",
                        "hydra.verbose=true", "-m", "seed=0,1,2"])
    check_command_line(["--cfg", "job", "no.such.key=1"])  # other Hydra flags: Hydra's own handling


def test_a_missing_data_folder_exits_2_with_only_the_message(tmp_path):
    out = typed(tmp_path, "data.train_files=data_cache/nope/*.bin", "train.steps=1", "run_dir=r")
    assert out.returncode == train.EXIT_CONFIG, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    assert "config key data.train_files='data_cache/nope/*.bin' is invalid" in out.stderr
    assert "the folder data_cache/nope does not exist" in out.stderr
    assert "python -m data.shakespeare" in out.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("args", [
    ["data=shakespeare"],  # the default config before the quick-start corpus is made
    ["experiment=track3", "optimizer=muon_mvr1", "seed=0"],  # before the track's FineWeb shards are
], ids=["default", "track3"])
def test_a_launch_refused_for_missing_data_leaves_the_folder_empty(tmp_path, args):
    """Refused after the run directory was locked (the data are read once the model is built): neither
    the default run_dir (runs/<name>-<id>, runs/track3/<name>) nor a parent folder made for it remains."""
    out = typed(tmp_path, *args)
    assert out.returncode == train.EXIT_CONFIG, out.stderr[-2000:]
    assert "config key data.train_files=" in out.stderr and "Traceback" not in out.stderr
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == []


def test_too_little_validation_data_names_data_val_tokens(tmp_path, data_dir):
    cfg = compose_cfg(small_run_overrides(tmp_path / "r", data_dir, "muon", steps=1,
                                          **{"data.val_tokens": 64 * 10_000}))
    with pytest.raises(ConfigError, match=r"config key data.val_tokens=640000 is invalid: val_tokens=640000"):
        train.train(cfg)
    assert not (tmp_path / "r").exists()


# ----------------------------------------------------------------------------- default run directories
def default_run_dir(*overrides: str) -> str:
    return compose_cfg(list(overrides)).run_dir


def test_default_run_dirs_tell_apart_what_is_trained():
    quick = default_run_dir("experiment=quickstart", "optimizer=muon")
    assert quick.startswith("runs/quickstart/muon_s0-") and len(quick.rsplit("-", 1)[1]) == 8
    assert default_run_dir("experiment=quickstart", "optimizer=muon") == quick  # the same command resumes
    free = default_run_dir("experiment=quickstart", "optimizer=muon", "train.log_every=5")
    assert free == quick  # a key that may change on resume
    others = {default_run_dir("experiment=quickstart", "optimizer=muon", o) for o in
              ("train.steps=20", "optimizer.lr=1e-3", "data.train_files=other/*.bin", "seed=1")}
    assert quick not in others and len(others) == 4
    assert default_run_dir("run_dir=runs/mine", "train.steps=20") == "runs/mine"  # an explicit one is kept


def test_a_second_sweep_after_the_quick_start_does_not_collide(tmp_path, data_dir):
    """The quick-start command with another train.steps used to abort on the first run's checkpoint."""
    base = [o for o in small_run_overrides(tmp_path, data_dir, "muon", steps=2)
            if not o.startswith("run_dir=")]
    first = compose_cfg([*base, f"run_dir={tmp_path}/runs/${{run_name}}-${{run_id:}}"])
    train.train(first)
    again = compose_cfg([*base, "train.steps=1", f"run_dir={tmp_path}/runs/${{run_name}}-${{run_id:}}"])
    assert again.run_dir != first.run_dir
    assert train.train(again)["completed"]


# ----------------------------------------------------------------------------- what the log says
def test_short_run_and_finished_rerun_log_lines(tmp_path, data_dir):
    cfg = compose_cfg(small_run_overrides(tmp_path / "r", data_dir, "muon", steps=2))
    train.train(cfg)
    log = (tmp_path / "r" / "train.log").read_text()
    assert "median None" not in log
    assert "no median step time (every step was within train.timing_warmup=2)" in log
    train.train(cfg)  # the same command once more
    log = (tmp_path / "r" / "train.log").read_text().split("step_000002 is the last step")
    assert len(log) == 2 and "nothing left to train" in log[1] and "resumed from" not in log[1]


# ----------------------------------------------------------------------------- the quick-start plot
def test_the_plot_range_holds_every_evaluation_after_the_first_tenth():
    """The quick start's plot (scripts/compare.py, study/plots.py): the first evaluations run off the top
    instead of flattening the curves; every evaluation after the first tenth of the run is in range."""
    import numpy as np

    from study import plots, runs

    steps = np.arange(10, 251, 10)
    val = 10.8 * 0.98 ** steps + 5
    curve = runs.Curve("muon", "Muon", [0], steps, steps * 2048.0, steps * 0.5, val, np.zeros(len(steps)),
                       val[None, :])
    lo, hi = plots.y_limits([curve])
    assert lo < val.min() and hi >= val[steps >= 25].max() and hi < val[0]
