"""Tiny models for the training tests, built once per session (no downloads)."""
import pytest

from data.corpus import DEMO_TRANSCRIPTS
from tests.tiny_models import build_tiny_chat_model, build_tiny_retriever, build_tiny_t5


@pytest.fixture(scope="session")
def tiny_chat(tmp_path_factory):
    return build_tiny_chat_model(tmp_path_factory.mktemp("tiny-chat"))


@pytest.fixture(scope="session")
def tiny_t5(tmp_path_factory):
    return build_tiny_t5(tmp_path_factory.mktemp("tiny-t5"))


@pytest.fixture(scope="session")
def tiny_retriever(tmp_path_factory):
    return build_tiny_retriever(tmp_path_factory.mktemp("tiny-retriever"))


@pytest.fixture(scope="session")
def demo_transcripts():
    """Three short episodes: two to train on, one to validate on."""
    return DEMO_TRANSCRIPTS


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tests share two cores with other processes: torch's spinning threads would thrash."""
    import torch

    torch.set_num_threads(1)
