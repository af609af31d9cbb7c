"""The chat features people expect, in Debian's Chromium against the real stack.

Alternatives (‹ 1/3 ›), edit and resend, copy, a comment with a rating,
timestamps, search, export, deleting the account, the error pages, dark mode
and the phone layout. The screenshots of docs/screenshots/ are taken here.
"""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from chat.models import Conversation, Message, Rating, ReplyCharge
from chat.services import token_cost

from ..chat.conftest import session_cookie
from ..chat.live import REPO, live_stack  # noqa: F401  (fixtures)
from .test_chat_page import PHONE, browser, chromium  # noqa: F401  (fixtures)

SCREENSHOTS = REPO / "docs" / "screenshots"
PASSWORD = "Farrah-Fowler-42"
DESKTOP = {"width": 1280, "height": 800}
SHOWN_AT = datetime(2026, 11, 27, 19, 30, tzinfo=UTC)

pytestmark = [pytest.mark.timeout(300), pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def server(live_stack):  # noqa: F811
    """One daphne for the module (its tests share the session's worker and database)."""
    import subprocess
    import sys

    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"], cwd=REPO, env=live_stack.env, check=True
    )
    process, url = live_stack.start_server()
    yield url
    live_stack.stop(process)


@pytest.fixture
def amy(monkeypatch):
    # Playwright's sync API keeps an event loop in this thread; the ORM calls
    # of these tests are plain blocking checks between browser steps.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    return get_user_model().objects.create_user("amy", password=PASSWORD)


def logged_in_page(browser, server, user, **context_options):  # noqa: F811
    context = browser.new_context(**context_options)
    context.add_cookies([{"name": "sessionid", "value": session_cookie(user), "url": server}])
    return context.new_page()


def wait_for_reply(page, count):
    """Until `count` bot replies of the page are finished."""
    page.wait_for_function(
        "n => document.querySelectorAll('.message-bot:not(.status-queued):not(.status-streaming)').length >= n"
        " && !document.querySelector('.message-bot.status-queued, .message-bot.status-streaming')",
        arg=count,
        timeout=30000,
    )


def test_alternatives_edit_copy_comment_timestamps(browser, server, amy):  # noqa: F811
    page = logged_in_page(browser, server, amy, viewport=DESKTOP, permissions=["clipboard-read", "clipboard-write"])
    page.goto(f"{server}/")
    # Shift+Enter makes a line break; the text stays plain text, line breaks kept.
    page.fill("#message-input", "Line one <b>not bold</b>")
    page.press("#message-input", "Shift+Enter")
    page.type("#message-input", "Line two")
    page.press("#message-input", "Enter")
    wait_for_reply(page, 1)
    question = Message.objects.get(role="user", conversation__owner=amy)
    assert question.text == "Line one <b>not bold</b>\nLine two"
    assert page.inner_text(".message-user .message-text") == question.text
    assert page.locator(".message-list b").count() == 0
    assert page.eval_on_selector(".message-user .bubble", "node => getComputedStyle(node).whiteSpace") == "pre-wrap"

    # Timestamps: each message carries its time, readable and exact.
    stamp = page.locator(".message-user time.timestamp")
    assert stamp.get_attribute("datetime") == question.created.isoformat()
    assert stamp.inner_text().strip() and stamp.get_attribute("title")

    # Two regenerations: ‹ 3/3 ›, and going back chooses the earlier reply through the API.
    for count in (2, 3):
        page.click(".message-bot .regenerate")
        page.wait_for_selector(".message-bot.status-queued, .message-bot.status-streaming")
        wait_for_reply(page, 1)
        page.wait_for_function(f"document.querySelector('.alt-position')?.textContent === '{count}/{count}'")
    replies = list(question.replies.order_by("id"))
    assert len(replies) == 3 and [r.is_chosen for r in replies] == [False, False, True]
    page.click(".alt-prev")
    page.wait_for_function("document.querySelector('.alt-position').textContent === '2/3'")
    assert [r.is_chosen for r in question.replies.order_by("id")] == [False, True, False]
    assert page.text_content(".message-bot .message-text") == replies[1].text
    page.click(".alt-next")
    page.wait_for_function("document.querySelector('.alt-position').textContent === '3/3'")
    page.click(".alt-prev")
    page.wait_for_function("document.querySelector('.alt-position').textContent === '2/3'")
    page.reload()  # the choice is stored, not just shown
    page.wait_for_selector(".alt-position")
    assert page.text_content(".alt-position") == "2/3"
    assert page.text_content(".message-bot .message-text") == replies[1].text

    # Copy a reply.
    page.click(".message-bot .copy-button")
    page.wait_for_function("document.querySelector('.copy-button').textContent === 'Copied'")
    assert page.evaluate("navigator.clipboard.readText()") == replies[1].text

    # A rating with a comment; changing the thumb keeps the comment.
    page.click(".message-bot .rate[data-score='1']")
    page.wait_for_selector(".message-bot .comment-button")
    page.click(".message-bot .comment-button")
    page.fill(".comment-form textarea", "Sheldon would never say that.\nNever.")
    page.click(".comment-form button[type=submit]")
    page.wait_for_selector(".rating-comment")
    assert page.inner_text(".rating-comment") == "Sheldon would never say that.\nNever."
    page.click(".message-bot .rate[data-score='5']")
    page.wait_for_selector(".message-bot .rate[data-score='5'][aria-pressed='true']")
    rating = Rating.objects.get(message=replies[1])
    assert (rating.score, rating.comment) == (5, "Sheldon would never say that.\nNever.")

    # Edit and resend the last message: it is replaced, and answered anew.
    page.click(".message-user .edit-button")
    page.fill(".edit-form textarea", "What is your favourite number?")
    page.click(".edit-form button[type=submit]")
    page.wait_for_function(
        "document.querySelector('.message-user .message-text')?.textContent === 'What is your favourite number?'"
    )
    wait_for_reply(page, 1)
    assert page.locator(".alt-position").count() == 0  # the old replies went with the old text
    question.refresh_from_db()
    new_reply = question.replies.get()
    assert question.text == "What is your favourite number?" and new_reply.status == "done"
    assert page.text_content(".message-bot .message-text") == new_reply.text
    assert page.locator(".message").count() == 2


def test_search_export_errors_and_account_deletion(browser, server, amy):  # noqa: F811
    trains = Conversation.objects.create(owner=amy, title="Trains")
    found = trains.messages.create(role="user", text="Which is the best model railway gauge?")
    for n in range(60):  # the match is on an earlier page of its conversation
        trains.messages.create(role="user", text=f"filler {n}")
    other = Conversation.objects.create(owner=amy, title="Other")
    other.messages.create(role="user", text="Nothing about that here.")
    page = logged_in_page(browser, server, amy, viewport=DESKTOP)
    page.goto(f"{server}/c/{other.pk}/")
    page.wait_for_selector(".message-user")

    page.fill("#search-input", "railway")
    page.wait_for_selector(".search-result")
    assert page.locator(".search-result").count() == 1
    assert page.text_content(".search-result mark") == "railway"
    page.click(".search-result")
    page.wait_for_url(f"{server}/c/{trains.pk}/#message-{found.pk}")
    page.wait_for_selector(f"#message-{found.pk}.highlight")
    assert page.locator(f"#message-{found.pk}").is_visible()
    # A result in the conversation already open: only the hash changes, and the page follows it.
    last = trains.messages.get(text="filler 59")
    page.fill("#search-input", "filler 59")
    page.wait_for_selector(f".search-result[href$='#message-{last.pk}']")
    page.click(".search-result")
    page.wait_for_selector(f"#message-{last.pk}.highlight")
    assert page.locator(".message.highlight").count() == 1

    # Export: the sidebar's links download the user's conversations.
    with page.expect_download() as download:
        page.click(".sidebar-footer a:text('JSON')")
    data = json.loads(Path(download.value.path()).read_text())
    assert {c["title"] for c in data["conversations"]} == {"Trains", "Other"}
    assert download.value.suggested_filename.endswith(".json")
    with page.expect_download() as download:
        page.click(".sidebar-footer a:text('Markdown')")
    assert "## Trains" in Path(download.value.path()).read_text()

    # A conversation that is gone: a styled page with a way back.
    trains.delete()
    response = page.goto(f"{server}/c/{trains.pk}/")
    assert response.status == 404
    assert "not here" in page.text_content("h1")
    assert page.eval_on_selector("body", "node => getComputedStyle(node).margin") == "0px"  # the site's CSS
    page.click("#back-to-chat")
    page.wait_for_url(f"{server}/")

    # Deleting the account: password again, and a yes.
    page.goto(f"{server}/accounts/settings/")
    page.click("#delete-account")
    page.fill("#id_password", "not my password")
    page.check("#id_confirm")
    page.click(".stacked-form button[type=submit]")
    page.wait_for_selector("text=That is not your password.")
    assert get_user_model().objects.filter(username="amy").exists()
    page.fill("#id_password", PASSWORD)
    page.check("#id_confirm")
    page.click(".stacked-form button[type=submit]")
    page.wait_for_url(f"{server}/accounts/login/")
    assert "are deleted" in page.text_content(".flash")
    assert not get_user_model().objects.filter(username="amy").exists()
    assert not Conversation.objects.filter(owner_id=amy.pk).exists()


def test_a_refused_first_message_leaves_no_empty_conversation(browser, server, amy):  # noqa: F811
    Conversation.objects.create(owner=amy, title="Earlier")
    for _ in range(20):  # CHAT_RATE_LIMIT's 20 replies a minute, used up
        ReplyCharge.objects.create(user=amy, tokens=token_cost("Hi."))
    page = logged_in_page(browser, server, amy, viewport=DESKTOP)
    page.goto(f"{server}/")
    page.fill("#message-input", "One more?")
    page.press("#message-input", "Enter")
    page.wait_for_selector("#error-banner:not([hidden])")
    assert "Too many messages" in page.inner_text("#error-text")
    page.wait_for_function("location.pathname === '/' && document.querySelectorAll('.conversation-link').length === 1")
    assert page.input_value("#message-input") == "One more?"  # nothing typed is lost
    assert list(Conversation.objects.filter(owner=amy).values_list("title", flat=True)) == ["Earlier"]


def test_a_new_chats_first_message_sent_twice_at_once_makes_one_conversation(browser, server, amy):  # noqa: F811
    page = logged_in_page(browser, server, amy, viewport=DESKTOP)
    page.goto(f"{server}/")
    page.fill("#message-input", "Hello?")
    # A double click on Send: the second comes while the first is still creating the conversation.
    page.evaluate("() => { const form = document.getElementById('composer'); form.requestSubmit(); form.requestSubmit(); }")
    page.wait_for_selector(".message-user")
    page.wait_for_function("location.pathname.startsWith('/c/')")
    conversations = list(Conversation.objects.filter(owner=amy))
    assert len(conversations) == 1 and page.url.endswith(f"/c/{conversations[0].pk}/")
    assert list(conversations[0].messages.filter(role="user").values_list("text", flat=True)) == ["Hello?"]


def showcase_conversation(user):
    """A conversation that reads like a real one, for the screenshots."""
    conversation = Conversation.objects.create(owner=user, title="Knocking, and why it matters")
    first = conversation.messages.create(role="user", text="Why do you always knock three times?")
    conversation.messages.create(
        role="bot",
        reply_to=first,
        text=(
            "It's a matter of protocol. One knock could be an accident, two could be the wind, "
            "but three is a clear statement of intent.\nAlso, Penny."
        ),
        retrieved_text="Knock knock knock, Penny. Knock knock knock, Penny. Knock knock knock, Penny.",
        retrieved_score=0.93,
        retrieved_episode="Series 02 Episode 11 – The Bath Item Gift Hypothesis",
        retrieved_scene=4,
    )
    second = conversation.messages.create(role="user", text="What is your favourite number?")
    for n, text in enumerate(
        (
            "73. It's the 21st prime number, its mirror, 37, is the 12th, and 12's mirror, 21, is 7 times 3.",
            "Obviously 73. The Chuck Norris of numbers.",
            "73, and I will not be taking follow-up questions at this time.",
        )
    ):
        conversation.messages.create(role="bot", reply_to=second, text=text, is_chosen=n == 0)
    return conversation


def test_dark_mode_phone_and_screenshots(browser, server, amy):  # noqa: F811
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    conversation = showcase_conversation(amy)
    chosen = conversation.messages.get(role="bot", is_chosen=True, reply_to__text__startswith="What")
    Rating.objects.create(message=chosen, user=amy, score=5, comment="Exactly him.")
    Conversation.objects.create(owner=amy, title="Trains, the best of all transport")
    # Fixed times on the messages and in the browser: a second run takes the same pictures,
    # so the committed PNGs change only when the page does.
    for minute, message in enumerate(conversation.messages.order_by("id")):
        Message.objects.filter(pk=message.pk).update(created=SHOWN_AT + timedelta(minutes=minute))
    url = f"{server}/c/{conversation.pk}/"

    light = logged_in_page(browser, server, amy, viewport=DESKTOP, color_scheme="light")
    light.clock.set_fixed_time(SHOWN_AT + timedelta(minutes=30))
    light.goto(url)
    light.wait_for_selector(".alt-position")
    light_background = light.eval_on_selector("html", "node => getComputedStyle(node).backgroundColor")
    light.screenshot(path=str(SCREENSHOTS / "chat-light.png"))
    light.locator(".message-bot").last.screenshot(path=str(SCREENSHOTS / "alternatives.png"))
    assert light.text_content(".alt-position") == "1/3"

    # Dark mode follows the system setting, with no switch to find.
    dark = logged_in_page(browser, server, amy, viewport=DESKTOP, color_scheme="dark")
    dark.clock.set_fixed_time(SHOWN_AT + timedelta(minutes=30))
    dark.goto(url)
    dark.wait_for_selector(".alt-position")
    dark_background = dark.eval_on_selector("html", "node => getComputedStyle(node).backgroundColor")
    assert light_background == "rgb(244, 246, 251)" and dark_background == "rgb(17, 21, 31)"
    ink = dark.eval_on_selector(".message-bot .message-text", "node => getComputedStyle(node).color")
    assert ink == "rgb(228, 232, 242)"  # light text on the dark bubble
    dark.screenshot(path=str(SCREENSHOTS / "chat-dark.png"))

    phone = logged_in_page(browser, server, amy, viewport=PHONE, color_scheme="light", is_mobile=True, has_touch=True)
    phone.clock.set_fixed_time(SHOWN_AT + timedelta(minutes=30))
    phone.goto(url)
    phone.wait_for_selector(".alt-position")
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert phone.locator(".alt-next").bounding_box()["x"] + 20 <= PHONE["width"]
    phone.screenshot(path=str(SCREENSHOTS / "chat-phone.png"))


def test_an_edit_left_open_while_another_message_came_replaces_nothing(browser, server, amy):  # noqa: F811
    conversation = Conversation.objects.create(owner=amy, title="Knock knock")
    first = Message.objects.create(conversation=conversation, role=Message.Role.USER, text="Knock knock.")
    Message.objects.create(conversation=conversation, role=Message.Role.BOT, reply_to=first, text="Who's there?")
    page = logged_in_page(browser, server, amy)
    page.goto(f"{server}/c/{conversation.pk}/")
    page.click(f'[data-message-id="{first.pk}"] .edit-button')
    page.fill(".edit-form textarea", "Knock knock, Penny.")

    # Meanwhile another tab sends the next message, and its reply ends; none of its frames reach this page.
    second = Message.objects.create(conversation=conversation, role=Message.Role.USER, text="Penny.")
    answer = Message.objects.create(conversation=conversation, role=Message.Role.BOT, reply_to=second, text="Penny?")
    page.click(".edit-form button[type=submit]")

    # Refused: the newer message and its reply stay as they were, and the edit's text goes into the message box.
    page.wait_for_selector("#error-banner:not([hidden])")
    assert "newer one came" in page.inner_text("#error-text")
    page.wait_for_function("() => document.querySelector('#message-input').value === 'Knock knock, Penny.'")
    assert Message.objects.get(pk=second.pk).text == "Penny." and Message.objects.filter(pk=answer.pk).exists()
    assert Message.objects.get(pk=first.pk).text == "Knock knock."
    assert page.is_enabled("#send-button")


def test_the_sidebar_lists_every_conversation_past_the_first_page(browser, server, amy):  # noqa: F811
    Conversation.objects.bulk_create(Conversation(owner=amy, title=f"Chat {n}") for n in range(205))
    page = logged_in_page(browser, server, amy)
    page.goto(f"{server}/")
    page.wait_for_function("() => document.querySelectorAll('.conversation-link').length === 205", timeout=10000)
