"""The replier: the contract the web and worker code use, with tiny models."""
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core.management import call_command

from inference.cleanup import streamed_as
from inference.replier import (
    FALLBACK_REPLY,
    FinishReason,
    RequestState,
    RequestStatus,
    Turn,
    build_replier,
    get_replier,
)
from inference.retrieval import IndexMissingError


def test_a_reply_streams_its_text_and_carries_its_record(tiny_chat_settings, tiny_chat):
    pieces = []
    reply = get_replier().reply([Turn("user", "Hi."), Turn("bot", "Hello.")], "How are you?", on_piece=pieces.append)
    assert streamed_as("".join(pieces), reply.text) and reply.text
    assert reply.generator_model == str(tiny_chat) and reply.retriever_model == ""
    assert reply.retrieved is None and reply.profile == "offline"
    assert reply.parameters["max_new_tokens"] == 10 and reply.parameters["do_sample"] is True
    assert reply.seconds > 0 and 0 <= reply.new_tokens <= 20  # at most two attempts
    assert not reply.stopped
    assert get_replier() is get_replier()


@pytest.fixture(params=["tiny_t5", "tiny_chat"])
def each_generator_settings(request, settings):
    """Each kind of tiny generator in turn (seq2seq, then chat), no retrieval, one candidate."""
    settings.GENERATOR_MODEL = str(request.getfixturevalue(request.param))
    settings.RETRIEVER_MODEL = "none"
    settings.REPLY_CANDIDATES = 1
    return settings


def test_reply_many_streams_and_stops_each_row_on_its_own(each_generator_settings):
    each_generator_settings.MAX_NEW_TOKENS = 16
    replier = build_replier()
    pieces = [[], [], []]
    stop_now = lambda: True  # noqa: E731
    requests = [
        RequestState([], "Hello there.", pieces[0].append),
        RequestState([Turn("user", "I have a question.")], "What is physics?", pieces[1].append, stop_now),
        RequestState([], "Bazinga!", pieces[2].append),
    ]
    replies = replier.reply_many(requests)
    for reply, row_pieces in zip(replies, pieces):
        assert streamed_as("".join(row_pieces), reply.text)
    # Stopped at its first decode step (a prompt's first token may come with its prefill), nothing shown.
    assert replies[1].stopped and replies[1].new_tokens <= 1 and replies[1].text == ""
    assert not replies[1].fallback  # a stopped reply is not replaced
    assert not replies[0].stopped and not replies[2].stopped
    assert replies[0].text and replies[2].text


def test_a_request_goes_waiting_running_finished_and_each_sequence_says_why_it_ended(tiny_chat_settings):
    replier = build_replier()
    request, failing = RequestState([], "Hello there."), RequestState([], "Physics?", on_piece=lambda piece: 1 / 0)
    assert request.status is RequestStatus.WAITING
    batch = replier.open_batch()
    batch.add(replier.prepare([request, failing], candidates=2))
    assert request.status is RequestStatus.RUNNING and len(batch) == 4
    sequences = list(batch.sequences)
    finished = []
    while batch:
        finished += batch.step()
    assert set(map(id, finished)) == {id(request), id(failing)}
    assert request.status is RequestStatus.FINISHED and request.reply.text and request.error is None
    assert {sequence.finish_reason for sequence in sequences[:2]} <= {FinishReason.END, FinishReason.LENGTH}
    # A ranked request shows only its chosen reply: its callback fails then, and the request carries the error.
    assert isinstance(failing.error, ZeroDivisionError)
    with pytest.raises(ZeroDivisionError):
        replier.reply([], "Physics?", on_piece=lambda piece: 1 / 0)


@pytest.mark.timeout(120)  # a retry that never ends would otherwise hang for the suite's 900 s
def test_an_empty_reply_is_retried_then_answered_by_the_marked_fallback(settings, silent_t5):
    settings.GENERATOR_MODEL = str(silent_t5)
    settings.RETRIEVER_MODEL = "none"
    settings.REPLY_CANDIDATES = 1
    pieces = []
    reply = build_replier().reply([], "Say something.", on_piece=pieces.append)
    assert reply.fallback and reply.text == FALLBACK_REPLY
    assert pieces == [FALLBACK_REPLY]
    assert reply.new_tokens == 0


def test_history_is_bounded_to_the_last_turns(tiny_chat_settings):
    tiny_chat_settings.HISTORY_TURNS = 2
    replier = build_replier()
    prompts = []
    real_prompt = replier.backend.prompt
    replier.backend.prompt = lambda history, message, hit: prompts.append(history) or real_prompt(history, message, hit)
    history = [Turn("user", f"line {n}") for n in range(6)]
    replier.reply(history, "Well?")
    assert prompts == [history[-2:]]


def test_the_retrieved_exchange_goes_into_the_prompt_and_its_score_into_the_record(
    demo_exchanges, index_path, tiny_chat_settings, tiny_retriever
):
    tiny_chat_settings.RETRIEVER_MODEL = str(tiny_retriever)
    tiny_chat_settings.RETRIEVAL_THRESHOLD = -1.0  # random weights: take the best whatever its score
    tiny_chat_settings.SCRIPTED_CANDIDATES = 0  # the generated reply only: it is not the scripted line
    call_command("build_index", verbosity=0)
    reply = build_replier().reply([], "Do you want to come to the movies with us tonight?")
    assert reply.retrieved is None  # shown in the page only when the reply is the scripted line itself
    assert isinstance(reply.parameters["prompt_hit_score"], float)
    assert reply.retriever_model == str(tiny_retriever)


@pytest.mark.django_db
def test_a_missing_index_stops_the_replier_with_the_clear_message(index_path, tiny_chat_settings, tiny_retriever):
    tiny_chat_settings.RETRIEVER_MODEL = str(tiny_retriever)
    with pytest.raises(IndexMissingError, match="build_index"):
        build_replier()


def test_worker_threads_share_one_replier(each_generator_settings):
    """Celery's threads pool: several replies at once through the same models and tokenizer."""
    each_generator_settings.MAX_NEW_TOKENS = 12
    replier = build_replier()

    def reply(n):
        pieces = []
        result = replier.reply([Turn("user", f"Line {n}.")] * n, f"Question {n}?", on_piece=pieces.append)
        return streamed_as("".join(pieces), result.text)

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert all(pool.map(reply, range(8)))


def test_stream_yields_the_pieces_and_returns_the_reply(tiny_chat_settings):
    replier = build_replier()
    stream = replier.stream([Turn("user", "Hi.")], "How are you?")
    pieces = []
    with pytest.raises(StopIteration) as finished:
        while True:
            pieces.append(next(stream))
    reply = finished.value.value
    assert streamed_as("".join(pieces), reply.text) and reply.text and not reply.stopped

    stopped = list(replier.stream([], "Hello?", should_stop=lambda: True))
    assert stopped == []
    with pytest.raises(ValueError, match="empty"):
        next(replier.stream([], ""))


def test_no_requests_need_no_generation(tiny_chat_settings):
    assert build_replier().reply_many([]) == []


def test_bad_requests_are_refused_clearly():
    with pytest.raises(ValueError, match="empty"):
        RequestState([], "   ")
    with pytest.raises(ValueError, match="role"):
        Turn("sheldon", "Hi.")
    with pytest.raises(ValueError, match="Turn"):
        RequestState([("user", "Hi.")], "Hello?")


def test_the_reply_is_chosen_among_sampled_and_scripted_candidates(
    demo_exchanges, index_path, tiny_chat_settings, tiny_retriever
):
    """Sample-and-rank: N generated candidates and the scripted lines that passed the threshold compete;
    the best allowed one is sent once, whole, and the record says what was chosen from what."""
    tiny_chat_settings.RETRIEVER_MODEL = str(tiny_retriever)
    tiny_chat_settings.RETRIEVAL_THRESHOLD = -1.0  # random weights: every retrieved line passes
    tiny_chat_settings.REPLY_CANDIDATES = 3
    tiny_chat_settings.SCRIPTED_CANDIDATES = 2
    call_command("build_index", verbosity=0)
    pieces = []
    reply = build_replier().reply([Turn("user", "Hi.")], "Do you want to come to the movies?", on_piece=pieces.append)

    generated = [c for c in reply.candidates if c.source == "generated"]
    scripted = [c for c in reply.candidates if c.source == "scripted"]
    assert len(generated) == 3 and len(scripted) == 2
    assert all(c.mean_log_probability is None or c.mean_log_probability < 0 for c in generated)
    allowed = [c for c in reply.candidates if not c.rejected]
    assert reply.chosen is max(allowed, key=lambda c: c.score)
    assert reply.text == reply.chosen.text and pieces == [reply.text]  # nothing streamed before the choice
    assert reply.parameters["candidates"] == 3 and reply.parameters["scripted_candidates"] == 2
    assert reply.parameters["chosen"] == reply.chosen.source
    if reply.chosen.source == "scripted":
        assert reply.retrieved is reply.chosen.hit


def test_the_threshold_decides_whether_retrieval_fires(demo_exchanges, index_path, tiny_chat_settings, tiny_retriever):
    tiny_chat_settings.RETRIEVER_MODEL = str(tiny_retriever)
    tiny_chat_settings.REPLY_CANDIDATES = 2
    call_command("build_index", verbosity=0)
    tiny_chat_settings.RETRIEVAL_THRESHOLD = 1.01  # above any cosine: nothing fires, nothing scripted competes
    cold = build_replier().reply([], "Do you want to come to the movies?")
    assert cold.retrieved is None and all(c.source == "generated" for c in cold.candidates)
    tiny_chat_settings.RETRIEVAL_THRESHOLD = -1.0
    [job] = build_replier().prepare([RequestState([], "Do you want to come to the movies?")])
    assert job.hit is not None and job.hit.text in job.prompt  # a hit that passed goes into the prompt
    tiny_chat_settings.RETRIEVAL_IN_PROMPT = False  # ... unless it should only compete as a candidate
    [job] = build_replier().prepare([RequestState([], "Do you want to come to the movies?")])
    assert job.hit is None and job.scripted and all(hit.text not in job.prompt for hit in job.scripted)


def test_a_stopped_ranked_reply_is_what_was_shown_nothing(tiny_chat_settings):
    # A ranked reply is shown once chosen; stopped before that, it showed nothing, and its text is nothing.
    pieces, steps = [], []
    request = RequestState([], "Hello there.", on_piece=pieces.append, should_stop=lambda: len(steps) > 2)
    replier = build_replier()
    batch = replier.open_batch()
    batch.add(replier.prepare([request], candidates=3))
    while batch:
        steps.append(batch.step())
    assert request.ranked and request.reply.stopped
    assert (request.reply.text, pieces) == ("", [])
