"""Every server frame of the chat socket: built here, sent through one funnel, checked against one schema.

Like Zulip's `send_event` and `event_schema`: the consumer and the worker
never write a frame by hand; they call a builder below and hand the frame to
`send` (from a worker's threads) or `send_now` (from a consumer's event loop),
which put it on the conversation's group. `FRAME_SCHEMAS` is the protocol of
docs/web.md as data; `check_frame` holds a frame against it, and the chat
tests check every frame their sockets receive.
"""
from dataclasses import fields, is_dataclass
from typing import Any, get_args

from channels.layers import get_channel_layer

from .models import Message
from .notify import conversation_group, current_sender, frame_event
from .records import GenerationRecord
from .serializers import message_dict

# What an error frame's `code` may be (ChatError codes; docs/web.md says what each means).
ERROR_CODES = frozenset(
    {
        "bad_json",
        "bad_frame",
        "unknown_type",
        "bad_text",
        "bad_message_id",
        "empty_text",
        "too_long",
        "busy",
        "rate_limited",
        "nothing_to_regenerate",
        "nothing_to_edit",
        "not_generating",
    }
)


def message_frame(message: Message) -> dict:
    """A message was stored or changed state (the user's, a queued or a streaming reply)."""
    return {"type": "message", "message": message_dict(message)}


def token_frame(message_id: int, offset: int, text: str) -> dict:
    """The next piece of a reply: `text` starts at character `offset` of the reply."""
    return {"type": "token", "message_id": message_id, "offset": offset, "text": text}


def reply_done_frame(message: Message) -> dict:
    """A reply is finished (`done`, `stopped` or `failed`): its final text and record."""
    return {"type": "reply_done", "message": message_dict(message)}


def error_frame(code: str, detail: str) -> dict:
    """A client frame was refused; `detail` is for people."""
    return {"type": "error", "code": code, "detail": detail}


def send(conversation_id: int, frame: dict) -> None:
    """Send a frame to every socket of the conversation, from any thread; returns at once, frames stay in order."""
    current_sender().send(conversation_id, frame)


async def send_now(conversation_id: int, frame: dict) -> None:
    """Send a frame to every socket of the conversation from the event loop; returns once the layer has it."""
    await get_channel_layer().group_send(conversation_group(conversation_id), frame_event(frame))


# The schema. A type is that type (float: any number; int and float: not bool),
# a dict an object with exactly those keys, a tuple any one of its parts, None
# null, a frozenset one of those strings, a function a check of its own.


def _schema_of(annotation: Any) -> Any:
    """The schema of a dataclass field's type: X | None becomes (X, None), dataclasses objects."""
    parts = get_args(annotation)
    if parts:
        return tuple(None if part is type(None) else _schema_of(part) for part in parts)
    if is_dataclass(annotation):
        return {field.name: _schema_of(field.type) for field in fields(annotation)}
    return annotation


RECORD = _schema_of(GenerationRecord)
RATING = {"score": int, "comment": str, "updated": str}
USER_MESSAGE = {
    "id": int,
    "conversation": int,
    "role": frozenset(Message.Role.values),
    "text": str,
    "status": frozenset(Message.Status.values),
    "created": str,
    "reply_to": (int, None),
    "is_chosen": bool,
}
BOT_MESSAGE = {**USER_MESSAGE, "error": str, "rating": (RATING, None), "record": RECORD}
FINISHED_REPLY = {**BOT_MESSAGE, "status": frozenset(Message.FINISHED)}


def _message(value: Any, path: str) -> None:
    role = value.get("role") if isinstance(value, dict) else None
    _check(value, BOT_MESSAGE if role == Message.Role.BOT else USER_MESSAGE, path)


def _non_negative(value: Any, path: str) -> None:
    _check(value, int, path)
    if value < 0:
        raise FrameSchemaError(f"{path}: {value} is negative")


FRAME_SCHEMAS = {
    "message": {"type": str, "message": _message},
    "token": {"type": str, "message_id": int, "offset": _non_negative, "text": str},
    "reply_done": {"type": str, "message": FINISHED_REPLY},
    "error": {"type": str, "code": ERROR_CODES, "detail": str},
}


class FrameSchemaError(ValueError):
    """A frame that does not have the documented shape; the message says where."""


def check_frame(frame: Any) -> None:
    """Raise FrameSchemaError unless `frame` is a server frame of the documented shape."""
    kind = frame.get("type") if isinstance(frame, dict) else None
    if kind not in FRAME_SCHEMAS:
        raise FrameSchemaError(f"frame: no server frame has the type {kind!r}")
    _check(frame, FRAME_SCHEMAS[kind], kind)


def _check(value: Any, schema: Any, path: str) -> None:
    if schema is None:
        if value is not None:
            raise FrameSchemaError(f"{path}: {value!r} is not null")
    elif isinstance(schema, tuple):
        errors = []
        for part in schema:
            try:
                return _check(value, part, path)
            except FrameSchemaError as error:
                errors.append(str(error))
        raise FrameSchemaError(" and ".join(errors))
    elif isinstance(schema, dict):
        if not isinstance(value, dict):
            raise FrameSchemaError(f"{path}: {value!r} is not an object")
        if value.keys() != schema.keys():
            raise FrameSchemaError(
                f"{path}: keys {sorted(value)} are not {sorted(schema)}"
                f" (missing {sorted(schema.keys() - value.keys())}, unknown {sorted(value.keys() - schema.keys())})"
            )
        for key, part in schema.items():
            _check(value[key], part, f"{path}.{key}")
    elif isinstance(schema, frozenset):
        if value not in schema:
            raise FrameSchemaError(f"{path}: {value!r} is not one of {sorted(schema)}")
    elif isinstance(schema, type):
        accepted = (int, float) if schema is float else schema
        if not isinstance(value, accepted) or (isinstance(value, bool) and schema is not bool):
            raise FrameSchemaError(f"{path}: {value!r} is not {schema.__name__}")
    else:
        schema(value, path)
