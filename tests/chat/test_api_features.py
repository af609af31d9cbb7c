"""Choosing an alternative, search, export, deleting an account, the error pages, editing the last message."""

import json

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.test import Client, RequestFactory
from django.views.defaults import server_error

from chat import services
from chat.models import Conversation, Message, Rating
from chat.services import ChatError

from .conftest import ChatSocket, session_cookie
from .test_api import logged_in
from .test_socket_rules import no_worker  # noqa: F401  (fixture)

pytestmark = [pytest.mark.timeout(240)]


@pytest.fixture
def mallory(make_user):
    return make_user("mallory")


@pytest.fixture
def three_alternatives(conversation):
    question = conversation.messages.create(role="user", text="Knock knock.")
    replies = [
        conversation.messages.create(role="bot", reply_to=question, text=f"Penny. ({n})", is_chosen=n == 3)
        for n in (1, 2, 3)
    ]
    return question, replies


def chosen_ids(question):
    return list(question.replies.filter(is_chosen=True).values_list("id", flat=True))


@pytest.mark.django_db
def test_choosing_an_alternative_marks_it_chosen_and_the_others_not(alice, mallory, three_alternatives):
    question, (first, second, third) = three_alternatives
    client = logged_in(alice)
    Rating.objects.create(message=first, user=alice, score=1, comment="Not him.")
    response = client.post(f"/api/messages/{first.pk}/choose/")
    assert response.status_code == 200
    assert response.json()["id"] == first.pk and response.json()["is_chosen"]
    assert response.json()["rating"]["comment"] == "Not him."
    assert chosen_ids(question) == [first.pk]
    # The history the model sees next follows the choice.
    assert client.post(f"/api/messages/{second.pk}/choose/").status_code == 200
    assert chosen_ids(question) == [second.pk]

    # Not while one of them is still being written; not another user's; not a user message.
    Message.objects.filter(pk=third.pk).update(status=Message.Status.STREAMING)
    busy = client.post(f"/api/messages/{first.pk}/choose/")
    assert busy.status_code == 400 and busy.json()["code"] == "busy"
    assert logged_in(mallory).post(f"/api/messages/{first.pk}/choose/").status_code == 404
    assert client.post(f"/api/messages/{question.pk}/choose/").status_code == 404
    assert client.post("/api/messages/999999/choose/").status_code == 404
    assert client.get(f"/api/messages/{first.pk}/choose/").status_code == 405
    assert chosen_ids(question) == [second.pk]


@pytest.mark.django_db
def test_search_finds_ones_own_shown_messages(alice, mallory, conversation, three_alternatives):
    question, (first, _, third) = three_alternatives
    conversation.title = "Doors"
    conversation.save()
    conversation.messages.create(role="user", text="Tell me about the Doppler effect, please. " + "x" * 100)
    Conversation.objects.create(owner=mallory).messages.create(role="user", text="My own doppler secret")
    client = logged_in(alice)

    found = client.get("/api/search/", {"q": "DOPPLER"}).json()
    assert [r["conversation"] for r in found["results"]] == [{"id": conversation.pk, "title": "Doors"}]
    result = found["results"][0]
    assert result["message"]["role"] == "user"
    assert result["snippet"].startswith("Tell me about the Doppler") and result["snippet"].endswith("…")
    assert not found["has_more"]
    # Only the alternative shown on the page is searched.
    assert [r["message"]["id"] for r in client.get("/api/search/", {"q": "penny"}).json()["results"]] == [third.pk]
    assert client.get("/api/search/", {"q": "Bazinga"}).json()["results"] == []
    for bad in ({}, {"q": " a "}, {"q": "x" * 201}, {"q": "door\x00"}):
        assert client.get("/api/search/", bad).status_code == 400
    assert Client().get("/api/search/", {"q": "doppler"}).status_code == 401


@pytest.mark.django_db
def test_export_as_json_and_markdown(alice, mallory, conversation, three_alternatives):
    question, (first, _, third) = three_alternatives
    conversation.title = "Knocking"
    conversation.save()
    Message.objects.filter(pk=third.pk).update(text="Penny.\n# not a heading\nPenny.")
    Rating.objects.create(message=third, user=alice, score=5, comment="Classic.")
    Conversation.objects.create(owner=mallory, title="Mallory's secrets")
    client = logged_in(alice)

    response = client.get("/api/export/")
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    assert response["Content-Disposition"].startswith('attachment; filename="sheldon-conversations-')
    data = json.loads(response.content)
    assert data["user"] == "alice" and [c["title"] for c in data["conversations"]] == ["Knocking"]
    messages = data["conversations"][0]["messages"]
    assert [m["id"] for m in messages] == [question.pk, first.pk, messages[2]["id"], third.pk]  # alternatives too
    assert messages[-1]["rating"] == {**messages[-1]["rating"], "score": 5, "comment": "Classic."}

    markdown = client.get("/api/export/", {"format": "markdown"})
    assert markdown["Content-Type"].startswith("text/markdown")
    assert markdown["Content-Disposition"].endswith('.md"')
    text = markdown.content.decode()
    assert "## Knocking" in text and "> Knock knock." in text
    assert "> Penny.\n> # not a heading\n> Penny." in text  # line breaks kept, nothing turned into markup
    assert "(1)" not in text  # only the chosen reply reads in the transcript
    assert "*Your rating: 5/5, with this comment:*\n\n> Classic." in text
    assert "Mallory" not in text
    assert client.get("/api/export/", {"format": "pdf"}).status_code == 400


@pytest.mark.django_db
def test_line_breaks_in_a_title_or_a_comment_make_no_markup_in_the_export(alice, conversation, three_alternatives):
    _, (_, _, third) = three_alternatives
    client = logged_in(alice)
    renamed = client.patch(
        f"/api/conversations/{conversation.pk}/", {"title": "Knocking\n# not a heading"}, content_type="application/json"
    )
    assert renamed.json()["title"] == "Knocking # not a heading"  # a title is one line
    Conversation.objects.filter(pk=conversation.pk).update(title="Stored before\n# that rule")
    Rating.objects.create(message=third, user=alice, score=2, comment="first line\n\n## Injected heading\n- item")
    text = client.get("/api/export/", {"format": "markdown"}).content.decode()
    assert "## Stored before # that rule\n" in text
    assert "\n## Injected" not in text and "> ## Injected heading\n> - item" in text


@pytest.mark.sqlite
@pytest.mark.django_db
def test_choosing_a_reply_touches_no_other_conversation(alice, mallory, conversation):
    """Alternatives are the replies to one message of one conversation, even for replies to no message."""
    mine = conversation.messages.create(role="bot", text="Mine.")
    theirs = Conversation.objects.create(owner=mallory).messages.create(role="bot", text="Theirs.")
    services.choose_reply(mine.pk, alice)
    assert Message.objects.get(pk=theirs.pk).is_chosen


@pytest.mark.django_db
def test_a_search_snippet_holds_the_match_after_letters_that_lowering_lengthens(alice, conversation):
    conversation.messages.create(role="user", text="\u0130" * 100 + " needle " + "z" * 200)  # İ lowers to 2 characters
    found = logged_in(alice).get("/api/search/", {"q": "NEEDLE"}).json()
    assert "needle" in found["results"][0]["snippet"]


@pytest.mark.django_db
def test_a_conversation_started_during_an_export_is_left_out_whole(alice, conversation, three_alternatives):
    """Made to happen: another tab starts a conversation right after the export has read the conversations."""
    from django.db import connection

    started = []

    def start_one_after_the_conversations_are_read(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if not started and 'FROM "chat_conversation"' in sql:
            started.append(True)
            other = Conversation.objects.create(owner=alice, title="Started meanwhile")
            other.messages.create(role="user", text="Meanwhile.")
        return result

    client = logged_in(alice)
    with connection.execute_wrapper(start_one_after_the_conversations_are_read):
        response = client.get("/api/export/")
    assert started and response.status_code == 200  # it was a KeyError (a 500)
    data = json.loads(response.content)
    assert [len(c["messages"]) for c in data["conversations"]] == [4]


@pytest.mark.django_db
def test_deleting_an_account_needs_the_password_and_a_yes(alice, mallory, conversation, three_alternatives):
    _, (first, _, _) = three_alternatives
    Rating.objects.create(message=first, user=alice, score=2)
    mallory_conversation = Conversation.objects.create(owner=mallory)
    client = logged_in(alice)
    assert b"password" in client.get("/accounts/delete/").content

    wrong = client.post("/accounts/delete/", {"password": "not-it", "confirm": "on"})
    assert wrong.status_code == 200 and b"That is not your password." in wrong.content
    unconfirmed = client.post("/accounts/delete/", {"password": "a-long-password-42"})
    assert unconfirmed.status_code == 200 and b"errorlist" in unconfirmed.content
    assert get_user_model().objects.filter(username="alice").exists()

    done = client.post("/accounts/delete/", {"password": "a-long-password-42", "confirm": "on"})
    assert done.status_code == 302 and done["Location"] == "/accounts/login/"
    assert not get_user_model().objects.filter(username="alice").exists()
    assert not Conversation.objects.filter(pk=conversation.pk).exists()
    assert not Message.objects.filter(conversation_id=conversation.pk).exists() and not Rating.objects.exists()
    assert Conversation.objects.filter(pk=mallory_conversation.pk).exists()
    assert client.get("/").status_code == 302  # logged out
    assert b"are deleted" in client.get("/accounts/login/").content


@pytest.mark.django_db
def test_error_pages_are_styled_and_lead_back(alice, conversation, settings):
    settings.DEBUG = False
    client = logged_in(alice)
    conversation.delete()
    missing = client.get(f"/c/{conversation.pk}/")
    assert missing.status_code == 404
    assert b"site.css" in missing.content and b'id="back-to-chat" href="/"' in missing.content
    broken = server_error(RequestFactory().get("/"))
    assert broken.status_code == 500
    assert b"site.css" in broken.content and b'id="back-to-chat" href="/"' in broken.content


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_edit_replaces_the_last_message_and_answers_it_anew(no_worker, open_socket, alice, conversation):  # noqa: F811
    tab = await open_socket()
    await tab.send({"type": "edit", "message_id": 1, "text": "Nothing to edit yet."})
    assert (await tab.error())["code"] == "nothing_to_edit"
    await tab.send({"type": "user_message", "text": "Knock knock."})
    old = (await tab.until(lambda f: f["type"] == "message" and f["message"]["role"] == "bot"))[-1]["message"]
    last = old["reply_to"]
    await tab.send({"type": "edit", "message_id": last, "text": "Busy?"})
    assert (await tab.error())["code"] == "busy"
    await tab.send({"type": "stop"})
    await tab.reply_done()

    for bad, code in (
        ({"type": "edit", "message_id": last}, "bad_text"),
        ({"type": "edit", "message_id": last, "text": "  "}, "empty_text"),
        ({"type": "edit", "message_id": last, "text": "x" * 2001}, "too_long"),
        ({"type": "edit", "text": "Which one?"}, "bad_message_id"),
        ({"type": "edit", "message_id": str(last), "text": "Which one?"}, "bad_message_id"),
        ({"type": "edit", "message_id": True, "text": "Which one?"}, "bad_message_id"),
        ({"type": "edit", "message_id": last + 1, "text": "Which one?"}, "nothing_to_edit"),  # its reply's id
    ):
        await tab.send(bad)
        assert (await tab.error())["code"] == code
    await tab.send({"type": "edit", "message_id": last, "text": "  Knock knock, Penny.\nTwice. "})
    # The new reply's frame comes first: a page that sees the new text keeps only the newest reply to it.
    frames = await tab.until(lambda f: f["type"] == "message" and f["message"]["role"] == "user")
    reply, question = frames[-2]["message"], frames[-1]["message"]
    assert question["id"] == old["reply_to"] and question["text"] == "Knock knock, Penny.\nTwice."
    assert reply["reply_to"] == question["id"] and reply["status"] == "queued" and reply["id"] != old["id"]

    stored = await database_sync_to_async(
        lambda: list(conversation.messages.order_by("id").values_list("id", "text"))
    )()
    assert stored == [(question["id"], "Knock knock, Penny.\nTwice."), (reply["id"], "")]
    # Another user cannot edit into this conversation.
    mallory_socket = ChatSocket(
        conversation.pk,
        await database_sync_to_async(session_cookie)(
            await database_sync_to_async(get_user_model().objects.create_user)("mallory", password="x-long-password-1")
        ),
    )
    assert await mallory_socket.connect()  # accepted, then closed: not hers
    assert (await mallory_socket.communicator.receive_output(timeout=5))["code"] == 4404
    await tab.send({"type": "stop"})
    await tab.reply_done()
    await tab.close()


@pytest.mark.sqlite
@pytest.mark.django_db
def test_an_edit_of_a_message_that_is_no_longer_the_last_replaces_nothing(alice, conversation):
    """An Edit form left open while another message was sent (in this tab or another) names the message it edits."""
    first, _ = services.post_user_message(conversation.pk, alice, "Knock knock.")
    Message.objects.filter(conversation=conversation, role="bot").update(status="done", text="Who's there?")
    second, second_reply = services.post_user_message(conversation.pk, alice, "Penny.")
    Message.objects.filter(pk=second_reply.pk).update(status="done", text="Knock knock.")

    with pytest.raises(ChatError) as refused:
        services.edit_last_message(conversation.pk, alice, first.pk, "Knock knock, Penny.")
    assert refused.value.code == "nothing_to_edit"
    assert list(conversation.messages.order_by("id").values_list("text", flat=True)) == [
        "Knock knock.", "Who's there?", "Penny.", "Knock knock."
    ]


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_the_record_separates_queue_warm_up_and_generation(live_settings, open_socket, conversation):
    tab = await open_socket()
    await tab.send({"type": "user_message", "text": "How long did I wait?"})
    done = await tab.reply_done()
    await tab.close()
    record = done["record"]
    assert record["queue_seconds"] >= 0 and record["warmup_seconds"] >= 0 and record["seconds"] > 0
    # The whole wait holds its parts (the claim and the saves between them take a little more).
    parts = record["queue_seconds"] + record["warmup_seconds"] + record["seconds"]
    assert parts <= record["waited_seconds"] < parts + 2
    stored = await database_sync_to_async(Message.objects.get)(pk=done["id"])
    assert stored.waited_seconds == record["waited_seconds"]


@pytest.mark.django_db
def test_status_reports_each_step_of_loading_the_models(client, settings, tmp_path, monkeypatch):
    from django.core.cache import cache

    from chat import warmup
    from inference import batching

    settings.VAR_DIR = tmp_path
    # This process loads the models itself, as the embedded web process does (tests/chat/test_worker_status.py:
    # with workers, "ready" also needs a live one).
    settings.CELERY_TASK_ALWAYS_EAGER = True
    cache.delete(warmup.STATUS_KEY)
    try:
        unknown = client.get("/api/status/").json()  # no login needed
        assert unknown["models"]["state"] == "unknown" and unknown["mode"] in ("embedded", "workers")

        seen = []

        class Engine:  # records the status the page would see at each step of the warm-up
            def reply(self, history: list, message: str) -> None:
                seen.append(warmup.status())

        monkeypatch.setattr(batching, "get_engine", lambda: seen.append(warmup.status()) or Engine())
        warmup.warm_up()
        assert seen[0]["state"] == "loading" and seen[0]["step"] == "loading the models"
        assert seen[0]["step_number"] == 2 and seen[0]["expected_seconds"] is None  # no earlier load
        assert seen[1]["step"] == "warming up" and seen[1]["step_number"] == 3 == seen[1]["steps"]
        ready = client.get("/api/status/").json()["models"]
        assert ready["state"] == "ready" and ready["error"] == ""
        assert float((tmp_path / warmup.LAST_DURATION_FILE).read_text()) >= 0  # the next load's estimate

        def broken():
            raise OSError("no such model file")

        monkeypatch.setattr(batching, "get_engine", broken)
        with pytest.raises(OSError):
            warmup.warm_up()
        failed = client.get("/api/status/").json()["models"]
        assert failed["state"] == "failed" and "no such model file" in failed["error"]

        class FailingEngine:
            def reply(self, history: list, message: str) -> None:
                raise RuntimeError("the first reply broke")

        monkeypatch.setattr(batching, "get_engine", FailingEngine)
        with pytest.raises(RuntimeError):
            warmup.warm_up()
        failed = client.get("/api/status/").json()["models"]
        assert failed["state"] == "failed" and failed["step"] == "warming up"
        assert "loaded, but a first reply failed: the first reply broke" in failed["error"]
        assert failed["expected_seconds"] is not None
        assert client.post("/api/status/").status_code == 405
    finally:
        cache.delete(warmup.STATUS_KEY)


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_choosing_an_alternative_tells_the_owners_open_pages(no_worker, open_socket, alice, three_alternatives):  # noqa: F811
    _, (first, _, _) = three_alternatives
    tab = await open_socket()
    client = await database_sync_to_async(logged_in)(alice)
    response = await database_sync_to_async(client.post)(f"/api/messages/{first.pk}/choose/")
    assert response.status_code == 200
    frame = (await tab.until(lambda f: f["type"] == "message"))[-1]
    assert (frame["message"]["id"], frame["message"]["is_chosen"]) == (first.pk, True)
    await tab.close()
