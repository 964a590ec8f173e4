"""The test environment itself (conftest.py): offline environment, network guard, importable top-level
modules."""

import importlib
import os
import socket

import pytest


def test_offline_environment_is_set():
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert os.environ["HF_DATASETS_OFFLINE"] == "1"
    assert os.environ["WANDB_MODE"] == "disabled"


def test_outbound_network_is_refused():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        with pytest.raises(ConnectionRefusedError, match="offline"):
            s.connect(("198.51.100.7", 443))  # TEST-NET-2: never a real host


@pytest.mark.parametrize("name", ["optim", "data", "model", "train"])
def test_top_level_modules_import(name):
    importlib.import_module(name)
