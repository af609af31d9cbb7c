"""The WebSocket of one conversation: `/ws/conversations/<id>/`.

Client frames: user_message, edit, stop, regenerate. Server frames: message,
token, reply_done, error, each built and sent by chat/frames.py (docs/web.md
has the whole protocol). Every socket of a conversation joins its
channel-layer group; the workers stream into that group, so all of the
owner's open pages see the same reply.
"""

import asyncio
import json
import logging
from collections.abc import Callable

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser

from . import services
from .frames import error_frame, message_frame, reply_done_frame, send_now
from .models import Conversation, Message
from .notify import conversation_group, send_from_loop, user_group
from .services import ChatError, unstorable
from .sweeper import start_sweeper

logger = logging.getLogger(__name__)

FRAME_TYPES = ("user_message", "edit", "stop", "regenerate")
# Close codes, sent after the socket is accepted so that a browser sees them
# (a socket closed before it opens is only a 1006 there): the conversation is
# not there or not this user's (the same answer for both, so nobody can probe
# for other users' conversations); not logged in, or logged out meanwhile.
CLOSE_NOT_FOUND = 4404
CLOSE_LOGGED_OUT = 4401
# The user's password changed: the page reconnects, and a session the change ended is then refused (4401).
CLOSE_SESSION_CHANGED = 4000
# At most this many stop frames a second per socket (each costs a locked transaction).
STOPS_PER_SECOND = 3
# Stops being enforced in the background; kept so they are not garbage-collected.
_stops = set()


def parse_frame(text_data: str | None) -> dict:
    """The client frame as a dict, or a ChatError that says what is wrong with it."""
    if text_data is None:
        raise ChatError("bad_frame", "Frames are JSON text, not binary.")
    try:
        frame = json.loads(text_data)
    except (ValueError, RecursionError):  # nested deeper than the parser goes: not a frame of ours either
        raise ChatError("bad_json", "The frame is not valid JSON.") from None
    if not isinstance(frame, dict) or frame.get("type") not in FRAME_TYPES:
        raise ChatError("unknown_type", f"The frame needs a type, one of: {', '.join(FRAME_TYPES)}.")
    if frame["type"] in ("user_message", "edit"):
        text = frame.get("text")
        if not isinstance(text, str):
            raise ChatError("bad_text", "The message text must be a string.")
        text = text.strip()
        if not text:
            raise ChatError("empty_text", "The message is empty.")
        if problem := unstorable(text):
            raise ChatError("bad_text", f"The message holds {problem}.")
        if len(text) > settings.CHAT_MAX_MESSAGE_CHARS:
            raise ChatError(
                "too_long", f"The message has {len(text)} characters; at most {settings.CHAT_MAX_MESSAGE_CHARS} fit."
            )
        frame["text"] = text
    if frame["type"] == "edit":
        message_id = frame.get("message_id")
        if not isinstance(message_id, int) or isinstance(message_id, bool):
            raise ChatError("bad_message_id", "An edit names the message it replaces: message_id, a number.")
    return frame


def off_loop(function: Callable) -> Callable:
    """`function` run on a thread of the executor pool, with Django's connection handling around it.

    Not Channels' default of one shared thread for every socket of the
    process: that thread was the bottleneck under many sockets. Each call here
    is one self-contained piece of database work (its own transaction), with
    no thread-local state carried between calls, so any thread will do.
    `ASGI_THREADS` sizes the pool.
    """
    return database_sync_to_async(function, thread_sensitive=False)


@off_loop
def owns_conversation(user: AbstractBaseUser | AnonymousUser, conversation_id: int) -> bool:
    return Conversation.objects.filter(pk=conversation_id, owner=user).exists()


@off_loop
def replies_in_progress(conversation_id: int) -> list[dict]:
    replies = Message.objects.filter(conversation_id=conversation_id, status__in=Message.IN_PROGRESS)
    return [message_frame(reply) for reply in replies]


class ConversationConsumer(AsyncWebsocketConsumer):
    staying: asyncio.Task | None = None  # the task that keeps this socket in its groups

    async def connect(self) -> None:
        self.user = self.scope["user"]
        self.conversation_id = self.scope["url_route"]["kwargs"]["conversation_id"]
        self.group = conversation_group(self.conversation_id)
        self.recent_stops = []  # loop times of this socket's stop frames in the last second
        if not self.user.is_authenticated:
            await self.refuse(CLOSE_LOGGED_OUT)
            return
        if not await owns_conversation(self.user, self.conversation_id):
            await self.refuse(CLOSE_NOT_FOUND)
            return
        # Join before reading the replies in progress, so no piece falls in between.
        await self.join_groups()
        await self.accept()
        self.staying = asyncio.create_task(self.stay_in_groups(), name=f"stay-in-groups {self.channel_name}")
        if settings.CELERY_TASK_ALWAYS_EAGER:
            # No broker: replies are generated on threads of this process, and
            # their pieces go through this loop's in-memory channel layer.
            send_from_loop(asyncio.get_running_loop())
        start_sweeper()  # this process's, once: replies end even when no worker runs
        for frame in await replies_in_progress(self.conversation_id):
            await self.send_frame(frame)

    async def refuse(self, code: int) -> None:
        await self.accept()
        await self.close(code=code)

    async def join_groups(self) -> None:
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.channel_layer.group_add(user_group(self.user.pk), self.channel_name)

    async def stay_in_groups(self) -> None:
        """Join again every half of the layer's group expiry, for as long as the socket is open.

        The layer forgets a member `group_expiry` seconds (a day) after it joined: a page left open longer
        would get no frame, and a logout would no longer close its socket.
        """
        while True:
            await asyncio.sleep(self.channel_layer.group_expiry / 2)
            try:
                await self.join_groups()
            except Exception:  # Redis away: the next turn tries again, well before the day is out
                logger.exception("Socket %s could not join its groups again", self.channel_name)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        # Not in `disconnect`: a consumer that raised never gets there, and its task would keep the dead channel
        # in its groups for as long as the process runs.
        try:
            await super().__call__(scope, receive, send)
        finally:
            if self.staying is not None:
                self.staying.cancel()

    async def disconnect(self, code: int) -> None:
        if self.user.is_authenticated:
            await self.channel_layer.group_discard(self.group, self.channel_name)
            await self.channel_layer.group_discard(user_group(self.user.pk), self.channel_name)

    async def session_ended(self, event: dict) -> None:
        """The user logged out (in any tab): this socket is theirs no more."""
        await self.close(code=CLOSE_LOGGED_OUT)

    async def session_changed(self, event: dict) -> None:
        """The user's password changed: the session this socket was opened with may have ended with it."""
        await self.close(code=CLOSE_SESSION_CHANGED)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            frame = parse_frame(text_data)
            if frame["type"] == "user_message":
                await self.user_message(frame["text"])
            elif frame["type"] == "edit":
                await self.edit(frame["message_id"], frame["text"])
            elif frame["type"] == "regenerate":
                await self.regenerate()
            else:
                await self.stop()
        except ChatError as error:
            await self.send_frame(error_frame(error.code, error.detail))
        except Conversation.DoesNotExist:
            await self.close(code=CLOSE_NOT_FOUND)  # deleted while open

    async def user_message(self, text: str) -> None:
        question, reply = await off_loop(services.post_user_message)(self.conversation_id, self.user, text)
        await self.to_group(message_frame(question))
        await self.to_group(message_frame(reply))

    async def edit(self, message_id: int, text: str) -> None:
        question, reply = await off_loop(services.edit_last_message)(self.conversation_id, self.user, message_id, text)
        # The new reply first: a page that sees the question's new text keeps only the newest reply to it.
        await self.to_group(message_frame(reply))
        await self.to_group(message_frame(question))

    async def regenerate(self) -> None:
        reply = await off_loop(services.regenerate)(self.conversation_id, self.user)
        await self.to_group(message_frame(reply))

    async def stop(self) -> None:
        now = asyncio.get_running_loop().time()
        self.recent_stops = [at for at in self.recent_stops if now - at < 1.0]
        if len(self.recent_stops) >= STOPS_PER_SECOND:
            raise ChatError("rate_limited", "Too many stops at once: the reply is stopping.")
        self.recent_stops.append(now)
        reply = await off_loop(services.request_stop)(self.conversation_id, self.user)
        if reply.status == Message.Status.STOPPED:
            await self.to_group(reply_done_frame(reply))
        else:
            # Not waited for here: this socket goes on relaying the worker's last pieces.
            task = asyncio.create_task(self.end_unanswered_stop(reply.pk))
            _stops.add(task)
            task.add_done_callback(_stops.discard)

    async def end_unanswered_stop(self, reply_id: int) -> None:
        """A worker acts on a stop within STOP_CHECK_SECONDS; one that is gone or hung is overruled."""
        await asyncio.sleep(settings.CHAT_STOP_GRACE_SECONDS)
        ended = await off_loop(services.end_unanswered_stop)(reply_id)
        if ended is not None:
            await self.to_group(reply_done_frame(ended))

    async def to_group(self, frame: dict) -> None:
        await send_now(self.conversation_id, frame)

    async def send_frame(self, frame: dict) -> None:
        await self.send(text_data=json.dumps(frame))

    async def chat_frame(self, event: dict) -> None:
        """A frame for this conversation's sockets, from a worker or another socket."""
        await self.send_frame(event["frame"])


class UnknownPathConsumer(AsyncWebsocketConsumer):
    """Any other WebSocket path: a clear 4404 instead of a server error."""

    async def connect(self) -> None:
        await self.accept()
        await self.close(code=CLOSE_NOT_FOUND)
