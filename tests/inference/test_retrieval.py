"""The retrieval index: build_index, search, threshold, stale and missing indexes."""
import time

import pytest
from django.core.management import CommandError, call_command

from data.models import Exchange
from inference.retrieval import (
    IndexMissingError,
    RetrievalIndex,
    StaleIndexError,
    exchanges_from_database,
    fingerprint,
)

pytestmark = pytest.mark.django_db


def load(path, model):
    return RetrievalIndex.load(path, model, fingerprint(exchanges_from_database("Sheldon")))


@pytest.fixture
def minilm_index(demo_exchanges, index_path, settings, minilm):
    settings.RETRIEVER_MODEL = minilm
    call_command("build_index", verbosity=0)
    return load(index_path, minilm)


@pytest.mark.slow
def test_an_exchange_is_found_from_its_own_question_and_context(minilm_index):
    exchanges = list(Exchange.objects.filter(character="Sheldon").select_related("episode"))
    assert len(minilm_index.exchanges) == len(exchanges) > 10
    for exchange in exchanges[::4]:
        hit = minilm_index.best(exchange.context, exchange.question, threshold=0.89)
        assert hit is not None and hit.text == exchange.answer
        assert hit.score > 0.99
        assert (hit.episode, hit.scene, hit.question) == (exchange.episode.name, exchange.scene, exchange.question)


@pytest.mark.slow
def test_the_threshold_works_both_ways(minilm_index):
    unrelated = "What is the best recipe for a Mongolian barbecue marinade?"
    assert minilm_index.best([], unrelated, threshold=0.89) is None
    best = minilm_index.best([], unrelated, threshold=-1.0)
    assert best is not None and best.score < 0.89
    exchange = Exchange.objects.filter(character="Sheldon").first()
    hit = minilm_index.best(exchange.context, exchange.question, threshold=0.89)
    assert hit.text == exchange.answer
    assert minilm_index.best(exchange.context, exchange.question, threshold=hit.score + 1e-3) is None
    # A batch of queries gives what each query gives alone.
    batched, none = minilm_index.best_many([exchange.context, []], [exchange.question, unrelated], threshold=0.89)
    assert none is None and batched.text == hit.text and batched.score == pytest.approx(hit.score, abs=1e-4)


def test_build_index_skips_an_up_to_date_index_and_rebuilds_a_stale_one(
    demo_exchanges, index_path, settings, tiny_retriever, capsys
):
    settings.RETRIEVER_MODEL = str(tiny_retriever)
    call_command("build_index")
    assert "Indexed" in capsys.readouterr().out
    built = (index_path / "manifest.json").stat().st_mtime_ns

    started = time.perf_counter()
    call_command("build_index")
    assert "up to date" in capsys.readouterr().out
    assert time.perf_counter() - started < 5
    assert (index_path / "manifest.json").stat().st_mtime_ns == built

    # Other data: the index is refused, then rebuilt.
    exchange = Exchange.objects.filter(character="Sheldon").first()
    exchange.answer = "A changed answer."
    exchange.save()
    with pytest.raises(StaleIndexError, match="exchanges changed.*build_index"):
        load(index_path, str(tiny_retriever))
    call_command("build_index")
    assert "exchanges changed" in capsys.readouterr().out
    assert load(index_path, str(tiny_retriever)).best([], "A changed answer.", threshold=-1) is not None


def test_an_index_of_another_retriever_is_refused(demo_exchanges, index_path, settings, tiny_retriever, tmp_path):
    settings.RETRIEVER_MODEL = str(tiny_retriever)
    call_command("build_index", verbosity=0)
    with pytest.raises(StaleIndexError, match="built with the retriever"):
        load(index_path, str(tmp_path / "other-retriever"))


def test_a_missing_index_gives_the_clear_message(index_path, tiny_retriever):
    with pytest.raises(IndexMissingError, match="No retrieval index at .*build_index"):
        RetrievalIndex.load(index_path, str(tiny_retriever))


def test_build_index_without_exchanges_says_to_import(index_path, settings, tiny_retriever):
    settings.RETRIEVER_MODEL = str(tiny_retriever)
    with pytest.raises(CommandError, match="import_transcripts"):
        call_command("build_index", verbosity=0)


def test_build_index_with_retrieval_off_does_nothing(index_path, settings, capsys):
    settings.RETRIEVER_MODEL = "none"
    call_command("build_index")
    assert "Retrieval is off" in capsys.readouterr().out
    assert not index_path.exists()
