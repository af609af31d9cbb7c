"""The retrieval index: build_index, search, threshold, stale and missing indexes."""
import json
import time

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from data.models import Exchange
from inference.retrieval import (
    IndexedExchange,
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
def test_a_scripted_answer_is_found_from_its_own_words(minilm_index):
    exchanges = list(Exchange.objects.filter(character="Sheldon").select_related("episode"))
    assert len(minilm_index.exchanges) == len(exchanges) > 10
    for exchange in exchanges[::4]:
        [hit] = minilm_index.search([], exchange.answer, k=1)
        assert hit.text == exchange.answer and hit.score > 0.99
        twin = next(e for e in exchanges if e.answer == exchange.answer)  # the first exchange with these words
        assert (hit.episode, hit.scene, hit.question) == (twin.episode.name, twin.scene, twin.question)


@pytest.mark.slow
def test_search_gives_distinct_answers_best_first_and_a_batch_gives_what_each_query_gives(minilm_index):
    dialogue, message = ["Penny, it's cold out there."], "Do you want to come to the movies with us tonight?"
    hits = minilm_index.search(dialogue, message, k=5)
    assert len(hits) == 5 and len({hit.text for hit in hits}) == 5
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)
    # The score is the cosine of the query with the answer, as `similarities` computes it for any text.
    [query] = minilm_index.queries([dialogue], [message])
    assert minilm_index.similarities(query, [hits[0].text])[0] == pytest.approx(hits[0].score, abs=1e-4)
    unrelated = "What is the best recipe for a Mongolian barbecue marinade?"
    batched, alone = minilm_index.search_many([dialogue, []], [message, unrelated], k=2), minilm_index.search([], unrelated, k=2)
    assert [h.text for h in batched[0]] == [h.text for h in hits[:2]]
    assert [h.text for h in batched[1]] == [h.text for h in alone]
    assert batched[1][0].score == pytest.approx(alone[0].score, abs=1e-4)


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
    assert load(index_path, str(tiny_retriever)).search([], "A changed answer.", k=1)[0].text == "A changed answer."


def test_an_index_of_another_retriever_is_refused(demo_exchanges, index_path, settings, tiny_retriever, tmp_path):
    settings.RETRIEVER_MODEL = str(tiny_retriever)
    call_command("build_index", verbosity=0)
    with pytest.raises(StaleIndexError, match="built with the retriever"):
        load(index_path, str(tmp_path / "other-retriever"))


def test_an_index_of_a_retriever_trained_again_in_place_is_refused(
    demo_exchanges, index_path, settings, tiny_retriever, tmp_path
):
    """A shipped selector retrained under the same folder name: its index must be rebuilt."""
    import shutil

    retriever = tmp_path / "selector"
    shutil.copytree(tiny_retriever, retriever)
    settings.RETRIEVER_MODEL = str(retriever)
    call_command("build_index", verbosity=0)
    load(index_path, str(retriever))
    weights = retriever / "model.safetensors"
    weights.write_bytes(weights.read_bytes() + b"\0")  # other weights, same name
    with pytest.raises(StaleIndexError, match="changed.*trained again.*build_index"):
        load(index_path, str(retriever))


def test_an_index_from_before_weight_digests_is_rebuilt_with_the_reason(
    demo_exchanges, index_path, settings, tiny_retriever
):
    import json

    settings.RETRIEVER_MODEL = str(tiny_retriever)
    call_command("build_index", verbosity=0)
    manifest_path = index_path / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest["retriever_weights"]
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(StaleIndexError, match="built before indexes recorded their retriever's weights"):
        load(index_path, str(tiny_retriever))


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


def test_an_index_whose_exchanges_context_changed_is_stale(demo_exchanges, index_path, settings, tiny_retriever):
    settings.RETRIEVER_MODEL = str(tiny_retriever)
    call_command("build_index", verbosity=0)
    exchange = Exchange.objects.filter(character="Sheldon").exclude(context=[]).first()
    exchange.context = ["A line the new import has."]  # the retrieved exchange's context goes into prompts
    exchange.save()
    with pytest.raises(StaleIndexError, match="exchanges changed"):
        load(index_path, str(tiny_retriever))


def test_an_index_of_another_format_is_stale_and_rebuilt(demo_exchanges, index_path, settings, tiny_retriever, capsys):
    settings.RETRIEVER_MODEL = str(tiny_retriever)
    call_command("build_index", verbosity=0)
    manifest_path = index_path / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["format"] = 1
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(StaleIndexError, match="format 1"):
        load(index_path, str(tiny_retriever))
    capsys.readouterr()
    call_command("build_index")
    assert "up to date" not in capsys.readouterr().out
    load(index_path, str(tiny_retriever))


def test_search_gives_each_answer_once_however_many_exchanges_end_with_it():
    exchanges = [
        IndexedExchange("q1", "Bazinga!", "e", 1), IndexedExchange("q2", "Bazinga!", "e", 2),
        IndexedExchange("q3", "Hmm.", "e", 3),
    ]
    vectors = np.array([[1.0, 0.0], [0.99, 0.14], [0.6, 0.8]], dtype=np.float32)
    index = RetrievalIndex("model", None, vectors, exchanges, {})
    [hits] = index.search_many([[]], ["x"], k=2, queries=np.array([[1.0, 0.0]], dtype=np.float32))
    assert [hit.text for hit in hits] == ["Bazinga!", "Hmm."]
