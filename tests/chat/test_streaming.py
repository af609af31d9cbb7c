"""The whole flow over the real Redis channel layer and a real Celery worker process."""
import asyncio

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from chat.models import Message
from chat.tasks import generate_reply
from inference.cleanup import streamed_as

from .conftest import streamed_text
from .live import MAX_NEW_TOKENS

# A hang fails fast with its traceback instead of eating the suite's time.
pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]


def bot_messages(conversation):
    return list(Message.objects.filter(conversation=conversation, role="bot").order_by("id"))


async def test_whole_flow(live_settings, open_socket, conversation, alice, tiny_chat):
    tab, other_tab = await open_socket(), await open_socket()
    await tab.send({"type": "user_message", "text": "  Hello, Dr. Cooper.  "})

    frames = await tab.until(lambda f: f["type"] == "reply_done")
    question, queued = frames[0]["message"], frames[1]["message"]
    assert (frames[0]["type"], question["role"], question["text"]) == ("message", "user", "Hello, Dr. Cooper.")
    assert (queued["role"], queued["status"], queued["reply_to"]) == ("bot", "queued", question["id"])
    assert any(f["type"] == "message" and f["message"]["status"] == "streaming" for f in frames)
    tokens = [f for f in frames if f["type"] == "token"]
    # Time-based chunks: fewer frames than generated tokens, at least one.
    assert 1 <= len(tokens) < MAX_NEW_TOKENS, frames

    done = frames[-1]["message"]
    assert done["id"] == queued["id"] and done["status"] == "done", done
    assert done["text"] and streamed_as(streamed_text(frames, done["id"]), done["text"])
    record = done["record"]
    assert record["generator_model"] == str(tiny_chat)
    assert record["new_tokens"] > 0 and record["seconds"] > 0 and record["attempts"] == 1
    assert record["worker"].startswith(live_settings.GENERATION_QUEUE)
    assert record["retrieved"] is None  # retrieval is off for the tiny model

    # Every open socket of the owner got the same reply.
    other_frames = await other_tab.until(lambda f: f["type"] == "reply_done")
    assert other_frames[-1]["message"]["text"] == done["text"]

    stored = await database_sync_to_async(bot_messages)(conversation)
    assert [(m.status, m.text) for m in stored] == [("done", done["text"])]
    await database_sync_to_async(conversation.refresh_from_db)()
    assert conversation.title == "Hello, Dr. Cooper."

    # The next message is answered with the history: one more reply, no duplicate.
    await tab.send({"type": "user_message", "text": "What is your favourite number?"})
    second = await tab.reply_done()
    assert second["status"] == "done"
    stored = await database_sync_to_async(bot_messages)(conversation)
    assert len(stored) == 2
    await tab.close()
    await other_tab.close()


async def streaming_started(tab):
    """Wait until a worker streams the reply, and a little more; returns the reply's id."""
    frame = (await tab.until(lambda f: f["type"] == "message" and f["message"]["status"] == "streaming"))[-1]
    await asyncio.sleep(0.5)
    return frame["message"]["id"]


async def test_reload_during_streaming_resumes(live_settings, open_socket, alice, conversation):
    tab = await open_socket()
    await tab.send({"type": "user_message", "text": "Tell me about string theory."})
    reply_id = await streaming_started(tab)
    await tab.close()  # the page reloads

    # The reloaded page reads the history: the reply is still streaming, with
    # at least the text sent to the closed page (the worker saves before it sends).
    client = Client()
    await database_sync_to_async(client.force_login)(alice)
    page = await database_sync_to_async(client.get)(f"/api/conversations/{conversation.pk}/messages/")
    partial = page.json()["messages"][-1]
    assert partial["id"] == reply_id and partial["status"] == "streaming"
    assert partial["text"].startswith(streamed_text(tab.frames, reply_id))

    # Its new socket first gets the reply in progress, then the rest of the stream.
    tab = await open_socket()
    frames = await tab.until(lambda f: f["type"] == "reply_done")
    resumed = frames[0]["message"]
    assert frames[0]["type"] == "message" and resumed["id"] == reply_id and resumed["status"] == "streaming"
    text = resumed["text"]
    for frame in frames:
        if frame["type"] == "token":
            assert frame["offset"] <= len(text), "a gap between the saved text and the stream"
            text = text[: frame["offset"]] + frame["text"]
    done = frames[-1]["message"]
    assert done["status"] == "done" and streamed_as(text, done["text"])
    await tab.close()


async def test_stop_keeps_the_text_so_far(live_settings, open_socket, conversation):
    tab = await open_socket()
    await tab.send({"type": "user_message", "text": "Explain quantum mechanics in detail."})
    await streaming_started(tab)
    await tab.send({"type": "stop"})
    stopped = await tab.reply_done()
    assert stopped["status"] == "stopped"
    assert stopped["record"]["new_tokens"] < MAX_NEW_TOKENS
    # Exactly what the page showed, and what the database holds.
    assert stopped["text"] == streamed_text(tab.frames, stopped["id"])
    stored = (await database_sync_to_async(bot_messages)(conversation))[-1]
    assert (stored.status, stored.text, stored.stop_requested) == ("stopped", stopped["text"], True)
    # The conversation is free again.
    await tab.send({"type": "user_message", "text": "Never mind."})
    assert (await tab.reply_done())["status"] == "done"
    await tab.close()


async def test_regenerate_keeps_alternatives_and_chooses_the_new_one(live_settings, open_socket, conversation):
    tab = await open_socket()
    await tab.send({"type": "user_message", "text": "Knock knock."})
    first = await tab.reply_done()

    await tab.send({"type": "regenerate"})
    frames = await tab.until(lambda f: f["type"] == "reply_done")
    new = frames[-1]["message"]
    assert new["id"] != first["id"] and new["reply_to"] == first["reply_to"]
    assert new["status"] == "done" and new["is_chosen"]

    # A regenerate while a reply is in progress is refused.
    await tab.send({"type": "regenerate"})
    await tab.until(lambda f: f["type"] == "message" and f["message"]["status"] == "queued")
    await tab.send({"type": "regenerate"})
    assert (await tab.error())["code"] == "busy"
    await tab.reply_done()

    stored = await database_sync_to_async(bot_messages)(conversation)
    assert len(stored) == 3
    assert {m.reply_to_id for m in stored} == {first["reply_to"]}
    assert [m.is_chosen for m in stored] == [False, False, True]
    await tab.close()


async def test_a_redelivered_task_for_a_finished_reply_changes_nothing(live_settings, open_socket, conversation):
    tab = await open_socket()
    await tab.send({"type": "user_message", "text": "Bazinga?"})
    done = await tab.reply_done()

    # What the broker does when a worker dies after finishing but before its ack.
    await database_sync_to_async(generate_reply.apply_async)(args=[done["id"]], queue=live_settings.GENERATION_QUEUE)
    await tab.send({"type": "user_message", "text": "Still there?"})
    await tab.reply_done()  # the worker took the tasks in order: the duplicate ran first

    stored = await database_sync_to_async(bot_messages)(conversation)
    assert len(stored) == 2
    assert (stored[0].text, stored[0].attempts, stored[0].status) == (done["text"], 1, "done")
    await tab.close()


async def test_a_killed_worker_leaves_no_reply_stuck(live_settings, live_stack, open_socket, conversation):
    # The worker dies mid-reply while the page watches: the reply turns `failed`
    # once it is stale, and the page's retry (a regenerate) is answered by a new worker.
    tab = await open_socket()
    await tab.send({"type": "user_message", "text": "What happens if the worker dies?"})
    await streaming_started(tab)
    await database_sync_to_async(live_stack.kill_worker)()
    failed = await tab.reply_done(timeout=20)
    assert failed["status"] == "failed" and "stopped responding" in failed["error"]

    await database_sync_to_async(live_stack.start_worker)()
    await tab.send({"type": "regenerate"})
    retried = await tab.reply_done()
    assert retried["status"] == "done" and retried["reply_to"] == failed["reply_to"]
    await tab.close()
