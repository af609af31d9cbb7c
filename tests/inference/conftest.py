"""Fixtures for the inference tests: a silent T5, the demo corpus, settings (tiny models: tests/conftest.py)."""
import pytest
from django.core.management import call_command

from data.corpus import DEMO_TRANSCRIPTS
from tests.tiny_models import build_tiny_t5, make_silent, minilm_folder


@pytest.fixture(scope="session")
def silent_t5(tmp_path_factory):
    """A T5 that can only end at once: every reply comes out empty."""
    return make_silent(build_tiny_t5(tmp_path_factory.mktemp("silent-t5")))


@pytest.fixture
def demo_exchanges(db):
    """The demo corpus imported into the test database."""
    call_command("import_transcripts", str(DEMO_TRANSCRIPTS), character=["Sheldon"], verbosity=0)


@pytest.fixture
def tiny_chat_settings(settings, tiny_chat):
    """The tiny chat model, no retrieval, short replies, one candidate (it streams as it is generated)."""
    settings.GENERATOR_MODEL = str(tiny_chat)
    settings.RETRIEVER_MODEL = "none"
    settings.MAX_NEW_TOKENS = 10
    settings.REPLY_CANDIDATES = 1
    return settings


@pytest.fixture
def index_path(tmp_path, settings):
    settings.RETRIEVAL_INDEX_PATH = tmp_path / "index"
    return settings.RETRIEVAL_INDEX_PATH


@pytest.fixture(autouse=True)
def fresh_replier():
    """Each test's get_replier() is built from that test's settings."""
    from inference.replier import reset_replier

    reset_replier()
    yield
    reset_replier()


@pytest.fixture
def minilm():
    return str(minilm_folder())

