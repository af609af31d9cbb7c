"""Dynamic batching: concurrent requests are generated together, late ones join a running batch,
each streams and stops on its own."""
import asyncio
import logging
import re
import threading
import time

import pytest

from inference.backends import OpenVINOChatBackend, backend_for
from inference.batching import BatchingEngine
from inference.cleanup import streamed_as
from inference.loading import load_generator
from inference.profiles import Profile
from inference.replier import Replier, Turn


@pytest.fixture(scope="module")
def tiny_replier(tiny_chat):
    folder = str(tiny_chat)
    backend = backend_for(load_generator(folder, ""), max_new_tokens=24)
    return Replier(Profile("test", "", folder, ""), backend, index=None)


def ask_concurrently(engine, requests):
    """Each request from its own thread, as Celery's task threads do."""
    results = [None] * len(requests)

    def ask(i, kwargs):
        results[i] = engine.reply(**kwargs)

    # Daemon threads: a request the engine never answers fails its test (None) instead of holding pytest's exit.
    threads = [threading.Thread(target=ask, args=(i, kwargs), daemon=True) for i, kwargs in enumerate(requests)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 120  # for them all, not each
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    return results


def test_concurrent_requests_are_generated_in_one_batch(tiny_replier):
    engine = BatchingEngine(tiny_replier, window_seconds=0.5, max_batch=8)
    pieces = {i: [] for i in range(4)}
    requests = [
        dict(history=[Turn("user", "Hello."), Turn("bot", "Greetings.")], message=f"Question number {i}?",
             on_piece=pieces[i].append)
        for i in range(4)
    ]
    replies = ask_concurrently(engine, requests)
    assert list(engine.batch_sizes) == [4]
    for i, reply in enumerate(replies):
        assert reply is not None and reply.text
        assert streamed_as("".join(pieces[i]), reply.text)


def test_a_late_request_joins_the_running_batch_at_the_next_step(tiny_replier):
    """Continuous batching: a request that arrives mid-reply does not wait for that reply to end."""
    engine = BatchingEngine(tiny_replier, window_seconds=0.0, max_batch=8)
    polls, late = [], {}

    def late_polls():
        polls.append("late")
        return False

    def first_polls():
        polls.append("first")
        if polls.count("first") == 2:
            late["future"] = engine.submit([], "I came late.", should_stop=late_polls)
        return False

    first = engine.reply([], "I came first.", should_stop=first_polls)
    late_reply = late["future"].result(timeout=60)
    assert list(engine.batch_sizes) == [1, 1]
    assert "first" in polls[polls.index("late") :]  # the first reply went on beside the late one
    assert first.text and late_reply.text and first.new_tokens > 3


def test_max_batch_splits_the_waiting_requests(tiny_replier):
    engine = BatchingEngine(tiny_replier, window_seconds=0.5, max_batch=2)
    replies = ask_concurrently(engine, [dict(history=[], message=f"Message {i}.") for i in range(5)])
    assert all(reply is not None for reply in replies)
    assert sum(engine.batch_sizes) == 5 and max(engine.batch_sizes) == 2


def test_a_stop_ends_only_its_own_reply(tiny_replier):
    engine = BatchingEngine(tiny_replier, window_seconds=0.5, max_batch=8)
    stopped_pieces, other_pieces, after_the_stop = [], [], []
    polls = []

    def stop_after_three_steps():
        polls.append(1)
        return len(polls) > 3

    def show(piece):
        stopped_pieces.append(piece)
        if len(polls) > 3:
            after_the_stop.append(piece)

    replies = ask_concurrently(
        engine,
        [
            dict(history=[], message="Please stop soon.", on_piece=show, should_stop=stop_after_three_steps),
            dict(history=[], message="Keep talking.", on_piece=other_pieces.append),
        ],
    )
    stopped, other = replies
    assert list(engine.batch_sizes) == [2]
    assert stopped.stopped and not other.stopped
    assert stopped.new_tokens <= 4 < other.new_tokens
    assert "".join(stopped_pieces) == stopped.text and streamed_as("".join(other_pieces), other.text)
    assert after_the_stop == []  # not even the word that was held back when the stop came


# Not only an Exception: a callback run on a caller's event loop can raise CancelledError, a BaseException.
@pytest.mark.parametrize("failure", [RuntimeError("socket gone"), asyncio.CancelledError("socket gone")])
def test_a_failing_callback_fails_only_its_own_reply(tiny_replier, failure):
    engine = BatchingEngine(tiny_replier, window_seconds=0.5, max_batch=8)

    def broken_stop():
        raise failure

    outcomes = [None, None]

    def ask(i, **kwargs):
        try:
            outcomes[i] = engine.reply(**kwargs)
        except BaseException as error:
            outcomes[i] = error

    threads = [
        threading.Thread(target=ask, args=(0,), kwargs=dict(history=[], message="This one breaks.", should_stop=broken_stop)),
        threading.Thread(target=ask, args=(1,), kwargs=dict(history=[], message="This one works.")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    broken, working = outcomes
    assert list(engine.batch_sizes) == [2]
    assert broken is failure and working is not None  # None: the engine's thread died with the callback
    assert working.text and working.new_tokens > 1
    assert engine.reply([], "The engine goes on.").text


class FailingOnce(Replier):
    """A replier whose first batch cannot open, or whose first batch fails at its first step."""

    def __init__(self, replier, where):
        super().__init__(replier.profile, replier.backend, index=None)
        self.where = where

    def open_batch(self):
        if self.where == "open":
            self.where = None
            raise RuntimeError("out of memory")
        batch = super().open_batch()
        if self.where == "step":
            self.where = None
            batch.step = lambda: (_ for _ in ()).throw(RuntimeError("out of memory"))
        return batch


@pytest.mark.parametrize("where", ["open", "step"])
def test_a_failing_batch_fails_its_replies_and_the_engine_goes_on(tiny_replier, where):
    engine = BatchingEngine(FailingOnce(tiny_replier, where), window_seconds=0.2, max_batch=8)
    outcomes = [None, None]

    def ask(i):
        try:
            outcomes[i] = engine.reply([], f"Message {i}.")
        except RuntimeError as error:
            outcomes[i] = error

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert all(isinstance(outcome, RuntimeError) and "out of memory" in str(outcome) for outcome in outcomes)
    # The failed batch's rows were let go: none is left running in the engine's pipeline.
    assert isinstance(tiny_replier.backend, OpenVINOChatBackend)
    assert not tiny_replier.backend.model.has_non_finished_requests()
    assert engine.reply([], "The engine goes on.").text  # with a new batch


class PreparingFails(Replier):
    """A replier, four candidates a request, that cannot prepare its first `failures` requests (a retriever that
    errs, say)."""

    def __init__(self, replier, failures):
        super().__init__(replier.profile, replier.backend, index=None, max_candidates=4)
        self.failures = failures

    def prepare(self, requests, candidates=None):
        if self.failures:
            self.failures -= 1
            raise RuntimeError("the retriever failed")
        return super().prepare(requests, candidates)


def test_requests_that_could_not_be_prepared_leave_a_lone_request_its_full_choice(tiny_replier):
    # Each failed request must leave the count of requests in progress, which decides the candidates of later ones.
    engine = BatchingEngine(PreparingFails(tiny_replier, failures=3), window_seconds=0.0, max_batch=8)
    for _ in range(3):
        with pytest.raises(RuntimeError, match="retriever"):
            engine.reply([], "Hello.")
    reply = engine.reply([], "Hello.")
    assert len([candidate for candidate in reply.candidates if candidate.source == "generated"]) == 4


def test_a_bad_request_is_refused_before_it_joins_a_batch(tiny_replier):
    engine = BatchingEngine(tiny_replier, window_seconds=0.2, max_batch=8)
    with pytest.raises(ValueError, match="history"):
        engine.reply(["not a Turn"], "Bad history.")
    assert list(engine.batch_sizes) == []


def test_candidates_per_request_shrink_as_more_requests_share_the_rows(tiny_chat):
    """Sample-and-rank under load: one person alone gets REPLY_CANDIDATES, a burst of sixteen one row each."""
    folder = str(tiny_chat)
    backend = backend_for(load_generator(folder, ""), max_new_tokens=8)
    replier = Replier(Profile("test", "", folder, ""), backend, index=None, max_candidates=4)
    engine = BatchingEngine(replier, window_seconds=0.0, max_batch=16)
    assert [engine.candidates_for(n) for n in (1, 2, 4, 5, 8, 16, 40)] == [4, 4, 4, 3, 2, 1, 1]

    alone = engine.reply([Turn("user", "Hello.")], "Question?")
    assert len(alone.candidates) == 4 and alone.parameters["candidates"] == 4

    # Sixteen requests within the idle engine's window: sized when they join, with all sixteen in
    # progress, one row each; all fit in the first batch.
    engine = BatchingEngine(replier, window_seconds=1.0, max_batch=16)
    futures = [engine.submit([], f"Question {i}?") for i in range(16)]
    replies = [future.result(timeout=120) for future in futures]
    assert [len(reply.candidates) for reply in replies] == [1] * 16
    assert engine.batch_sizes[0] == 16
    assert all(reply.text for reply in replies)
    assert engine._in_progress == 0  # every answered request gave its rows back


def test_requests_joining_a_ranked_request_share_only_the_rows_left(tiny_chat, monkeypatch):
    """One person alone takes REPLY_CANDIDATES rows; three who join it mid-way share what is left of max_batch."""
    from inference.replier import ReplyBatch

    rows_per_step = []
    step = ReplyBatch.step
    monkeypatch.setattr(ReplyBatch, "step", lambda batch: rows_per_step.append(len(batch)) or step(batch))
    folder = str(tiny_chat)
    backend = backend_for(load_generator(folder, ""), max_new_tokens=24)
    replier = Replier(Profile("test", "", folder, ""), backend, index=None, max_candidates=4)
    engine = BatchingEngine(replier, window_seconds=0.0, max_batch=8)
    running, joined = threading.Event(), threading.Event()

    def hold_first_step():
        running.set()
        joined.wait(timeout=30)  # the engine's thread waits here, inside the first request's step
        return False

    first = engine.submit([], "Question 0?", should_stop=hold_first_step)
    assert running.wait(timeout=60)
    later = [engine.submit([], f"Question {i}?") for i in (1, 2, 3)]
    joined.set()
    replies = [future.result(timeout=120) for future in [first, *later]]
    # Without the share: 4 rows, then 2 candidates each for four requests in progress, 10 rows.
    assert [len(reply.candidates) for reply in replies] == [4, 1, 1, 1]
    assert rows_per_step[0] == 4 and 4 < max(rows_per_step) <= 8  # they joined it, within max_batch


def test_the_engine_logs_its_throughput_and_how_full_its_steps_run(tiny_replier, caplog):
    """A line every stats_seconds while it works, and the rest when it goes idle; the wait for work is not counted."""
    engine = BatchingEngine(tiny_replier, window_seconds=0.5, max_batch=8, stats_seconds=60)
    with caplog.at_level(logging.INFO, logger="inference.batching"):
        replies = ask_concurrently(engine, [dict(history=[], message=f"Question {i}?") for i in range(4)])
        assert list(engine.batch_sizes) == [4]
        time.sleep(1.0)  # idle
        replies.append(engine.reply([], "One more."))
        time.sleep(0.2)  # the engine's thread reports after it answers
    lines = [record.getMessage() for record in caplog.records if record.getMessage().startswith("Engine, ")]
    assert len(lines) == 2, lines  # each burst, logged when the engine went idle
    assert [int(re.search(r"(\d+) replies \(", line).group(1)) for line in lines] == [4, 1]
    rows = [float(re.search(r"steps of ([\d.]+) rows on average", line).group(1)) for line in lines]
    assert 1.0 < rows[0] <= 4.0 and rows[1] == 1.0  # the four ran together
    assert float(re.search(r"last ([\d.]+) s", lines[1]).group(1)) < 0.9  # not the second of waiting before it
    logged_tokens = sum(int(re.search(r"(\d+) generated tokens", line).group(1)) for line in lines)
    assert logged_tokens == sum(reply.new_tokens for reply in replies) > 0
    assert engine.stats.steps == 0


def test_a_request_cancelled_while_it_waits_is_dropped_and_the_engine_goes_on(tiny_replier):
    engine = BatchingEngine(tiny_replier, window_seconds=0.0, max_batch=1)
    release = threading.Event()
    first = engine.submit([], "Hold on.", should_stop=lambda: not release.wait(timeout=30))  # holds the engine
    waiting = engine.submit([], "Never mind.")  # no room in the batch: it waits
    assert waiting.cancel()
    release.set()
    assert first.result(timeout=60).text
    assert engine.reply([], "Still there?").text  # the engine's thread lives on
