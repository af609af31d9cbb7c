"""The JSON API, the pages and the accounts, over HTTP with session auth and CSRF."""
import json

import pytest
from django.test import Client

from accounts.models import AccountSettings
from chat.models import Conversation, Rating
from data.models import Episode

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(240)]


def logged_in(user, csrf=False):
    client = Client(enforce_csrf_checks=csrf)
    client.force_login(user)
    return client


def send(client, method, url, body=None):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body if body is not None else {})
    return getattr(client, method)(url, data=data, content_type="application/json")


@pytest.fixture
def mallory(make_user):
    return make_user("mallory")


@pytest.fixture
def reply(conversation):
    question = conversation.messages.create(role="user", text="Hi.")
    return conversation.messages.create(
        role="bot", text="Hello.", reply_to=question, retrieved_text="Bazinga!", retrieved_score=0.93,
        retrieved_episode="Series 01 Episode 01 – Pilot Episode", retrieved_scene=2,
    )


def test_conversations_new_list_rename_delete(alice):
    client = logged_in(alice)
    created = send(client, "post", "/api/conversations/", {})
    assert created.status_code == 201 and created.json()["title"] == ""
    conversation_id = created.json()["id"]
    send(client, "post", "/api/conversations/", {"title": "  Trains  "})
    titles = [c["title"] for c in client.get("/api/conversations/").json()["conversations"]]
    assert titles == ["Trains", ""]  # most recently updated first

    renamed = send(client, "patch", f"/api/conversations/{conversation_id}/", {"title": "Physics"})
    assert renamed.status_code == 200 and renamed.json()["title"] == "Physics"
    assert client.get(f"/api/conversations/{conversation_id}/").json()["title"] == "Physics"
    for bad in ({"title": ""}, {"title": 5}, {"title": "x" * 201}, {}, {"title": "a\x00b"}):
        assert send(client, "patch", f"/api/conversations/{conversation_id}/", bad).status_code == 400
    half_a_pair = '{"title": "\\ud800 alone"}'  # valid JSON, but no character: UTF-8 cannot hold it
    assert send(client, "post", "/api/conversations/", half_a_pair).status_code == 400
    for bad in ("x", "²", "-1", "9" * 30):  # "²" is a digit to str.isdigit, but no number to int()
        assert client.get("/api/conversations/", {"after": bad}).status_code == 400, bad
    # Times out of the databases' range once moved to UTC (PostgreSQL and SQLite both failed with a 500).
    for bad in ("9999-12-31T23:59:59.999999-23:59~1", "0001-01-01T00:00:00+23:59~1"):
        assert client.get("/api/conversations/", {"after": bad}).status_code == 400, bad
    assert send(client, "patch", f"/api/conversations/{conversation_id}/", "{not json").status_code == 400
    assert send(client, "post", "/api/conversations/", "[1]").status_code == 400
    # Nested deeper than the JSON parser goes: a clear 400 too, not a 500.
    deep = send(client, "patch", f"/api/conversations/{conversation_id}/", "[" * 100_000)
    assert deep.status_code == 400 and "not valid JSON" in deep.json()["error"]

    assert client.delete(f"/api/conversations/{conversation_id}/").status_code == 204
    assert client.get(f"/api/conversations/{conversation_id}/").status_code == 404
    assert client.put("/api/conversations/").status_code == 405


def test_history_pages_newest_first(alice, conversation):
    for n in range(7):
        conversation.messages.create(role="user", text=f"message {n}")
    client = logged_in(alice)
    url = f"/api/conversations/{conversation.pk}/messages/"
    newest = client.get(url, {"limit": 3}).json()
    assert [m["text"] for m in newest["messages"]] == ["message 4", "message 5", "message 6"]
    assert newest["has_more"]
    older = client.get(url, {"limit": 3, "before": newest["before"]}).json()
    assert [m["text"] for m in older["messages"]] == ["message 1", "message 2", "message 3"]
    oldest = client.get(url, {"limit": 3, "before": older["before"]}).json()
    assert [m["text"] for m in oldest["messages"]] == ["message 0"]
    assert not oldest["has_more"] and oldest["before"] is None
    for bad in ({"limit": "x"}, {"limit": 0}, {"before": "-1"}, {"before": "9" * 30}):
        assert client.get(url, bad).status_code == 400


def test_a_page_is_never_longer_than_the_largest_page(alice, conversation, monkeypatch):
    """A client asking for more than MAX_PAGE_SIZE gets a page of that size and the rest by paging."""
    monkeypatch.setattr("chat.api.MAX_PAGE_SIZE", 2)
    for n in range(3):
        conversation.messages.create(role="user", text=f"message {n}")
        Conversation.objects.create(owner=alice)
    client = logged_in(alice)
    history = client.get(f"/api/conversations/{conversation.pk}/messages/", {"limit": 5}).json()
    assert [m["text"] for m in history["messages"]] == ["message 1", "message 2"] and history["has_more"]
    for asked in ({"limit": 5}, {}):  # the list's own default is the largest page
        listed = client.get("/api/conversations/", asked).json()
        assert len(listed["conversations"]) == 2 and listed["has_more"]


def test_messages_carry_the_generation_record_and_the_users_rating(alice, conversation, reply):
    Rating.objects.create(message=reply, user=alice, score=4, comment="Quite Sheldon.")
    messages = logged_in(alice).get(f"/api/conversations/{conversation.pk}/messages/").json()["messages"]
    bot = messages[-1]
    assert bot["rating"]["score"] == 4 and bot["rating"]["comment"] == "Quite Sheldon."
    assert bot["record"]["retrieved"] == {
        "text": "Bazinga!", "score": 0.93, "episode": "Series 01 Episode 01 – Pilot Episode", "scene": 2,
    }
    assert "rating" not in messages[0]  # user messages have no record or rating


def test_rating_put_change_and_validation(alice, reply):
    client = logged_in(alice)
    url = f"/api/messages/{reply.pk}/rating/"
    first = send(client, "put", url, {"score": 5})
    assert first.status_code == 200 and first.json()["score"] == 5
    changed = send(client, "put", url, {"score": 2, "comment": "Too rude."})
    assert changed.json() == {**changed.json(), "score": 2, "comment": "Too rude."}
    assert list(Rating.objects.values_list("score", "comment")) == [(2, "Too rude.")]
    for bad in ({"score": 0}, {"score": 6}, {"score": "5"}, {"score": 4.5}, {"score": True}, {},
                {"score": 3, "comment": 7}, {"score": 3, "comment": "x" * 2001}, {"score": 3, "comment": "\x00"}):
        assert send(client, "put", url, bad).status_code == 400, bad
    assert Rating.objects.get().score == 2
    question = reply.reply_to
    assert send(client, "put", f"/api/messages/{question.pk}/rating/", {"score": 5}).status_code == 404
    assert client.post(url).status_code == 405


def test_another_users_conversations_and_messages_are_not_found(alice, mallory, conversation, reply):
    client = logged_in(mallory)
    assert client.get("/api/conversations/").json()["conversations"] == []
    base = f"/api/conversations/{conversation.pk}/"
    assert client.get(base).status_code == 404
    assert send(client, "patch", base, {"title": "Mine now"}).status_code == 404
    assert client.delete(base).status_code == 404
    assert client.get(base + "messages/").status_code == 404
    assert send(client, "put", f"/api/messages/{reply.pk}/rating/", {"score": 1}).status_code == 404
    assert client.get(f"/c/{conversation.pk}/").status_code == 404
    conversation.refresh_from_db()
    assert conversation.title == "" and Conversation.objects.count() == 1 and not Rating.objects.exists()


def test_login_and_csrf_are_required(alice, conversation, reply):
    anonymous = Client()
    assert anonymous.get("/api/conversations/").status_code == 401
    assert anonymous.get("/").status_code == 302 and "/accounts/login/" in anonymous.get("/")["Location"]
    client = logged_in(alice, csrf=True)
    assert send(client, "post", "/api/conversations/", {}).status_code == 403
    assert send(client, "put", f"/api/messages/{reply.pk}/rating/", {"score": 5}).status_code == 403
    assert client.delete(f"/api/conversations/{conversation.pk}/").status_code == 403
    # With the token from the page, as the page's script sends it.
    client.get("/")
    token = client.cookies["csrftoken"].value
    response = client.post("/api/conversations/", "{}", content_type="application/json", HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 201


def test_chat_page_settings_and_demo_notice(alice, conversation):
    client = logged_in(alice)
    page = client.get(f"/c/{conversation.pk}/")
    assert page.status_code == 200 and b'id="page-settings"' in page.content
    assert b"demo corpus" not in page.content.lower()
    Episode.objects.create(name="Demo Series 01 Episode 01 - A Demo", content_hash="x")
    assert b"Demo corpus" in client.get("/").content


def test_signup_logs_in_and_rejects_bad_forms(client):
    bad = client.post("/accounts/signup/", {"username": "leonard", "password1": "short", "password2": "short"})
    assert bad.status_code == 200 and b"errorlist" in bad.content
    response = client.post(
        "/accounts/signup/",
        {"username": "leonard", "password1": "Hofstadter-physics-7", "password2": "Hofstadter-physics-7"},
    )
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200


def test_account_settings_consent_is_off_until_turned_on(alice):
    client = logged_in(alice)
    page = client.get("/accounts/settings/")
    assert page.status_code == 200 and b"allow_training_use" in page.content
    assert not AccountSettings.for_user(alice).allow_training_use
    client.post("/accounts/settings/", {"allow_training_use": "on"})
    assert AccountSettings.for_user(alice).allow_training_use
    client.post("/accounts/settings/", {})
    assert not AccountSettings.for_user(alice).allow_training_use


def test_password_change_and_login_form(alice):
    client = logged_in(alice)
    assert client.get("/accounts/password_change/").status_code == 200
    response = client.post(
        "/accounts/password_change/",
        {
            "old_password": "a-long-password-42",
            "new_password1": "Cooper-1-new-pass",
            "new_password2": "Cooper-1-new-pass",
        },
    )
    assert response.status_code == 302
    fresh = Client()
    assert fresh.get("/accounts/login/").status_code == 200
    assert fresh.post("/accounts/login/", {"username": "alice", "password": "Cooper-1-new-pass"}).status_code == 302
