"""End to end in Debian's Chromium: staff log in to the admin, rate an item blind, see the scoreboard change.

The admin is served by a real daphne process over the test database. The
screenshot of docs/screenshots/compare.png is taken here.
"""

import subprocess
import sys

import pytest
from django.contrib.auth.models import User

from review.comparison import load_sheet
from review.models import ComparisonRating
from training.blind import Item, write_sheet

from ..chat.live import REPO, LiveStack
from .test_chat_page import browser, chromium  # noqa: F401  (fixtures)

PASSWORD = "Cooper-73-Bazinga"


@pytest.fixture
def admin_server(django_db_setup, redis_url, tmp_path):
    """daphne alone: the compare page needs no worker."""
    stack = LiveStack(redis_url, "unused", tmp_path)
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"], cwd=REPO, env=stack.env, check=True
    )
    process, url = stack.start_server()
    yield url
    stack.stop(process)


@pytest.mark.timeout(180)
# Fresh ids each run: the item's number and the candidates' order (seeded by the ids) stay those of the screenshot.
@pytest.mark.django_db(transaction=True, reset_sequences=True)
def test_staff_rate_an_item_and_the_scoreboard_changes(  # noqa: F811
    browser, admin_server, tmp_path, test_output, monkeypatch
):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # ORM checks between browser steps
    items = [
        Item(1, "Episode", 3, (("Leonard", "Penny, this is Sheldon's spot."),), ("Penny", "Can I sit here?"), "No."),
        Item(2, "Episode", 4, (), ("Howard", "Want to see my magic trick?"), "I do not."),
    ]
    replies = {
        "scripted": [
            "No. That is my spot. In an ever-changing world, it is a single point of consistency.",
            "I do not.",
        ],
        "model-v2": ["Of course, sit wherever you like.", "Magic is not real."],
    }
    write_sheet(tmp_path / "sheet", items, replies, seed=1)
    load_sheet(tmp_path / "sheet", "demo-sheet")
    User.objects.create_superuser("amy", password=PASSWORD)

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{admin_server}/admin/login/?next=/admin/review/compare/scoreboard/")
    page.fill("#id_username", "amy")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#scoreboard")
    assert "No ratings yet" in page.text_content("#scoreboard")

    page.click("text=Compare replies")
    page.wait_for_selector("#dialogue")
    assert "Can I sit here? <- the last line" in page.text_content("#dialogue")
    assert "2 items left for you" in page.text_content("#left")
    assert "model-v2" not in page.content()  # blind
    fieldsets = page.locator("fieldset.candidate")
    assert fieldsets.count() == 2
    for index in range(2):
        fieldset = fieldsets.nth(index)
        scripted = "single point" in fieldset.text_content()
        for scale in ("sense", "character", "fit"):
            fieldset.locator(f"input[name$='-{scale}'][value='{5 if scripted else 2}']").check()
        if not scripted:
            fieldset.locator("input[name$='-bad']").check()
    page.screenshot(path=str(REPO / "docs" / "screenshots" / "compare.png"), full_page=True)
    page.click("#save-next")
    page.wait_for_selector("text=Want to see my magic trick?")
    assert "1 item left for you" in page.text_content("#left")
    assert ComparisonRating.objects.filter(rater__username="amy").count() == 2

    page.goto(f"{admin_server}/admin/review/compare/scoreboard/")
    page.wait_for_selector("#scoreboard")
    scripted_row = page.text_content("tr[data-system='scripted']")
    model_row = page.text_content("tr[data-system='model-v2']")
    assert "5.00" in scripted_row and "1.00" in scripted_row  # sense 5, good 1.00
    assert "2.00" in model_row and "1.00" in model_row  # sense 2, flagged 1.00
    page.screenshot(path=str(test_output / "compare-scoreboard.png"), full_page=True)
