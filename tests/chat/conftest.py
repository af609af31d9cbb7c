"""Users, conversations and WebSockets for the chat tests."""
import asyncio
import json

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from chat.frames import check_frame
from chat.models import Conversation

from .live import live_settings, live_stack  # noqa: F401  (fixtures)

FRAME_TIMEOUT = 20


def session_cookie(user):
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


class ChatSocket:
    """One browser tab's socket to a conversation, over the real ASGI app."""

    def __init__(self, conversation_id, cookie=None, origin="http://localhost"):
        from sheldonsite.asgi import application

        headers = [(b"origin", origin.encode())]
        if cookie:
            headers.append((b"cookie", f"sessionid={cookie}".encode()))
        self.communicator = WebsocketCommunicator(application, f"/ws/conversations/{conversation_id}/", headers)
        self.frames = []  # every frame received, in order

    async def connect(self):
        connected, _ = await self.communicator.connect(timeout=10)
        return connected

    async def send(self, frame):
        await self.communicator.send_to(text_data=frame if isinstance(frame, str) else json.dumps(frame))

    async def receive(self, timeout=FRAME_TIMEOUT):
        frame = json.loads(await self.communicator.receive_from(timeout=timeout))
        check_frame(frame)  # every frame any chat test receives has the documented shape
        self.frames.append(frame)
        return frame

    async def until(self, predicate, timeout=FRAME_TIMEOUT):
        """Frames up to and including the first that matches."""
        received = []
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            assert remaining > 0, f"No matching frame in {timeout} s; got {received}"
            frame = await self.receive(timeout=remaining)
            received.append(frame)
            if predicate(frame):
                return received

    async def reply_done(self, timeout=FRAME_TIMEOUT):
        return (await self.until(lambda f: f["type"] == "reply_done", timeout))[-1]["message"]

    async def error(self):
        return (await self.until(lambda f: f["type"] == "error"))[-1]

    async def close(self):
        await self.communicator.disconnect()


def streamed_text(frames, message_id):
    """The text the token frames of one reply spell, spliced at their offsets."""
    text = ""
    for frame in frames:
        if frame["type"] == "token" and frame["message_id"] == message_id:
            text = text[: frame["offset"]] + frame["text"]
    return text


@pytest.fixture(autouse=True)
def fresh_channel_layer():
    """A new channel layer for every test.

    Each test runs on an event loop of its own, and channels-redis binds its
    locks and connections to the loop that first used them: a layer left
    from an earlier test fails with "bound to a different event loop".
    """
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture
def make_user(django_user_model):
    def make(username="penny"):
        return django_user_model.objects.create_user(username, password="a-long-password-42")

    return make


@pytest.fixture
def alice(make_user):
    return make_user("alice")


@pytest.fixture
def conversation(alice):
    return Conversation.objects.create(owner=alice)


@pytest.fixture
def open_socket(alice, conversation):
    """Connect a socket of alice's to her conversation (async)."""
    sockets = []

    async def open_(conversation_id=None, user=None):
        cookie = await database_sync_to_async(session_cookie)(user or alice)
        socket = ChatSocket(conversation_id or conversation.pk, cookie)
        assert await socket.connect()
        sockets.append(socket)
        return socket

    return open_
