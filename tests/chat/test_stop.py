"""Stop ends a reply within 2 s, whether its worker is alive, hung or gone."""

import asyncio
import time

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from chat.models import Message

from .test_streaming import streaming_started

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

STOP_WITHIN_SECONDS = 2.0


def streaming_without_a_worker(conversation):
    """A reply a worker claimed and then went silent (killed, or hung), its partial text saved."""
    question = conversation.messages.create(role="user", text="Tell me everything.")
    reply = conversation.messages.create(role="bot", reply_to=question, status="queued")
    Message.objects.filter(pk=reply.pk).update(
        status="streaming", attempts=1, text="Well, to begin with", worker="gone", updated=timezone.now()
    )
    return reply.pk


async def timed_stop(tab):
    started = time.monotonic()
    await tab.send({"type": "stop"})
    stopped = await tab.reply_done(timeout=10)
    return stopped, time.monotonic() - started


async def test_stop_ends_a_reply_whose_worker_is_gone(redis_url, open_socket, conversation):
    reply_id = await database_sync_to_async(streaming_without_a_worker)(conversation)
    tab = await open_socket()
    stopped, seconds = await timed_stop(tab)
    assert (stopped["id"], stopped["status"], stopped["text"]) == (reply_id, "stopped", "Well, to begin with")
    assert seconds < STOP_WITHIN_SECONDS, seconds
    # The conversation is free again.
    stored = await database_sync_to_async(Message.objects.get)(pk=reply_id)
    assert stored.status == "stopped"
    await tab.close()


async def test_stop_with_a_live_worker_is_answered_by_it_within_the_limit(live_settings, open_socket):
    tab = await open_socket()
    await tab.send({"type": "user_message", "text": "Explain the many-worlds interpretation."})
    await streaming_started(tab)
    stopped, seconds = await timed_stop(tab)
    assert stopped["status"] == "stopped" and seconds < STOP_WITHIN_SECONDS, seconds
    # Stopped by the worker itself: its record is there.
    assert stopped["record"]["new_tokens"] is not None
    await tab.close()


async def test_stop_frames_are_rate_limited(redis_url, open_socket, conversation):
    await database_sync_to_async(streaming_without_a_worker)(conversation)
    tab = await open_socket()
    for _ in range(4):
        await tab.send({"type": "stop"})
    errors = await tab.until(lambda f: f["type"] == "error")
    assert errors[-1]["code"] == "rate_limited"
    assert (await tab.reply_done())["status"] == "stopped"  # the first stop did its work
    await asyncio.sleep(1.0)
    await tab.send({"type": "stop"})
    assert (await tab.error())["code"] == "not_generating"  # allowed again, and there is nothing left to stop
    await tab.close()
