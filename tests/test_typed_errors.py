"""Modules talk through typed errors and parsed values, not each other's message text."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.trainer_utils import compose_cfg

import train
from data.shards import ShardError, check_ids
from harness.batching import micro_cap, vocab_error
from harness.config import ConfigError, TrainCfg, compile_enabled, max_micro_seqs
from optim import GluonMVR, HyperparameterError


def test_optim_validation_error_carries_name_value_and_why():
    p = torch.nn.Parameter(torch.zeros(4, 4))
    with pytest.raises(HyperparameterError) as err:
        GluonMVR([{"params": [p], "lmo": "spectral"}], lr=1e-3, q=0.0)
    e = err.value
    assert (e.name, e.value) == ("q", 0.0) and "> 0.0" in e.why
    assert str(e).startswith("Invalid q: 0.0 (")  # the message optim's users read is unchanged


def test_trainer_names_the_config_key_from_the_typed_fields():
    cfg = compose_cfg(["optimizer=gluon_mvr2", "optimizer.q=0.0"])
    with pytest.raises(ConfigError, match=r"config key optimizer.q=0.0 is invalid: must be > 0.0 .*mvr2"):
        train.check_before_work(cfg)
    cfg = compose_cfg(["optimizer=muon", "+optimizer.adamw_betas=[0.9,1.2]"])
    with pytest.raises(ConfigError, match=r"config key optimizer.adamw_betas="):
        train.check_before_work(cfg)


def test_shard_error_carries_the_offending_token_id(tmp_path):
    path = tmp_path / "x_train_000000.bin"
    with pytest.raises(ShardError) as err:
        check_ids(path, np.array([1, 2, 300, 4], dtype=np.uint16), vocab_size=256)
    assert err.value.token_id == 300 and err.value.path == path
    hint = vocab_error(err.value, 256)
    assert isinstance(hint, ConfigError) and "model.vocab_size >= 301" in str(hint) and str(path) in str(hint)
    other = ShardError("truncated header", path=path)
    assert vocab_error(other, 256) is other  # not about the vocabulary: passed on as it is


@pytest.mark.parametrize("text,value", [("auto", None), (" Auto ", None), ("8", 8), (" 8 ", 8)])
def test_max_micro_seqs_is_parsed_once_into_a_value(text, value):
    tc = TrainCfg(max_micro_seqs=text)
    assert max_micro_seqs(tc) == value
    assert micro_cap(tc) == (16 if value is None else value)


@pytest.mark.parametrize("text", ["0", "-1", "many", ""])
def test_bad_max_micro_seqs_is_refused(text):
    with pytest.raises(ConfigError, match="train.max_micro_seqs"):
        max_micro_seqs(TrainCfg(max_micro_seqs=text))


def test_compile_is_parsed_once():
    cfg = compose_cfg([])
    for text, cpu, cuda in [("auto", False, True), (" TRUE", True, True), ("false", False, False)]:
        cfg.compile = text
        assert (compile_enabled(cfg, "cpu"), compile_enabled(cfg, "cuda")) == (cpu, cuda)
    cfg.compile = "sometimes"
    with pytest.raises(ConfigError, match="compile"):
        compile_enabled(cfg, "cpu")
