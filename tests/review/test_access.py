"""Only staff see any of the review: every URL, every kind of visitor."""
import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse

from accounts.models import AccountSettings


def review_urls(transcripts):
    """Every page of the review, with real objects in it."""
    return [
        reverse("admin:chat_conversation_changelist"),
        reverse("admin:chat_conversation_change", args=[transcripts.numbers.pk]),
        reverse("admin:chat_message_changelist"),
        reverse("admin:chat_message_change", args=[transcripts.b1.pk]),
        reverse("admin:chat_rating_changelist"),
        reverse("admin:chat_rating_change", args=[transcripts.b1.ratings.get().pk]),
        reverse("admin:review_reviewlabel_changelist"),
        reverse("admin:review_reviewlabel_change", args=[transcripts.b2.review_labels.get().pk]),
        reverse("admin:accounts_accountsettings_changelist"),
        reverse("review:transcript", args=[transcripts.numbers.pk]),
        reverse("review:overview"),
    ]


def export_action(client, transcripts):
    return client.post(
        reverse("admin:chat_conversation_changelist"),
        {"action": "export_conversations", ACTION_CHECKBOX_NAME: [transcripts.numbers.pk], "export_format": "jsonl"},
    )


@pytest.mark.parametrize("visitor", ["anonymous", "alice"])
def test_anyone_not_staff_is_sent_to_the_staff_login_and_sees_nothing(client, transcripts, visitor):
    if visitor != "anonymous":
        client.force_login(getattr(transcripts, visitor))
    for url in [reverse("admin:index"), *review_urls(transcripts)]:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("admin:login")), url
    response = export_action(client, transcripts)
    assert response.status_code == 302 and response["Location"].startswith(reverse("admin:login"))
    assert "Content-Disposition" not in response


def test_staff_without_review_permissions_are_refused(client, transcripts, staff_without_permissions):
    client.force_login(staff_without_permissions)
    for url in review_urls(transcripts):
        assert client.get(url).status_code == 403, url
    assert export_action(client, transcripts).status_code == 403


def test_reviewers_with_view_permissions_see_every_page(client, transcripts, reviewer_with_view_permissions):
    client.force_login(reviewer_with_view_permissions)
    for url in review_urls(transcripts):
        if "accountsettings" in url:
            continue  # consent records need accounts.view_accountsettings, which this reviewer lacks
        assert client.get(url).status_code == 200, url


@pytest.mark.django_db(transaction=True)
def test_staff_who_could_see_consent_as_profiles_still_can_after_the_rename(django_user_model):
    from django.contrib.auth.models import Permission
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    def migrate(target):
        executor = MigrationExecutor(connection)
        executor.migrate([("accounts", target)])

    migrate("0001_initial")
    try:
        reviewer = django_user_model.objects.create_user("rita", password="a-long-password-42", is_staff=True)
        consent = Permission.objects.get(content_type__app_label="accounts", codename="view_profile")
        reviewer.user_permissions.add(consent)
    finally:
        migrate("0002_rename_profile_to_account_settings")
    reviewer = django_user_model.objects.get(pk=reviewer.pk)
    assert reviewer.has_perm("accounts.view_accountsettings")
    assert not Permission.objects.filter(content_type__app_label="accounts", codename__endswith="_profile").exists()


def test_staff_cannot_change_a_users_consent(client, transcripts):
    """Only the person may allow their conversations into training data (accounts/views.py)."""
    client.force_login(transcripts.reviewer)
    consent = AccountSettings.objects.get(user=transcripts.alice)
    change = reverse("admin:accounts_accountsettings_change", args=[consent.pk])
    assert client.post(change, {"user": transcripts.alice.pk, "_save": "Save"}).status_code == 403  # box unticked
    assert client.get(reverse("admin:accounts_accountsettings_add")).status_code == 403
    consent.refresh_from_db()
    assert consent.allow_training_use


def test_staff_cannot_change_or_delete_a_users_rating(client, transcripts):
    """Ratings are what people said of the replies, and preference training reads them."""
    client.force_login(transcripts.reviewer)
    rating = transcripts.b1.ratings.get()
    change = reverse("admin:chat_rating_change", args=[rating.pk])
    edit = {"message": transcripts.b1.pk, "user": transcripts.alice.pk, "score": "1", "comment": "", "_save": "Save"}
    assert client.post(change, edit).status_code == 403
    assert client.post(reverse("admin:chat_rating_delete", args=[rating.pk]), {"post": "yes"}).status_code == 403
    rating.refresh_from_db()
    assert rating.score == 5
