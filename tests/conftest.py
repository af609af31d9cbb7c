"""Fixtures shared by the whole suite.

Services are real: PostgreSQL when DATABASE_URL points at it (as on CI), Redis
when REDIS_URL is set and reachable. A test that needs a missing service is
skipped, and pytest's -ra summary says why.
"""
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.tiny_models import build_tiny_chat_model, build_tiny_retriever, build_tiny_t5

REPO = Path(__file__).resolve().parent.parent
SHOW_TRANSCRIPTS = REPO.parent / "shared" / "data" / "tbbt_transcripts.csv"
TEST_OUTPUT = REPO / "test-output"


def service_reachable(url, default_port):
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or default_port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(autouse=True)
def no_account_throttles(settings):
    """Tests log in and sign up from one address, over and over (tests/faults/test_account_abuse.py sets limits)."""
    from tests.chat.live import UNTHROTTLED

    for name, value in UNTHROTTLED.items():
        setattr(settings, name, value)


@pytest.fixture(scope="session")
def redis_url():
    url = os.environ.get("REDIS_URL", "")
    if not url or not service_reachable(url, 6379):
        pytest.skip("Redis is not reachable (set REDIS_URL): needs the Redis channel layer / Celery broker")
    return url


@pytest.fixture(scope="session")
def show_transcripts():
    if not SHOW_TRANSCRIPTS.is_file():
        pytest.skip(f"The show's transcripts are not at {SHOW_TRANSCRIPTS}")
    return SHOW_TRANSCRIPTS


@pytest.fixture(scope="session")
def test_output():
    TEST_OUTPUT.mkdir(exist_ok=True)
    return TEST_OUTPUT


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tests share two cores with worker processes: torch's spinning threads would thrash."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup):
    """pytest-django's test database; before it is dropped, this process's reply sweeper is stopped (socket
    tests run in this process start it), so that no round of it reads a database that is going."""
    yield
    from chat.sweeper import stop_sweeper

    assert stop_sweeper(), "the reply sweeper did not stop"


# Tiny models built from configs (no downloads), once per session for every folder.
@pytest.fixture(scope="session")
def tiny_t5(tmp_path_factory):
    return build_tiny_t5(tmp_path_factory.mktemp("tiny-t5"))


@pytest.fixture(scope="session")
def tiny_chat(tmp_path_factory):
    return build_tiny_chat_model(tmp_path_factory.mktemp("tiny-chat"))


@pytest.fixture(scope="session")
def tiny_retriever(tmp_path_factory):
    return build_tiny_retriever(tmp_path_factory.mktemp("tiny-retriever"))
