from pathlib import Path

import pytest
import torch


def pytest_configure(config):
    # pytest-xdist runs one worker per core; intra-op threads on top of that oversubscribe the CPU many times over.
    torch.set_num_threads(1)


PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = PROJECT_ROOT.parent / "shared"
FIXTURES_DIR = SHARED_DIR / "fixtures"
FSDD_DIR = SHARED_DIR / "data" / "fsdd"


@pytest.fixture(scope="session")
def project_root() -> Path:
    return PROJECT_ROOT


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
