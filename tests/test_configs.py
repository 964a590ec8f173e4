"""Every optimizer x batch x experiment config composes; bad configs give errors that name the key."""

import pytest
from helpers.trainer_utils import OPTIMIZERS, compose_cfg
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ValidationError

import train
from harness.batching import micro_batch_size

EXPERIMENTS = ["fig1", "fig2", "fig3", "fig4", "muon_mvr", "quickstart"]


@pytest.mark.parametrize("batch", ["b128", "b512"])
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_optimizer_batch_composes(optimizer, batch):
    cfg = compose_cfg([f"optimizer={optimizer}", f"batch={batch}"])
    train.check_before_work(cfg)
    assert cfg.optimizer.name == optimizer
    assert cfg.batch.global_seqs == int(batch[1:])
    assert cfg.run_dir.startswith(f"runs/{optimizer}_{batch}_s0-")  # then the run id (harness/config.py)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_with_each_of_its_optimizers(experiment):
    cfg = compose_cfg([f"experiment={experiment}"])
    assert cfg.figure.name == experiment and cfg.figure.optimizers
    for opt in cfg.figure.optimizers:
        c = compose_cfg([f"experiment={experiment}", f"optimizer={opt}", "seed=3"])
        train.check_before_work(c)
        assert c.optimizer.name == opt and "_s3-" in c.run_dir and experiment in c.run_dir


def test_paper_settings():
    c = compose_cfg(["experiment=fig1"])
    got = (c.model.name, c.data.name, c.batch.global_seqs, c.data.seq_len)
    assert got == ("gpt124m", "fineweb10b", 512, 1024)
    assert compose_cfg(["experiment=fig2"]).batch.global_seqs == 128
    c4 = compose_cfg(["experiment=fig4"]).optimizer
    assert (c4.variant, c4.lr, c4.alpha, c4.q) == ("mvr3", 3.6e-4, 0.8, 0.5)
    assert compose_cfg(["experiment=fig3"]).optimizer.variant == "mvr2"


def test_misspelled_key_is_an_error():
    with pytest.raises(ConfigCompositionException, match="lrr"):
        compose_cfg(["optimizer.lrr=0.1"])


def test_wrong_type_is_an_error():
    """The optimizer section is the class's: its own checks refuse a value before any work."""
    with pytest.raises(train.ConfigError, match=r"optimizer.lr='abc' is invalid: must be a finite number"):
        train.check_before_work(compose_cfg(["optimizer.lr=abc"]))
    with pytest.raises((ValidationError, ConfigCompositionException)):
        compose_cfg(["train.steps=abc"])


def test_bad_optimizer_choice_names_key_and_choices():
    choices = r"'none', 'prev_step', 'prev_params', 'prev_batch'"
    with pytest.raises(train.ConfigError, match=rf"optimizer.reference='prev_token' is invalid: .*{choices}"):
        train.check_before_work(compose_cfg(["optimizer.reference=prev_token"]))


@pytest.mark.parametrize("key,value", [("resume", "maybe"), ("wandb.mode", "cloud")])
def test_bad_choice_names_key_and_choices(key, value):
    """Choices are Enums in the schema: Hydra refuses a bad one while composing, naming key and choices."""
    with pytest.raises(ConfigCompositionException) as info:
        compose_cfg([f"{key}={value}"])
    cause = str(info.value.__cause__)
    assert f"Invalid value '{value}', expected one of" in cause and f"full_key: {key}" in cause


def test_indivisible_batch_says_which_values_work():
    with pytest.raises(ValueError, match=r"batch.micro_seqs=5 .* valid values: \[1, 2, 4, 8, 16, 32, 64\]"):
        micro_batch_size(128, 5, world=2, cap=64)
    with pytest.raises(ValueError, match="cannot be split over 3 ranks"):
        micro_batch_size(128, None, world=3, cap=64)
    assert micro_batch_size(512, None, world=8, cap=64) == 64
    assert micro_batch_size(128, None, world=1, cap=48) == 32


def test_lr_schedule_constant_then_linear_warmdown():
    tc = train.TrainCfg(steps=10, warmdown_frac=0.3, warmup_steps=2)
    f = [train.lr_factor(s, tc) for s in range(10)]
    assert f[:2] == [0.5, 1.0] and f[2:7] == [1.0] * 5
    assert f[7:] == pytest.approx([1.0, 2 / 3, 1 / 3])
