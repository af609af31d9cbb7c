"""Which worker generates a reply: the claim a task makes before it generates."""

import threading
import time
from datetime import timedelta

import pytest
from django.db import connections, transaction
from django.db.models.functions import Now
from django.utils import timezone

from chat import services
from chat.generation import IN_PROGRESS_ELSEWHERE, ReplyStream, claim_reply, fail_unclaimed_reply
from chat.models import Message
from chat.sweeper import stop_sweeper

from .test_streaming import bot_messages

pytestmark = pytest.mark.django_db(transaction=True)


# A task the broker delivers again (Redis redelivers an unacknowledged task after its visibility timeout) can
# reach a reply that a killed worker left `streaming` before any sweep failed it. The claim decides alone,
# under the row's lock: tested here in-process, since in a live stack every process's sweep races the worker
# for such a reply (the sweep winning is right too, and made an end-to-end test of this flaky).
@pytest.mark.sqlite
@pytest.mark.parametrize(
    ("stale", "last_attempt", "claimed"),
    [
        (True, False, "restarted"),  # its worker is gone: start over, as the same reply
        (False, False, IN_PROGRESS_ELSEWHERE),  # its worker still saves: leave it alone
        (True, True, None),  # the last attempt's worker died too: give up
    ],
)
def test_a_redelivered_task_restarts_a_reply_whose_worker_died(settings, conversation, stale, last_attempt, claimed):
    stale_for = settings.CHAT_REPLY_STALE_SECONDS + 1 if stale else 0
    attempts = settings.CHAT_REPLY_MAX_ATTEMPTS if last_attempt else 1
    reply_id = left_streaming_by_a_dead_worker(conversation, stale_for=stale_for, attempts=attempts)
    result = claim_reply(reply_id, worker="celery@new")
    stored = Message.objects.get(pk=reply_id)
    if claimed == "restarted":
        assert isinstance(result, Message) and result.pk == reply_id
        assert (stored.status, stored.attempts, stored.text, stored.worker) == ("streaming", 2, "", "celery@new")
    elif claimed is None:
        assert result is None
        assert stored.status == "failed" and f"Gave up after {attempts} attempts" in stored.error
    else:
        assert result == claimed
        assert (stored.status, stored.attempts, stored.worker) == ("streaming", attempts, "dead-worker")
    assert [m.id for m in bot_messages(conversation)] == [reply_id]  # never a second reply


def left_streaming_by_a_dead_worker(conversation, stale_for, attempts=1):
    question = conversation.messages.create(role="user", text="And once more?")
    reply = conversation.messages.create(role="bot", reply_to=question, status="queued")
    Message.objects.filter(pk=reply.pk).update(
        status="streaming", attempts=attempts, text="half a sentence from a dead wor", worker="dead-worker",
        updated=Now() - timedelta(seconds=stale_for),
    )
    return reply.pk


def test_a_stop_that_meets_the_workers_last_save_leaves_the_reply_finished(conversation):
    # The stop reads the reply as streaming while the worker's last save is not yet committed; the stop's write
    # must then find the reply finished, not put it back to streaming (the worker locks no conversation row).
    reply_id = left_streaming_by_a_dead_worker(conversation, stale_for=0, attempts=1)
    outcome = {}

    def stop():
        try:
            outcome["reply"] = services.request_stop(conversation.pk, conversation.owner)
        except services.ChatError as error:
            outcome["error"] = error.code
        finally:
            connections.close_all()

    with transaction.atomic():  # the worker's last save, holding the row until it commits
        Message.objects.filter(pk=reply_id).update(status=Message.Status.DONE, text="The whole reply.")
        thread = threading.Thread(target=stop)
        thread.start()
        time.sleep(1.0)  # the stop has read the reply as streaming and waits for the row
    thread.join(timeout=10)
    stored = Message.objects.get(pk=reply_id)
    assert (stored.status, stored.text, stored.stop_requested) == ("done", "The whole reply.", False)
    assert outcome == {"error": "not_generating"}


@pytest.mark.sqlite
def test_a_worker_that_cannot_load_its_models_fails_only_replies_nobody_claimed(conversation):
    streaming = left_streaming_by_a_dead_worker(conversation, stale_for=0, attempts=1)  # a healthy worker's
    question = conversation.messages.create(role=Message.Role.USER, text="And you?")
    queued = conversation.messages.create(role=Message.Role.BOT, status=Message.Status.QUEUED, reply_to=question)
    for reply_id in (streaming, queued.pk):
        fail_unclaimed_reply(reply_id, "The models could not be loaded: no weights here.")
    assert Message.objects.get(pk=streaming).status == Message.Status.STREAMING
    failed = Message.objects.get(pk=queued.pk)
    assert failed.status == Message.Status.FAILED and "could not be loaded" in failed.error


@pytest.mark.sqlite
@pytest.mark.parametrize("hours_off", [1, -1])
def test_a_machine_whose_clock_is_off_neither_looks_dead_nor_takes_a_live_reply(
    settings, conversation, monkeypatch, hours_off
):
    """Web processes, workers and their sweeps run on several machines: a reply's liveness is the database's clock.

    Made to happen: this process's clock is set off by an hour for what one machine does, and back for the others.
    """
    settings.CHAT_REPLY_STALE_SECONDS = 2
    settings.CELERY_TASK_ALWAYS_EAGER = True  # no task re-sent by the sweep: not what this test is about
    # This process's own sweeper (the socket tests start it) would race the sweeps made here on purpose;
    # the next socket starts it again.
    assert stop_sweeper()
    right = timezone.now

    def clock(hours):
        monkeypatch.setattr(timezone, "now", lambda: right() + timedelta(hours=hours))

    clock(hours_off)  # the web process that queues the reply
    question = conversation.messages.create(role=Message.Role.USER, text="What time is it?")
    reply = conversation.messages.create(role=Message.Role.BOT, status=Message.Status.QUEUED, reply_to=question)
    for other_machine in (0, -hours_off):  # the sweeps of the others
        clock(other_machine)
        assert services.sweep_replies() == []
        assert Message.objects.get(pk=reply.pk).status == Message.Status.QUEUED

    clock(hours_off)  # the worker that claims it
    assert isinstance(claim_reply(reply.pk, worker="celery@off"), Message)
    for other_machine in (0, -hours_off):  # the sweeps of the others, and a second delivery of the task
        clock(other_machine)
        assert services.sweep_replies() == []
        assert claim_reply(reply.pk, worker="celery@other") == IN_PROGRESS_ELSEWHERE

    # The worker dies: the others see it once it has not written for CHAT_REPLY_STALE_SECONDS.
    time.sleep(settings.CHAT_REPLY_STALE_SECONDS + 0.5)
    clock(0)
    assert [failed.pk for failed in services.sweep_replies()] == [reply.pk]


@pytest.mark.sqlite
@pytest.mark.parametrize("hours_off", [1, -1])
def test_a_queued_replys_task_is_sent_again_on_the_databases_clock(settings, conversation, monkeypatch, hours_off):
    """The web host that queued a reply wrote its `updated` with its own clock, set off by an hour here."""
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.CHAT_QUEUE_RESEND_SECONDS = 1
    assert stop_sweeper()  # as above: no sweep but this test's
    sent = []
    monkeypatch.setattr(services, "send_reply_task", sent.append)  # the broker's side: tests/faults/
    right = timezone.now
    monkeypatch.setattr(timezone, "now", lambda: right() + timedelta(hours=hours_off))
    question = conversation.messages.create(role=Message.Role.USER, text="What time is it?")
    reply = conversation.messages.create(role=Message.Role.BOT, status=Message.Status.QUEUED, reply_to=question)
    monkeypatch.setattr(timezone, "now", right)  # the sweep's machine

    services.sweep_replies()
    assert sent == []  # it has waited less than CHAT_QUEUE_RESEND_SECONDS
    time.sleep(settings.CHAT_QUEUE_RESEND_SECONDS + 0.5)
    assert services.sweep_replies() == [] and sent == [reply.pk]
    services.sweep_replies()
    assert sent == [reply.pk]  # and not again before another CHAT_QUEUE_RESEND_SECONDS


@pytest.mark.sqlite
@pytest.mark.parametrize("status", Message.FINISHED)
def test_a_finished_reply_is_never_claimed(conversation, status):
    """A task still in the broker for a reply that ended (stopped while queued, failed by a sweep) does nothing."""
    question = conversation.messages.create(role=Message.Role.USER, text="Still there?")
    reply = conversation.messages.create(role=Message.Role.BOT, reply_to=question, status=status, text="As it was.")
    assert claim_reply(reply.pk, worker="celery@late") is None
    stored = Message.objects.get(pk=reply.pk)
    assert (stored.status, stored.attempts, stored.text, stored.worker) == (status, 0, "As it was.", "")


@pytest.mark.sqlite
def test_a_reply_stopped_while_queued_stays_stopped_when_its_task_comes(conversation):
    question = conversation.messages.create(role=Message.Role.USER, text="Never mind.")
    reply = conversation.messages.create(role=Message.Role.BOT, reply_to=question, status=Message.Status.QUEUED)
    assert services.request_stop(conversation.pk, conversation.owner).status == Message.Status.STOPPED
    assert claim_reply(reply.pk, worker="celery@late") is None
    stored = Message.objects.get(pk=reply.pk)
    assert (stored.status, stored.attempts) == (Message.Status.STOPPED, 0)
    with pytest.raises(services.ChatError):  # and the conversation is free: nothing to stop
        services.request_stop(conversation.pk, conversation.owner)


@pytest.mark.sqlite
def test_a_worker_whose_reply_was_taken_over_writes_no_more_of_it(settings, conversation):
    """A worker that only looked dead (a long pause) comes back after another took its reply over: its pieces
    must not mix into the new attempt's text, and it stops generating."""
    reply_id = left_streaming_by_a_dead_worker(conversation, stale_for=settings.CHAT_REPLY_STALE_SECONDS + 1)
    slow = ReplyStream(Message.objects.get(pk=reply_id))  # attempt 1's
    taken_over = claim_reply(reply_id, worker="celery@new")
    assert isinstance(taken_over, Message) and taken_over.attempts == 2
    slow.add("words of the slow worker")
    slow.flush()
    assert slow.lost and slow.should_stop() and slow.sent == 0
    stored = Message.objects.get(pk=reply_id)
    assert (stored.text, stored.attempts, stored.worker) == ("", 2, "celery@new")


@pytest.mark.sqlite
def test_a_reply_no_worker_took_in_time_fails(settings, conversation, make_user):
    """Workers down, or none on the reply's queue: after CHAT_QUEUE_TIMEOUT_SECONDS the sweep fails the reply
    (the page then offers to try again) instead of leaving the conversation busy for good."""
    settings.CHAT_QUEUE_TIMEOUT_SECONDS = 1
    settings.CELERY_TASK_ALWAYS_EAGER = True  # no task re-sent by the sweep: not what this test is about
    assert stop_sweeper()  # no sweep but this test's
    question = conversation.messages.create(role=Message.Role.USER, text="Anyone?")
    waited = conversation.messages.create(role=Message.Role.BOT, status=Message.Status.QUEUED, reply_to=question)
    time.sleep(settings.CHAT_QUEUE_TIMEOUT_SECONDS + 0.5)
    other = make_user("bob").conversations.create()
    other_question = other.messages.create(role=Message.Role.USER, text="And me?")
    young = other.messages.create(role=Message.Role.BOT, status=Message.Status.QUEUED, reply_to=other_question)

    assert [failed.pk for failed in services.sweep_replies()] == [waited.pk]
    stored = Message.objects.get(pk=waited.pk)
    assert (stored.status, stored.error) == (Message.Status.FAILED, "No worker picked up this reply in time.")
    assert Message.objects.get(pk=young.pk).status == Message.Status.QUEUED


def test_a_duplicate_task_for_a_live_reply_looks_again_once_its_worker_would_count_as_dead(
    settings, conversation, monkeypatch
):
    """A second delivery while a live worker streams the reply leaves it alone, and comes back after
    CHAT_REPLY_STALE_SECONDS: if that worker has died by then, this task takes the reply over."""
    from celery.exceptions import Retry

    from chat.tasks import generate_reply

    monkeypatch.setattr("inference.batching.get_engine", lambda: None)  # models: not what this test is about
    reply_id = left_streaming_by_a_dead_worker(conversation, stale_for=0)  # saved just now: alive
    generate_reply.push_request(
        id="second-delivery", called_directly=False, is_eager=True, retries=0, hostname="celery@second"
    )
    try:
        with pytest.raises(Retry) as retry:
            generate_reply.run(reply_id)
    finally:
        generate_reply.pop_request()
    assert retry.value.when == settings.CHAT_REPLY_STALE_SECONDS + 1
    stored = Message.objects.get(pk=reply_id)
    assert (stored.status, stored.attempts, stored.worker) == (Message.Status.STREAMING, 1, "dead-worker")
