"""A reply whose last frame never came: the page reads its messages again and shows how it ended.

The fault is made as it happens: the reply ends in the database and its
`reply_done` frame never reaches the page (a channel layer delivers at most once).
"""

import pytest
from django.utils import timezone

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
