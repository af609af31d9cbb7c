"""The demo transcripts for the training tests (tiny models: tests/conftest.py)."""
import pytest

from data.corpus import DEMO_TRANSCRIPTS


@pytest.fixture(scope="session")
def demo_transcripts():
    """Three short episodes: two to train on, one to validate on."""
    return DEMO_TRANSCRIPTS
