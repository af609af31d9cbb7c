"""One shape per frame and one generation record: the schema, and the record the API, socket and export share."""
import copy

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from chat.frames import FRAME_SCHEMAS, FrameSchemaError, check_frame, error_frame, message_frame, token_frame
from chat.models import Conversation, Message
from chat.records import RECORD_COLUMNS, GenerationRecord
from review.export import message_rows

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]


def api_messages(user, conversation_id):
    client = Client()
    client.force_login(user)
    return {m["id"]: m for m in client.get(f"/api/conversations/{conversation_id}/messages/").json()["messages"]}


def export_rows(conversation_id):
    return {row["message_id"]: row for row in message_rows(Conversation.objects.filter(pk=conversation_id))}


def as_columns(record):
    """The API's nested record flattened the export's way: `retrieved.text` is `retrieved_text`."""
    retrieved = record["retrieved"] or {"text": "", "score": None, "episode": "", "scene": None}
    flat = {name: value for name, value in record.items() if name != "retrieved"}
    return {**flat, **{f"retrieved_{name}": value for name, value in retrieved.items()}}


def stored_reply(conversation):
    question = conversation.messages.create(role="user", text="Hi.")
    return conversation.messages.create(
        role="bot", text="Hello.", status="done", reply_to=question, profile="offline", generator_model="tiny",
        retriever_model="mini", parameters={"temperature": 0.7}, retrieved_text="Bazinga!", retrieved_score=0.93,
        retrieved_episode="Series 01 Episode 01", retrieved_scene=2, seconds=1.5, new_tokens=12,
        worker="celery@test/1", attempts=1,
    )


def test_the_schema_refuses_frames_of_another_shape(conversation):
    reply = stored_reply(conversation)
    good = [message_frame(reply), message_frame(reply.reply_to), token_frame(reply.pk, 0, "Hel"),
            error_frame("busy", "Wait.")]
    for frame in good:
        check_frame(frame)
    done = {"type": "reply_done", "message": message_frame(reply)["message"]}
    check_frame(done)

    def changed(frame, change):
        frame = copy.deepcopy(frame)
        change(frame)
        return frame

    bad = {
        "unknown type": {"type": "tokens", "text": "x"},
        "not an object": ["message"],
        "missing key": changed(done, lambda f: f["message"].pop("record")),
        "unknown key": changed(done, lambda f: f["message"]["record"].update(retrieved_scene=2)),
        "wrong type": changed(done, lambda f: f["message"].update(id="12")),
        "bool for int": token_frame(True, 0, "x"),
        "negative offset": token_frame(reply.pk, -1, "x"),
        "unfinished reply_done": changed(done, lambda f: f["message"].update(status="streaming")),
        "unknown error code": error_frame("oops", "Something."),
        "null text": changed(done, lambda f: f["message"].update(text=None)),
        "bad retrieved": changed(done, lambda f: f["message"]["record"]["retrieved"].update(score="high")),
        "user message with a record": changed(message_frame(reply.reply_to), lambda f: f["message"].update(
            record={})),
    }
    for name, frame in bad.items():
        with pytest.raises(FrameSchemaError):
            check_frame(frame)
            pytest.fail(f"{name} passed")


def test_api_and_export_carry_the_same_record(alice, conversation):
    reply = stored_reply(conversation)
    record = api_messages(alice, conversation.pk)[reply.pk]["record"]
    assert list(record) == [name for name in GenerationRecord.__dataclass_fields__]
    assert record["retrieved"] == {"text": "Bazinga!", "score": 0.93, "episode": "Series 01 Episode 01", "scene": 2}
    row = export_rows(conversation.pk)[reply.pk]
    assert {name: row[name] for name in RECORD_COLUMNS} == as_columns(record)


@pytest.mark.asyncio
async def test_a_real_flow_sends_every_frame_kind_and_socket_api_export_agree(
    live_settings, open_socket, conversation, alice
):
    tab = await open_socket()
    await tab.send({"type": "user_message", "text": ""})
    await tab.error()
    await tab.send({"type": "user_message", "text": "Hello, Dr. Cooper."})
    done = await tab.reply_done()
    await tab.close()
    # ChatSocket.receive checked each frame against the schema; here: every kind came.
    assert {frame["type"] for frame in tab.frames} == set(FRAME_SCHEMAS)

    api = (await database_sync_to_async(api_messages)(alice, conversation.pk))[done["id"]]
    assert api["record"] == done["record"] and api["status"] == done["status"] == Message.Status.DONE
    row = (await database_sync_to_async(export_rows)(conversation.pk))[done["id"]]
    assert {name: row[name] for name in RECORD_COLUMNS} == as_columns(done["record"])
    assert done["record"]["attempts"] == 1 and done["record"]["worker"]
