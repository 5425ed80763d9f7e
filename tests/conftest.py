import logging
from pathlib import Path

import pytest
import torch
from huggingface_hub import constants, set_client_factory
from huggingface_hub.utils import httpx
from huggingface_hub.utils._http import default_client_factory

from eat_testing import SHARED_DIR, FakeHub


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


@pytest.fixture
def fake_hub():
    """The Hub's API answered in-process by `FakeHub` (no network): what the test's code sent is on the object."""
    hub = FakeHub()
    set_client_factory(lambda: httpx.Client(transport=httpx.MockTransport(hub)))
    yield hub
    set_client_factory(default_client_factory)


@pytest.fixture(autouse=True)
def logging_restored():
    """A command run in-process sets up logging for its whole process (`modeling_eat.runtime.configure_logging`);
    the next test starts from the logging that was there before."""
    import transformers

    from modeling_eat import runtime

    loggers = [logging.getLogger(name) for name in ("transformers", "datasets", "huggingface_hub", "modeling_eat")]
    saved = [(list(logger.handlers), logger.level, logger.propagate) for logger in loggers]
    root_level = logging.getLogger().level
    progress_bars = transformers.utils.logging.is_progress_bar_enabled()
    yield
    root = logging.getLogger()
    for handler in (runtime._RUN_LOG.console, runtime._RUN_LOG.buffer, runtime._RUN_LOG.file):
        if handler is not None:
            root.removeHandler(handler)
            handler.close()
    runtime._RUN_LOG.console = runtime._RUN_LOG.buffer = runtime._RUN_LOG.file = None
    root.setLevel(root_level)
    for logger, (handlers, level, propagate) in zip(loggers, saved):
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate
    if progress_bars:
        transformers.utils.logging.enable_progress_bar()


@pytest.fixture
def no_hub_token(monkeypatch, tmp_path):
    """No Hub token anywhere huggingface_hub looks (the environment, the token files)."""
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "no-tokens"))
