"""The transport of server frames to every open socket of a conversation, through the channel layer.

chat/frames.py builds the frames and is the one place that sends them; this
module carries them.

Each conversation has a group; its consumers join it and relay what arrives
(`chat.frame` events) to their sockets unchanged.

Workers send from plain threads, many times a second per reply. A plain
`async_to_sync(group_send)` there sets up a new event loop and a new Redis
connection for every frame (about 20 ms each, measured on this machine), and
would hold up the generation that called it. So each process hands its
frames to one sender on one long-lived event loop, which sends them in order:
on a thread of its own in a worker, on the server's loop in a web process that
generates replies itself (no Redis: the in-memory layer lives on that loop).
"""
import asyncio
import logging
import threading

from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)


def conversation_group(conversation_id: int) -> str:
    return f"conversation-{conversation_id}"


def user_group(user_id: int) -> str:
    """Every socket of one user (closed when they log out)."""
    return f"user-{user_id}"


def frame_event(frame: dict) -> dict:
    return {"type": "chat.frame", "frame": frame}


class FrameSender:
    """Sends frames handed over from any thread, one at a time, in order."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.waiting = asyncio.Queue()
        loop.call_soon_threadsafe(lambda: loop.create_task(self._run()))

    def send(self, conversation_id: int, frame: dict) -> None:
        self.loop.call_soon_threadsafe(self.waiting.put_nowait, (conversation_id, frame))

    async def _run(self) -> None:
        layer = get_channel_layer()
        while True:
            conversation_id, frame = await self.waiting.get()
            try:
                await layer.group_send(conversation_group(conversation_id), frame_event(frame))
            except Exception:  # a lost frame must not stop the frames after it
                logger.exception("Could not send a %s frame to conversation %s", frame["type"], conversation_id)


_sender = None
_sender_lock = threading.Lock()


def send_from_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Send this process's frames on `loop` (the web server's, when it generates replies itself)."""
    global _sender
    with _sender_lock:
        if _sender is None or _sender.loop is not loop:
            _sender = FrameSender(loop)


def current_sender() -> FrameSender:
    """This process's sender; a worker's first frame starts it on a thread of its own."""
    global _sender
    with _sender_lock:
        if _sender is None or _sender.loop.is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="frame-sender", daemon=True).start()
            _sender = FrameSender(loop)
        return _sender
