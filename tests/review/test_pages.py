"""The review pages render with real data, and transcripts stay read-only."""
import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse
from django.utils.html import escape

from chat.models import Message
from review.models import ReviewLabel
from review.overview import finished_replies, reply_stats


@pytest.fixture
def staff(client, transcripts):
    client.force_login(transcripts.reviewer)
    return client


def page(client, url):
    response = client.get(url)
    assert response.status_code == 200, response.content[:500]
    return response.content.decode()


def test_conversation_page_shows_the_transcript_in_order_with_each_reply_record(staff, transcripts):
    html = page(staff, reverse("admin:chat_conversation_change", args=[transcripts.numbers.pk]))
    texts = ["What is your favourite number?", "73. It is the best number.", "I do not have a favourite.",
             "Do you like trains?", "Trains are the pinnacle of human engineering."]
    positions = [html.index(text) for text in texts]
    assert positions == sorted(positions)
    for shown in ("73 is the Chuck Norris of numbers.", "score 0.930", "Series 04 Episode 10",
                  "SmolLM2-135M-Instruct.Q4_1.gguf", "all-MiniLM-L6-v2", escape('{"temperature": 0.7, "top_p": 0.8}'),
                  "0.50 s", "scored 5", "off-character", "alternative not shown", "read as chat"):
        assert shown in html
    # Read-only: no input for any message text, no save button.
    assert 'name="messages-0-text"' not in html
    assert 'name="_save"' not in html


def test_conversation_list_links_each_transcript(staff, transcripts):
    html = page(staff, reverse("admin:chat_conversation_changelist"))
    for chat in (transcripts.numbers, transcripts.greeting, transcripts.physics):
        assert reverse("review:transcript", args=[chat.pk]) in html
    assert reverse("review:overview") in html


def test_transcript_reads_like_the_chat(staff, transcripts):
    html = page(staff, reverse("review:transcript", args=[transcripts.greeting.pk]))
    assert html.index("Hi") < html.index("worker died") < html.index("Hello?") < html.index("Well, as I was")
    assert "failed" in html and "stopped" in html and "rated 2" in html
    assert reverse("admin:chat_message_change", args=[transcripts.b4.pk]) in html


def test_text_is_escaped_not_run(staff, transcripts):
    transcripts.b2.text = "<script>alert(1)</script>"
    transcripts.b2.save()
    for url in (reverse("review:transcript", args=[transcripts.numbers.pk]),
                reverse("admin:chat_conversation_change", args=[transcripts.numbers.pk])):
        html = page(staff, url)
        assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_reply_page_adds_a_label_by_its_author_and_never_changes_the_reply(
    client, transcripts, reviewer_with_view_permissions
):
    client.force_login(reviewer_with_view_permissions)
    url = reverse("admin:chat_message_change", args=[transcripts.b4.pk])
    html = page(client, url)
    assert "Well, as I was" in html and "Hello?" in html  # the reply and what it answered
    form = {
        "text": "rewritten by staff", "status": "done",
        "review_labels-TOTAL_FORMS": "1", "review_labels-INITIAL_FORMS": "0",
        "review_labels-MIN_NUM_FORMS": "0", "review_labels-MAX_NUM_FORMS": "1000",
        "review_labels-0-label": "wrong_fact", "review_labels-0-note": "Sheldon never says that",
        "review_labels-0-message": str(transcripts.b4.pk),
        "_save": "Save",
    }
    response = client.post(url, form)
    assert response.status_code == 302, response.content.decode()[:2000]
    label = ReviewLabel.objects.get(message=transcripts.b4)
    expected = ("wrong_fact", "Sheldon never says that", reviewer_with_view_permissions)
    assert (label.label, label.note, label.author) == expected
    reply = Message.objects.get(pk=transcripts.b4.pk)
    assert (reply.text, reply.status) == ("Well, as I was", "stopped")


def test_conversations_cannot_be_changed_added_or_deleted(staff, transcripts):
    change = reverse("admin:chat_conversation_change", args=[transcripts.numbers.pk])
    assert staff.post(change, {"title": "renamed by staff"}).status_code == 403
    assert staff.get(reverse("admin:chat_conversation_add")).status_code == 403
    delete = reverse("admin:chat_conversation_delete", args=[transcripts.numbers.pk])
    assert staff.post(delete, {"post": "yes"}).status_code == 403
    transcripts.numbers.refresh_from_db()
    assert transcripts.numbers.title == "numbers"


def test_other_admin_lists_render(staff, transcripts):
    assert "Sheldon always has one" in page(staff, reverse("admin:review_reviewlabel_changelist"))
    assert "scored 3" in page(staff, reverse("admin:chat_rating_changelist"))
    assert "alice" in page(staff, reverse("admin:accounts_accountsettings_changelist"))
    html = page(staff, reverse("admin:chat_message_changelist"))
    assert "Trains are the pinnacle" in html and "What is your favourite number?" not in html  # replies only


def test_ratings_overview_numbers(transcripts):
    weekly, overall = reply_stats(finished_replies())
    by_model = {stats.model: stats for stats in overall}
    offline = by_model["SmolLM2-135M-Instruct.Q4_1.gguf"]
    # Finished replies: b1, b1b, b2, b5 (b3 failed and b4 stopped are not finished).
    assert (offline.replies, offline.rated) == (4, 4)
    assert offline.mean_score == pytest.approx((5 + 1 + 4 + 3) / 4)
    assert offline.low_share == pytest.approx(1 / 4)
    assert offline.retrieved_share == pytest.approx(1 / 4)
    assert offline.median_seconds == pytest.approx((1.5 + 2.5) / 2)
    assert "google/flan-t5-base" not in by_model
    weeks = {stats.week: stats.replies for stats in weekly}
    assert sum(weeks.values()) == 4 and len(weeks) == 2  # "numbers" and "physics" are 18 days apart


def test_ratings_overview_page_has_the_tables_and_a_chart(staff, transcripts):
    html = page(staff, reverse("review:overview"))
    assert '<img src="data:image/png;base64,' in html
    assert "3.25" in html and "25 %" in html and "2.00" in html
    assert staff.get(reverse("review:overview"), {"weeks": "many"}).status_code == 400
    Message.objects.all().delete()
    assert "No finished replies" in page(staff, reverse("review:overview"))


def test_a_label_changed_by_another_reviewer_is_theirs(client, transcripts):
    """A label says what the person who last saved it chose: its author follows, on either page it is edited on."""
    ben = User.objects.create_user("ben", is_staff=True)
    ben.user_permissions.set(Permission.objects.filter(codename__in=["view_reviewlabel", "change_reviewlabel"]))
    client.force_login(ben)
    label = ReviewLabel.objects.get(note="loops")
    url = reverse("admin:review_reviewlabel_change", args=[label.pk])
    response = client.post(url, {"label": "unsafe", "note": "Ben's reading", "_save": "Save"})
    assert response.status_code == 302, response.content.decode()[:2000]
    label.refresh_from_db()
    assert (label.label, label.note, label.author) == ("unsafe", "Ben's reading", ben)


def test_the_overviews_weeks_out_of_range_are_a_bad_request(staff, transcripts):
    for weeks in ("0", "-3", "521", "100000000"):
        assert staff.get(reverse("review:overview"), {"weeks": weeks}).status_code == 400, weeks


def test_a_label_deleted_on_the_reply_page_is_gone(staff, transcripts):
    label = ReviewLabel.objects.get(message=transcripts.b2)
    form = {
        "review_labels-TOTAL_FORMS": "1", "review_labels-INITIAL_FORMS": "1",
        "review_labels-MIN_NUM_FORMS": "0", "review_labels-MAX_NUM_FORMS": "1000",
        "review_labels-0-id": str(label.pk), "review_labels-0-message": str(transcripts.b2.pk),
        "review_labels-0-label": label.label, "review_labels-0-note": label.note, "review_labels-0-DELETE": "on",
        "_save": "Save",
    }
    response = staff.post(reverse("admin:chat_message_change", args=[transcripts.b2.pk]), form)
    assert response.status_code == 302
    assert not ReviewLabel.objects.filter(pk=label.pk).exists()
