"""What the serving path's row locks keep from happening when two requests meet (PostgreSQL: SQLite locks the
whole database for a write, so two of them cannot overlap there).

Each test holds a row as the first request would, starts the second on a thread, checks that it waits, then
does what the first request does and commits: the second must then see it.
"""
import threading
import time

import pytest
from django.contrib.auth import get_user_model
from django.db import connections, transaction
from django.db.models.functions import Now

from chat import services
from chat.generation import IN_PROGRESS_ELSEWHERE, claim_reply
from chat.models import Conversation, Message, ReplyCharge

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def postgresql():
    if connections["default"].vendor != "postgresql":
        pytest.skip("row locks: SQLite locks the whole database for a write, so two requests cannot overlap there")


def second_request_meeting(held, first_request, second_request):
    """Hold the rows of `held` (a queryset), start `second_request` on a thread and check that it waits, run
    `first_request` and commit; what the second returned, or the code of the ChatError it raised."""
    outcome = {}

    def run():
        try:
            outcome["returned"] = second_request()
        except services.ChatError as error:
            outcome["refused"] = error.code
        finally:
            connections.close_all()

    with transaction.atomic():
        list(held.select_for_update())
        thread = threading.Thread(target=run)
        thread.start()
        time.sleep(1.0)
        assert thread.is_alive(), "the second request went on without waiting for the first"
        first_request()
    thread.join(timeout=10)
    assert not thread.is_alive()
    return outcome


def queued_reply(conversation, text="Once, please."):
    question = conversation.messages.create(role=Message.Role.USER, text=text)
    return conversation.messages.create(role=Message.Role.BOT, reply_to=question, status=Message.Status.QUEUED)


def test_two_claims_at_once_start_one_attempt(conversation):
    """A redelivered task and the sweep's resend may claim together: two attempts would write one reply at once."""
    reply = queued_reply(conversation)

    def first_claim():
        Message.objects.filter(pk=reply.pk).update(
            status=Message.Status.STREAMING, attempts=1, worker="celery@first", updated=Now()
        )

    outcome = second_request_meeting(
        Message.objects.filter(pk=reply.pk), first_claim, lambda: claim_reply(reply.pk, worker="celery@second")
    )
    assert outcome == {"returned": IN_PROGRESS_ELSEWHERE}
    stored = Message.objects.get(pk=reply.pk)
    assert (stored.status, stored.attempts, stored.worker) == (Message.Status.STREAMING, 1, "celery@first")


def test_two_messages_at_once_in_one_conversation_get_one_reply(alice, conversation):
    """Two tabs send together: the second finds the first's reply in progress and is told Sheldon is busy."""
    outcome = second_request_meeting(
        Conversation.objects.filter(pk=conversation.pk),
        lambda: queued_reply(conversation, "From the first tab."),
        lambda: services.post_user_message(conversation.pk, alice, "From the second tab."),
    )
    assert outcome == {"refused": "busy"}
    assert [m.text for m in conversation.messages.filter(role=Message.Role.USER)] == ["From the first tab."]
    assert conversation.messages.filter(role=Message.Role.BOT).count() == 1


def test_messages_at_once_in_two_conversations_keep_the_rate_limit(settings, alice, conversation):
    """One tab per conversation, all sending together: the limit counts the account's replies, one check at a time."""
    settings.CHAT_RATE_LIMIT = "1/60"
    other = Conversation.objects.create(owner=alice)
    outcome = second_request_meeting(
        get_user_model().objects.filter(pk=alice.pk),
        lambda: ReplyCharge.objects.create(user=alice, tokens=10),  # the first tab's message, charged
        lambda: services.post_user_message(other.pk, alice, "From the second tab."),
    )
    assert outcome == {"refused": "rate_limited"}
    assert ReplyCharge.objects.filter(user=alice).count() == 1 and not other.messages.exists()
