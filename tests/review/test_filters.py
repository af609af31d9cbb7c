"""Each admin filter, and the same criteria on the export command, return exactly the right rows."""
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.urls import reverse

from training.feedback import read_export

CONVERSATIONS = reverse("admin:chat_conversation_changelist")
REPLIES = reverse("admin:chat_message_changelist")


def days_ago(transcripts, title):
    return getattr(transcripts, title).created.date().isoformat()


def listed(client, url, query):
    response = client.get(url, query)
    assert response.status_code == 200, response.content[:500]
    assert "?e=1" not in response.get("Location", "")
    return response.context["cl"]


@pytest.fixture
def staff(client, transcripts):
    client.force_login(transcripts.reviewer)
    return client


CONVERSATION_CASES = [
    ({}, {"numbers", "greeting", "physics"}),
    ({"character": "Leonard"}, {"physics"}),
    ({"profile": "reference"}, {"greeting"}),
    ({"model": "SmolLM2-135M-Instruct.Q4_1.gguf"}, {"numbers", "physics"}),
    ({"rating": "1"}, {"numbers"}),
    ({"rating": "2-"}, {"numbers", "greeting"}),
    ({"rating": "3-"}, {"numbers", "greeting", "physics"}),
    ({"rating": "4+"}, {"numbers"}),
    ({"rating": "5"}, {"numbers"}),
    ({"rating": "unrated"}, {"greeting"}),
    ({"status": "failed"}, {"greeting"}),
    ({"status": "stopped"}, {"greeting"}),
    ({"label": "great"}, {"numbers"}),
    ({"label": "repetitive"}, {"physics"}),
    ({"label": "wrong_fact"}, set()),
    ({"q": "trains"}, {"numbers"}),
    ({"q": "physics"}, {"physics"}),
    ({"rating": "2-", "status": "done"}, {"numbers"}),
]


@pytest.mark.parametrize("query, titles", CONVERSATION_CASES)
def test_conversation_filters(staff, query, titles):
    changelist = listed(staff, CONVERSATIONS, query)
    assert {c.title for c in changelist.result_list} == titles


def test_conversation_filters_by_owner_consent_and_date(staff, transcripts):
    by_owner = listed(staff, CONVERSATIONS, {"owner__id__exact": transcripts.alice.pk})
    assert [c.title for c in by_owner.result_list] == ["numbers"]
    assert {c.title for c in listed(staff, CONVERSATIONS, {"consent": "yes"}).result_list} == {"numbers", "physics"}
    assert [c.title for c in listed(staff, CONVERSATIONS, {"consent": "no"}).result_list] == ["greeting"]

    greeting_day = days_ago(transcripts, "greeting")
    since = listed(staff, CONVERSATIONS, {"created__date__gte": greeting_day})
    until = listed(staff, CONVERSATIONS, {"created__date__lte": greeting_day})
    both = listed(staff, CONVERSATIONS, {"created__date__gte": greeting_day, "created__date__lte": greeting_day})
    assert {c.title for c in since.result_list} == {"greeting", "physics"}
    assert {c.title for c in until.result_list} == {"numbers", "greeting"}
    assert [c.title for c in both.result_list] == ["greeting"]
    # The date form sends an empty box as an empty value.
    open_ended = listed(staff, CONVERSATIONS, {"created__date__gte": greeting_day, "created__date__lte": ""})
    assert {c.title for c in open_ended.result_list} == {"greeting", "physics"}


def test_bad_filter_values_give_the_admin_error_page_not_a_crash(staff):
    for query in ({"created__date__gte": "yesterday"}, {"rating": "7"}):
        response = staff.get(CONVERSATIONS, query)
        assert response.status_code == 302 and response["Location"].endswith("?e=1")


REPLY_CASES = [
    ({}, {"b1", "b1b", "b2", "b3", "b4", "b5"}),
    ({"rating": "2-"}, {"b1b", "b4"}),
    ({"rating": "4+"}, {"b1", "b2"}),
    ({"rating": "unrated"}, {"b3"}),
    ({"status": "failed"}, {"b3"}),
    ({"status": "stopped"}, {"b4"}),
    ({"label": "off_character"}, {"b1b"}),
    ({"model": "google/flan-t5-base"}, {"b3", "b4"}),
    ({"profile": "offline"}, {"b1", "b1b", "b2", "b5"}),
    ({"conversation__character": "Leonard"}, {"b5"}),
    ({"q": "favourite"}, {"b1b"}),
]


@pytest.mark.parametrize("query, names", REPLY_CASES)
def test_reply_filters(staff, transcripts, query, names):
    changelist = listed(staff, REPLIES, query)
    assert {m.pk for m in changelist.result_list} == {getattr(transcripts, name).pk for name in names}


def test_reply_filters_by_owner_and_date(staff, transcripts):
    by_owner = listed(staff, REPLIES, {"conversation__owner__id__exact": transcripts.bob.pk})
    assert {m.pk for m in by_owner.result_list} == {transcripts.b3.pk, transcripts.b4.pk}
    physics_day = days_ago(transcripts, "physics")
    recent = listed(staff, REPLIES, {"created__date__gte": physics_day})
    assert [m.pk for m in recent.result_list] == [transcripts.b5.pk]


EXPORT_CASES = [
    ([], {"numbers", "greeting", "physics"}),
    (["--user", "bob"], {"greeting"}),
    (["--character", "Leonard"], {"physics"}),
    (["--profile", "reference"], {"greeting"}),
    (["--model", "SmolLM2-135M-Instruct.Q4_1.gguf"], {"numbers", "physics"}),
    (["--rating", "2-"], {"numbers", "greeting"}),
    (["--rating", "unrated"], {"greeting"}),
    (["--status", "stopped"], {"greeting"}),
    (["--label", "repetitive"], {"physics"}),
    (["--search", "TRAINS"], {"numbers"}),
]


@pytest.mark.parametrize("options, titles", EXPORT_CASES)
def test_export_command_filters(transcripts, tmp_path, options, titles):
    output = tmp_path / "export.jsonl"
    call_command("export_transcripts", *options, "--all", "--output", str(output), verbosity=0)
    rows = read_export(output, include_unconsented=True)
    assert {row["conversation_title"] for row in rows} == titles


def test_export_command_date_range(transcripts, tmp_path):
    output = tmp_path / "export.csv"
    greeting_day = transcripts.greeting.created.date()
    call_command(
        "export_transcripts", "--all", "--since", str(greeting_day - timedelta(days=1)),
        "--until", str(greeting_day), "--output", str(output), verbosity=0,
    )
    assert {row["conversation_title"] for row in read_export(output, include_unconsented=True)} == {"greeting"}
