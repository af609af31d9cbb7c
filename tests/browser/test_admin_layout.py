"""Staff pages at 1280 px: lists fit without sideways scrolling; model names short, the full path on hover."""

import pytest
from django.contrib.auth import get_user_model

from chat.models import Conversation, Rating
from review.models import ReviewLabel

from ..chat.live import live_stack  # noqa: F401  (fixtures)
from .test_chat_features import DESKTOP, logged_in_page, server  # noqa: F401  (fixtures)
from .test_chat_page import browser, chromium  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.timeout(300), pytest.mark.django_db(transaction=True)]
LONG_MODEL = "/home/someone/projects/sheldon-chat/var/models/SmolLM2-135M-Instruct.Q4_1.gguf"
LISTS = (
    "/admin/chat/message/",
    "/admin/chat/conversation/",
    "/admin/chat/rating/",
    "/admin/review/reviewlabel/",
    "/admin/review/overview/",
)


def test_admin_lists_fit_1280_px_and_name_models_short(browser, server, monkeypatch):  # noqa: F811
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    users = get_user_model().objects
    staff = users.create_superuser("reviewer", password="Review-all-the-things-1")
    penny = users.create_user("penny_with_a_rather_long_user_name")
    conversation = Conversation.objects.create(owner=penny, title="A rather long title about " + "trains " * 20)
    question = conversation.messages.create(role="user", text="Tell me everything about trains. " * 10)
    reply = conversation.messages.create(
        role="bot",
        reply_to=question,
        text="Trains are the pinnacle of engineering. " * 10,
        profile="offline",
        generator_model=LONG_MODEL,
        retriever_model="/home/someone/projects/sheldon-chat/var/models/all-MiniLM-L6-v2",
        retrieved_score=0.93,
        seconds=1.2,
        waited_seconds=3.4,
    )
    Rating.objects.create(message=reply, user=penny, score=4, comment="A comment that goes on and on. " * 8)
    ReviewLabel.objects.create(message=reply, label="great", note="A note that is long. " * 10, author=staff)

    page = logged_in_page(browser, server, staff, viewport=DESKTOP)
    pages = (
        *LISTS,
        f"/admin/chat/message/{reply.pk}/change/",
        f"/admin/review/conversations/{conversation.pk}/transcript/",
    )
    for path in pages:
        page.goto(f"{server}{path}")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= DESKTOP["width"], f"{path} is {width} px wide"

    page.goto(f"{server}/admin/chat/message/")
    model = page.locator(f'span[title="{LONG_MODEL}"]')
    assert model.inner_text() == "offline · SmolLM2-135M-Instruct.Q4_1"
    assert LONG_MODEL not in page.inner_text("#result_list")  # only on hover
