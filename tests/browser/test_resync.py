"""Frames lost or out of order, made to happen: the page still shows each reply as it is.

A reply whose last frame never came: the reply ends in the database and its
`reply_done` frame never reaches the page (a channel layer delivers at most
once); the page reads its messages again and shows how it ended. Frames of two
senders (the socket that queued a reply, the worker that writes it) can cross on
the way: the page keeps the newer state.
"""
import asyncio
import threading

import pytest
from django.utils import timezone
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from chat.frames import message_frame, reply_done_frame, send_now, token_frame
from chat.models import Conversation, Message

from ..chat.live import live_stack  # noqa: F401  (fixtures)
from .test_chat_features import amy, logged_in_page, server  # noqa: F401  (fixtures)
from .test_chat_page import browser, chromium  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.timeout(300), pytest.mark.django_db(transaction=True)]

END = "Thursday is anything-can-happen Thursday."


def test_a_reply_whose_last_frame_was_lost_ends_on_the_page(browser, server, amy):  # noqa: F811
    conversation = Conversation.objects.create(owner=amy, title="Lost frames")
    question = Message.objects.create(conversation=conversation, role=Message.Role.USER, text="What day is it?")
    reply = Message.objects.create(
        conversation=conversation,
        role=Message.Role.BOT,
        reply_to=question,
        status=Message.Status.STREAMING,
        text="Thursday is",
        attempts=1,
    )
    page = logged_in_page(browser, server, amy)
    page.goto(f"{server}/c/{conversation.pk}/")
    page.wait_for_selector(".message-bot.status-streaming")
    assert page.is_visible("#stop-button") and page.is_disabled("#send-button")

    # The worker ends the reply; its frame is lost on the way.
    Message.objects.filter(pk=reply.pk).update(status=Message.Status.DONE, text=END, updated=timezone.now())

    # Well before the stale-reply sweep (CHAT_REPLY_STALE_SECONDS, 20 s), which would fail it instead.
    page.wait_for_selector(".message-bot.status-done", timeout=12000)
    assert page.inner_text(".message-bot .message-text") == END
    assert page.is_hidden("#stop-button") and page.is_enabled("#send-button")


def send_frames(conversation_id, *frames):
    """Frames to the conversation's sockets, in this order, as one sender sends them (on a thread of its own:
    Playwright's sync API holds an event loop in this one)."""

    async def send_all():
        for frame in frames:
            await send_now(conversation_id, frame)

    thread = threading.Thread(target=asyncio.run, args=(send_all(),))
    thread.start()
    thread.join(timeout=30)


def test_a_workers_frames_that_overtake_the_sockets_are_kept(browser, server, amy):  # noqa: F811
    conversation = Conversation.objects.create(owner=amy, title="Crossed frames")
    question = Message.objects.create(conversation=conversation, role=Message.Role.USER, text="What day is it?")
    old = Message.objects.create(
        conversation=conversation, role=Message.Role.BOT, reply_to=question, status=Message.Status.STREAMING,
        text="Monday", attempts=1,
    )
    page = logged_in_page(browser, server, amy)
    page.goto(f"{server}/c/{conversation.pk}/")
    page.wait_for_selector(".message-bot.status-streaming")

    # The old reply ends, and this page misses its reply_done; then the question is edited (in another tab):
    # the old reply is deleted and a new one queued, whose worker starts at once.
    old_id = old.pk
    old.delete()
    question.text = "What day is it today?"
    question.save()
    new = Message.objects.create(
        conversation=conversation, role=Message.Role.BOT, reply_to=question, status=Message.Status.QUEUED
    )
    queued = message_frame(new)
    new.status = Message.Status.STREAMING
    new.save()  # its worker claimed it
    streaming = message_frame(new)

    # The worker's frames come first (sent again until the page's socket has joined: the same state each time).
    for _ in range(50):
        send_frames(conversation.pk, streaming)
        try:
            page.wait_for_selector(f'[data-message-id="{new.pk}"]', timeout=200)
            break
        except PlaywrightTimeout:
            pass
    # Then the socket's frames of the edit (as chat/consumers.py sends them), older than the worker's, cross
    # the worker's next pieces.
    send_frames(
        conversation.pk,
        token_frame(new.pk, 0, "Thursday is"),
        queued,
        message_frame(question),  # the new text: the replies to the old one go
        token_frame(new.pk, len("Thursday is"), " anything-can-happen Thursday."),
    )
    shown = f'[data-message-id="{new.pk}"] .message-text'
    page.wait_for_function(f"t => document.querySelector('{shown}')?.textContent === t", arg=END, timeout=10000)
    assert page.is_visible(f'[data-message-id="{new.pk}"].status-streaming')
    assert page.query_selector(f'[data-message-id="{old_id}"]') is None and "Monday" not in page.inner_text("body")
    assert "What day is it today?" in page.inner_text(".message-user .message-text")

    # The new reply ends: nothing is left in progress (the old reply, gone from the page, does not keep it busy).
    new.status, new.text = Message.Status.DONE, END
    new.save()
    send_frames(conversation.pk, reply_done_frame(new))
    page.wait_for_selector(f'[data-message-id="{new.pk}"].status-done')
    assert page.is_hidden("#stop-button") and page.is_enabled("#send-button")
