"""End to end in Debian's Chromium: sign up, talk, watch the reply stream, rate, reload.

The page is served by a real daphne process, the reply comes from the real
Celery worker of the chat tests, over Redis and PostgreSQL.
"""
import shutil
import subprocess
import sys

import pytest

from chat.models import Conversation, Message, Rating

from ..chat.live import REPO, live_settings, live_stack  # noqa: F401  (fixtures)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
PHONE = {"width": 390, "height": 844}
# Rendered as text, it is harmless; run as HTML, it would open a dialog.
HOSTILE = 'Hello Sheldon! <img src=x onerror="alert(1)"><script>alert(2)</script>'


@pytest.fixture(scope="session")
def chromium():
    if not shutil.which(CHROMIUM):
        pytest.skip(f"Debian's chromium is not installed at {CHROMIUM} (scripts/test.sh installs it)")
    return CHROMIUM


@pytest.fixture
def server(live_stack, live_settings):
    # The page's CSS and script, served by WhiteNoise as in production.
    subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
                   cwd=REPO, env=live_stack.env, check=True)
    process, url = live_stack.start_server()
    yield url
    live_stack.stop(process)


class ErrorWatchingBrowser:
    """The launched browser, noting every uncaught script error of its pages: a test whose page threw fails.

    Assertions see what the page shows; an exception thrown in a handler the test does not look at (a frame
    type the page mishandles, a click after the state changed) would pass unseen.
    """

    def __init__(self, browser: object) -> None:
        self.browser = browser
        self.errors: list[str] = []

    def new_context(self, **options: object) -> object:
        context = self.browser.new_context(**options)
        context.on("weberror", lambda error: self._note(error.page, error.error))
        return context

    def new_page(self, **options: object) -> object:
        page = self.browser.new_page(**options)  # blank until it goes somewhere: nothing can throw before this
        page.on("pageerror", lambda error: self._note(page, error))
        return page

    def _note(self, page: object, error: object) -> None:
        self.errors.append(f"{page.url if page else '?'}: {error}")

    def __getattr__(self, name: str) -> object:
        return getattr(self.browser, name)


@pytest.fixture
def browser(chromium):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        watched = ErrorWatchingBrowser(launched)
        yield watched
        launched.close()
    assert not watched.errors, "uncaught script errors in the page:\n" + "\n".join(watched.errors)


def test_an_uncaught_script_error_is_noted(chromium):
    from playwright.sync_api import sync_playwright

    throws = "<script>setTimeout(() => { throw new Error('%s') })</script>"
    with sync_playwright() as playwright:
        watched = ErrorWatchingBrowser(playwright.chromium.launch(executable_path=chromium, headless=True))
        page = watched.new_page()
        page.set_content(throws % "from a page of its own")
        in_context = watched.new_context().new_page()
        in_context.set_content(throws % "from a page of a context")
        page.wait_for_timeout(300)
        watched.close()
    assert len(watched.errors) == 2
    assert "from a page of its own" in watched.errors[0] and "from a page of a context" in watched.errors[1]


@pytest.mark.timeout(300)
@pytest.mark.django_db(transaction=True)
def test_sign_up_talk_rate_and_come_back(browser, server, test_output, monkeypatch):
    # Playwright's sync API keeps an event loop in this thread; the ORM calls
    # below are plain blocking checks between browser steps.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))

    page.goto(f"{server}/accounts/signup/")
    page.fill("#id_username", "amy")
    page.fill("#id_password1", "Farrah-Fowler-42")
    page.fill("#id_password2", "Farrah-Fowler-42")
    page.click("button[type=submit]")
    page.wait_for_url(f"{server}/")

    page.fill("#message-input", HOSTILE)
    page.keyboard.press("Enter")
    page.wait_for_selector(".message-bot.status-streaming", timeout=20000)
    assert page.is_visible("#stop-button")  # Stop is offered while the reply streams
    page.wait_for_selector(".message-bot.status-done", timeout=30000)
    page.wait_for_url(f"{server}/c/*/")

    reply = Message.objects.get(role="bot", conversation__owner__username="amy")
    assert reply.status == "done"
    assert page.text_content(".message-bot .message-text") == reply.text
    assert page.text_content(".message-user .message-text") == HOSTILE.strip()
    assert page.locator(".message-list img, .message-list script").count() == 0 and not dialogs
    assert page.text_content("#conversation-title") == reply.conversation.title
    assert page.is_hidden("#stop-button")

    page.click(".message-bot .rate[data-score='5']")
    page.wait_for_selector(".message-bot .rate[data-score='5'][aria-pressed='true']")
    assert Rating.objects.get(message=reply).score == 5
    page.screenshot(path=str(test_output / "chat-desktop.png"))

    page.reload()
    page.wait_for_selector(".message-bot.status-done")
    assert page.text_content(".message-bot .message-text") == reply.text
    assert page.text_content(".message-user .message-text") == HOSTILE.strip()
    assert page.get_attribute(".message-bot .rate[data-score='5']", "aria-pressed") == "true"
    assert page.is_visible(".message-bot .regenerate")

    # A reply that used a scripted line shows it with its episode.
    question = reply.conversation.messages.create(role="user", text="What did you say in the pilot?")
    reply.conversation.messages.create(
        role="bot", reply_to=question, status="done", text="I said it then and I say it now.",
        retrieved_text="I'm a physicist. I have a working knowledge of the entire universe.",
        retrieved_score=0.94, retrieved_episode="Series 01 Episode 01 – Pilot Episode", retrieved_scene=3,
    )
    page.reload()
    page.wait_for_selector(".retrieved")
    assert "entire universe" in page.text_content(".retrieved blockquote")
    assert "Pilot Episode, scene 3" in page.text_content(".retrieved figcaption")

    # A phone-sized screen: the conversation list folds into a drawer.
    phone = browser.new_page(viewport=PHONE, storage_state=page.context.storage_state())
    phone.goto(f"{server}/c/{reply.conversation_id}/")
    phone.wait_for_selector(".retrieved")
    assert phone.is_hidden("#sidebar") or phone.locator("#sidebar").bounding_box()["x"] < 0
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    phone.screenshot(path=str(test_output / "chat-phone.png"))
    phone.click("#sidebar-toggle")
    phone.wait_for_timeout(300)
    assert phone.locator("#sidebar").bounding_box()["x"] >= 0
    assert Conversation.objects.filter(owner__username="amy").count() == 1
