"""Prompt cost is bounded in tokens: a long message is cut (and the reply says so); a user's tokens per minute are capped."""
from datetime import timedelta

import pytest
from django.utils import timezone

from chat import services
from chat.models import Conversation, Message, ReplyCharge
from chat.services import ChatError, token_cost

# 2,000 characters that are several tokens each: the worst case of the character limit.
DENSE = "".join(chr(0x4E00 + n * 7 % 20000) for n in range(2000))


@pytest.mark.django_db
def test_token_cost_bounds_a_message_by_its_bytes_and_the_cut(settings):
    settings.CHAT_MAX_MESSAGE_TOKENS, settings.MAX_NEW_TOKENS = 384, 60
    assert token_cost("Hello.") == 6 + 60
    assert token_cost(DENSE) == 384 + 60


@pytest.mark.django_db
def test_the_token_budget_refuses_a_flood_of_long_messages(settings, alice, conversation):
    settings.CHAT_MAX_MESSAGE_TOKENS, settings.MAX_NEW_TOKENS = 384, 60
    settings.CHAT_TOKEN_BUDGET, settings.CHAT_RATE_LIMIT = "1000/60", "20/60"
    for _ in range(2):  # 2 x 444 tokens fit in 1,000
        services.post_user_message(conversation.pk, alice, DENSE)
        Message.objects.filter(conversation=conversation, role="bot").update(status="done")
    with pytest.raises(ChatError) as refused:
        services.post_user_message(conversation.pk, alice, DENSE)
    assert refused.value.code == "rate_limited" and "1000 tokens every 60 seconds" in refused.value.detail
    # Short messages still fit where a long one does not.
    services.post_user_message(conversation.pk, alice, "Hello.")


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
async def test_a_dense_message_is_cut_to_the_token_budget_and_the_reply_says_so(live_settings, open_socket):
    tab = await open_socket()
    await tab.send({"type": "user_message", "text": DENSE})
    done = await tab.reply_done(timeout=60)
    assert done["status"] == "done", (done["status"], done["error"])
    cut = done["record"]["parameters"]["message_cut"]
    assert cut["kept"] == 384 and cut["tokens"] > 2000
    await tab.close()


@pytest.mark.django_db
def test_deleting_replies_or_conversations_gives_no_allowance_back(settings, alice, conversation):
    # An edit deletes the replies it replaces, and deleting a conversation deletes its messages: the limits
    # count the replies asked for, not the replies that are left.
    settings.CHAT_RATE_LIMIT = "3/60"
    services.post_user_message(conversation.pk, alice, "Hello.")
    for text in ("Hello again.", "Hello once more."):
        Message.objects.filter(conversation=conversation, role="bot").update(status="done")
        last = Message.objects.filter(conversation=conversation, role="user").latest("id")
        services.edit_last_message(conversation.pk, alice, last.pk, text)
    assert Message.objects.filter(conversation=conversation, role="bot").count() == 1
    conversation.delete()
    fresh = Conversation.objects.create(owner=alice)
    with pytest.raises(ChatError) as refused:
        services.post_user_message(fresh.pk, alice, "Anyone?")
    assert refused.value.code == "rate_limited" and "at most 3 every 60 seconds" in refused.value.detail
    assert not fresh.messages.exists()  # a refused message stores nothing


@pytest.mark.django_db
def test_charges_older_than_the_longest_window_are_deleted(settings, alice, conversation):
    settings.CHAT_RATE_LIMIT, settings.CHAT_TOKEN_BUDGET = "20/60", "100000/120"
    old = ReplyCharge.objects.create(user=alice, tokens=10)
    ReplyCharge.objects.filter(pk=old.pk).update(created=timezone.now() - timedelta(seconds=121))
    services.post_user_message(conversation.pk, alice, "Hello.")
    assert list(ReplyCharge.objects.values_list("tokens", flat=True)) == [token_cost("Hello.")]
