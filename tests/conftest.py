from pathlib import Path

import pytest
import torch
from huggingface_hub import constants

from eat_testing import SHARED_DIR


FIXTURES_DIR = SHARED_DIR / "fixtures"
FSDD_DIR = SHARED_DIR / "data" / "fsdd"


def pytest_configure(config):
    # pytest-xdist runs one worker per core; intra-op threads on top of that oversubscribe the CPU many times over.
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not FIXTURES_DIR.is_dir():
        pytest.fail(f"reference fixtures not found at {FIXTURES_DIR}: check out ../shared beside the project")
    return FIXTURES_DIR


@pytest.fixture(scope="session")
def fsdd_dir() -> Path:
    if not FSDD_DIR.is_dir():
        pytest.fail(f"FSDD data not found at {FSDD_DIR}: check out ../shared beside the project")
    return FSDD_DIR


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No test reaches the network. huggingface_hub reads HF_HUB_OFFLINE once at import, hence its constant too;
    offline mode also stops its background telemetry requests, so a fake Hub sees only the requests a test makes."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
