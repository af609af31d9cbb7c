"""What the socket refuses, and the rules it keeps, with no worker needed."""
import asyncio
import json
import os
import threading

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import connection, connections
from django.db.backends.signals import connection_created
from django.test import Client

from chat.consumers import CLOSE_LOGGED_OUT, CLOSE_NOT_FOUND, CLOSE_SESSION_CHANGED
from chat.models import Conversation, Message
from chat.notify import user_group

from .conftest import ChatSocket, session_cookie

# A hang fails fast with its traceback instead of eating the suite's time.
pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]

# A queue no worker listens to: replies stay `queued` until stopped.
NOBODY = "test-chat-nobody-listens"


@pytest.fixture
def no_worker(settings, redis_url):
    settings.GENERATION_QUEUE = NOBODY
    return settings


def message_count(conversation):
    return Message.objects.filter(conversation=conversation).count()


@pytest.mark.parametrize(
    "frame, code",
    [
        ("this is not json", "bad_json"),
        ("[" * 2000 + "]" * 2000, "bad_json"),  # nested deeper than the parser goes
        ("[1, 2]", "unknown_type"),
        ({"text": "no type"}, "unknown_type"),
        ({"type": "delete_everything"}, "unknown_type"),
        ({"type": "user_message"}, "bad_text"),
        ({"type": "user_message", "text": 42}, "bad_text"),
        ({"type": "user_message", "text": None}, "bad_text"),
        ({"type": "user_message", "text": ["a list"]}, "bad_text"),
        ({"type": "user_message", "text": ""}, "empty_text"),
        ({"type": "user_message", "text": " \n\t "}, "empty_text"),
        ({"type": "user_message", "text": "x" * 2001}, "too_long"),
        ({"type": "user_message", "text": "a NUL \x00 here"}, "bad_text"),  # PostgreSQL's text holds none
        ('{"type": "user_message", "text": "\\ud800 alone"}', "bad_text"),  # half a surrogate pair: no character
        ({"type": "regenerate"}, "nothing_to_regenerate"),
        ({"type": "stop"}, "not_generating"),
    ],
)
async def test_bad_frames_get_an_error_frame_and_store_nothing(no_worker, open_socket, conversation, frame, code):
    tab = await open_socket()
    await tab.send(frame)
    error = await tab.error()
    assert error["code"] == code and error["detail"]
    assert await database_sync_to_async(message_count)(conversation) == 0
    # The socket stays usable.
    await tab.send({"type": "user_message", "text": "x" * 2000})
    assert (await tab.until(lambda f: f["type"] == "message"))[-1]["message"]["text"] == "x" * 2000
    await tab.close()


async def test_binary_frames_are_refused(no_worker, open_socket):
    tab = await open_socket()
    await tab.communicator.send_to(bytes_data=json.dumps({"type": "stop"}).encode())
    assert (await tab.error())["code"] == "bad_frame"
    await tab.close()


async def test_stop_of_a_queued_reply_and_the_busy_rule(no_worker, open_socket, conversation):
    tab = await open_socket()
    await tab.send({"type": "user_message", "text": "Hello?"})
    queued = (await tab.until(lambda f: f["type"] == "message" and f["message"]["role"] == "bot"))[-1]["message"]
    await tab.send({"type": "user_message", "text": "Are you there?"})
    assert (await tab.error())["code"] == "busy"

    await tab.send({"type": "stop"})
    stopped = await tab.reply_done()
    assert (stopped["id"], stopped["status"], stopped["text"]) == (queued["id"], "stopped", "")
    await tab.close()


async def test_rate_limit_answers_with_an_error_frame(no_worker, open_socket, conversation):
    no_worker.CHAT_RATE_LIMIT = "2/60"
    tab = await open_socket()
    for text in ("One.", "Two."):
        await tab.send({"type": "user_message", "text": text})
        await tab.until(lambda f: f["type"] == "message" and f["message"]["role"] == "bot")
        await tab.send({"type": "stop"})
        await tab.reply_done()
    await tab.send({"type": "user_message", "text": "Three."})
    error = await tab.error()
    assert error["code"] == "rate_limited" and "2 every 60 seconds" in error["detail"]
    await tab.send({"type": "regenerate"})  # a regenerate costs a generation too
    assert (await tab.error())["code"] == "rate_limited"
    assert await database_sync_to_async(message_count)(conversation) == 4
    await tab.close()


async def test_sockets_to_other_users_conversations_are_refused(no_worker, make_user, conversation):
    mallory = await database_sync_to_async(make_user)("mallory")
    cookie = await database_sync_to_async(session_cookie)(mallory)
    refused = [
        (ChatSocket(conversation.pk, cookie), CLOSE_NOT_FOUND),  # alice's conversation
        (ChatSocket(conversation.pk + 1000, cookie), CLOSE_NOT_FOUND),  # no such conversation
        (ChatSocket(conversation.pk), CLOSE_LOGGED_OUT),  # not logged in
    ]
    for tab, code in refused:
        # Accepted, then closed with the code: a browser sees it (a socket closed before it opens is a 1006 there).
        assert await tab.connect()
        assert await tab.communicator.receive_output(timeout=5) == {"type": "websocket.close", "code": code}
        await tab.close()


async def test_an_unknown_socket_path_is_closed_with_4404(no_worker, alice):
    cookie = await database_sync_to_async(session_cookie)(alice)
    tab = ChatSocket(0, cookie)
    tab.communicator.scope["path"] = "/ws/nothing-here/"
    assert await tab.connect()
    assert await tab.communicator.receive_output(timeout=5) == {"type": "websocket.close", "code": CLOSE_NOT_FOUND}
    # The browser's side of the close ends the consumer here; left for the event loop's shutdown to cancel,
    # it once held the test's teardown past its 240 s timeout.
    await tab.close()


async def test_logging_out_closes_the_users_sockets(no_worker, alice, conversation):
    client = Client()
    await database_sync_to_async(client.force_login)(alice)
    tab = ChatSocket(conversation.pk, client.cookies["sessionid"].value)
    assert await tab.connect()
    await database_sync_to_async(client.post)("/accounts/logout/")
    assert await tab.communicator.receive_output(timeout=5) == {"type": "websocket.close", "code": CLOSE_LOGGED_OUT}
    # And the same cookie opens no new one.
    again = ChatSocket(conversation.pk, client.cookies["sessionid"].value)
    assert await again.connect()
    assert (await again.communicator.receive_output(timeout=5))["code"] == CLOSE_LOGGED_OUT
    await tab.close()
    await again.close()


async def test_a_password_change_closes_the_users_sockets_and_ended_sessions_stay_out(no_worker, alice, conversation):
    intruder, owner = Client(), Client()
    for client in (intruder, owner):
        await database_sync_to_async(client.force_login)(alice)
    tab = ChatSocket(conversation.pk, intruder.cookies["sessionid"].value)
    assert await tab.connect()
    changed = await database_sync_to_async(owner.post)(
        "/accounts/password_change/",
        {"old_password": "a-long-password-42", "new_password1": "quite-another-42", "new_password2": "quite-another-42"},
    )
    assert changed.status_code == 302
    assert await tab.communicator.receive_output(timeout=5) == {"type": "websocket.close", "code": CLOSE_SESSION_CHANGED}
    # The page reconnects: the session the change ended is refused, the owner's own gets in.
    again = ChatSocket(conversation.pk, intruder.cookies["sessionid"].value)
    assert await again.connect()
    assert (await again.communicator.receive_output(timeout=5))["code"] == CLOSE_LOGGED_OUT
    mine = ChatSocket(conversation.pk, owner.cookies["sessionid"].value)
    assert await mine.connect()
    await mine.send({"type": "user_message", "text": "Still mine."})
    assert (await mine.until(lambda f: f["type"] == "message"))[-1]["message"]["text"] == "Still mine."
    for socket in (tab, again, mine):
        await socket.close()


async def test_sockets_from_another_port_or_scheme_are_refused(no_worker, alice, conversation):
    cookie = await database_sync_to_async(session_cookie)(alice)
    # Neither another port or scheme, nor an origin that is no address at all (a port too big, an unclosed IPv6).
    for origin in ("http://localhost:9999", "https://localhost:8000", "http://localhost:99999", "http://[::1"):
        tab = ChatSocket(conversation.pk, cookie, origin=origin)
        tab.communicator.scope["headers"].append((b"host", b"localhost:8000"))
        connected, _ = await tab.communicator.connect(timeout=5)
        assert not connected, origin
    tab = ChatSocket(conversation.pk, cookie, origin="http://localhost:8000")
    tab.communicator.scope["headers"].append((b"host", b"localhost:8000"))
    assert await tab.connect()
    await tab.close()


async def test_sockets_from_other_origins_are_refused(no_worker, alice, conversation):
    cookie = await database_sync_to_async(session_cookie)(alice)
    tab = ChatSocket(conversation.pk, cookie, origin="http://evil.example")
    connected, _ = await tab.communicator.connect(timeout=5)
    assert not connected


async def test_a_socket_open_longer_than_the_layers_group_expiry_still_gets_its_frames(
    no_worker, settings, open_socket, alice
):
    """The layer forgets a group member group_expiry seconds after it joined: a day, here 2 s."""
    layer = settings.CHANNEL_LAYERS["default"]
    settings.CHANNEL_LAYERS = {"default": {**layer, "CONFIG": {**layer["CONFIG"], "group_expiry": 2}}}
    tab = await open_socket()
    await asyncio.sleep(3)
    # The conversation's group: its own message comes back through it.
    await tab.send({"type": "user_message", "text": "Still there?"})
    assert (await tab.until(lambda f: f["type"] == "message"))[-1]["message"]["text"] == "Still there?"
    await tab.send({"type": "stop"})
    await tab.reply_done()
    # The user's group: a logout still closes the socket.
    await get_channel_layer().group_send(user_group(alice.pk), {"type": "session_ended"})
    assert (await tab.communicator.receive_output(timeout=5))["code"] == CLOSE_LOGGED_OUT
    await tab.close()


async def test_a_socket_whose_consumer_failed_stops_rejoining_its_groups(no_worker, open_socket, monkeypatch):
    """A consumer that raised never gets to `disconnect`: the task that keeps it in its groups ends with it anyway."""
    from chat import services

    def broken(*args):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(services, "post_user_message", broken)
    tab = await open_socket()
    assert [task for task in asyncio.all_tasks() if task.get_name().startswith("stay-in-groups")]
    await tab.send({"type": "user_message", "text": "Hello?"})
    with pytest.raises(RuntimeError, match="went away"):
        await tab.communicator.receive_output(timeout=5)
    await asyncio.sleep(0)  # the cancelled task's turn
    assert not [task for task in asyncio.all_tasks() if task.get_name().startswith("stay-in-groups") and not task.done()]


async def test_a_deleted_conversation_closes_its_socket(no_worker, open_socket, conversation):
    tab = await open_socket()
    await database_sync_to_async(Conversation.objects.filter(pk=conversation.pk).delete)()
    await tab.send({"type": "user_message", "text": "Anyone?"})
    assert (await tab.communicator.receive_output(timeout=5))["type"] == "websocket.close"
    await tab.close()


@pytest.fixture
def reply_thread_sessions(settings):
    """With persistent connections (DB_CONN_MAX_AGE > 0), the PostgreSQL sessions that reply threads open
    (None on SQLite, which has no sessions to count, and with a pool, which keeps its connections by design)."""
    if connection.vendor != "postgresql" or settings.DB_POOL_MAX_SIZE:
        yield None
        return
    sessions = []

    def note(connection, **kwargs):
        if threading.current_thread().name.startswith("reply-"):
            sessions.append(connection.connection.info.backend_pid)

    database = connections.settings["default"]  # read by each thread's new connection
    max_age, database["CONN_MAX_AGE"] = database["CONN_MAX_AGE"], None
    connection_created.connect(note)
    yield sessions
    connection_created.disconnect(note)
    database["CONN_MAX_AGE"] = max_age


async def test_without_redis_the_reply_streams_from_a_thread_of_the_web_process(
    settings, open_socket, conversation, tiny_chat, reply_thread_sessions
):
    # REDIS_URL unset: the in-memory channel layer, and the task runs in this
    # process, off the event loop, so its pieces still stream through the layer.
    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    settings.GENERATOR_MODEL = str(tiny_chat)
    settings.GENERATOR_ADAPTER = settings.RETRIEVER_MODEL = "none"
    tab = await open_socket()
    await tab.send({"type": "user_message", "text": "Hello from a single process."})
    frames = await tab.until(lambda f: f["type"] == "reply_done", timeout=120)
    done = frames[-1]["message"]
    assert done["status"] == "done" and done["text"]
    assert any(f["type"] == "token" for f in frames)
    assert done["record"]["worker"].endswith(f"/{os.getpid()}")  # generated in this process
    await tab.close()
    if reply_thread_sessions is not None:  # the reply's thread closes its connection as it ends, persistent or not
        for thread in threading.enumerate():
            if thread.name.startswith("reply-"):
                thread.join(timeout=10)
        assert reply_thread_sessions
        for _ in range(20):  # PostgreSQL forgets a closed session a moment later
            if not await open_sessions(reply_thread_sessions):
                break
            await asyncio.sleep(0.1)
        assert not await open_sessions(reply_thread_sessions)


@database_sync_to_async
def open_sessions(backend_pids: list[int]) -> list[int]:
    """Which of these PostgreSQL sessions are still open."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE pid = ANY(%s)", [backend_pids])
        return [row[0] for row in cursor.fetchall()]


async def test_a_socket_hears_only_of_its_own_conversations_replies_in_progress(
    no_worker, open_socket, conversation, make_user
):
    """On connect a socket is sent the replies in progress that it may have missed: its conversation's, no other."""

    @database_sync_to_async
    def queue_replies():
        bobs = Conversation.objects.create(owner=make_user("bob"))
        own_other = Conversation.objects.create(owner=conversation.owner)
        replies = []
        for where in [conversation, bobs, own_other]:
            question = where.messages.create(role=Message.Role.USER, text="Are you there?")
            replies.append(
                where.messages.create(role=Message.Role.BOT, status=Message.Status.QUEUED, reply_to=question)
            )
        return replies

    own, bobs, own_other = await queue_replies()
    tab = await open_socket()
    frame = await tab.receive()
    assert frame["type"] == "message" and frame["message"]["id"] == own.pk
    assert await tab.communicator.receive_nothing(timeout=1), f"more frames came: {bobs.pk} and {own_other.pk} are not its"
