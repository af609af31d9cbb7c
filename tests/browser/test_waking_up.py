"""Ready means ready: models load at start, the page says when Sheldon is still waking up, run.sh's checks.

The embedded mode (no REDIS_URL) is started for real: daphne loads the models
on a background thread as it starts, `scripts/readiness.py wait` returns only
once /api/status/ says they are loaded, and a reply then comes from the web
process itself. The "waking up" notice is checked against the live stack with
the models' status held at "loading" in the shared cache (Redis).
"""

import os
import socket
import subprocess
import sys
import time

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache

from chat.models import Message
from chat.warmup import STATUS_KEY

from ..chat.live import REPO, live_stack  # noqa: F401  (a fixture)
from .test_chat_features import logged_in_page, wait_for_reply
from .test_chat_page import browser, chromium  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.timeout(300), pytest.mark.django_db(transaction=True)]
READINESS = [sys.executable, str(REPO / "scripts" / "readiness.py")]
NOBODY = "test-waking-up-nobody-listens"


@pytest.fixture
def sheldon(monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # ORM checks between browser steps
    return get_user_model().objects.create_user("sheldon", password="Bazinga-73-Bazinga")


def test_a_taken_port_gets_a_clear_message():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([*READINESS, "port-free", "127.0.0.1", str(port)], capture_output=True, text=True)
    assert result.returncode == 1
    assert (
        f"Port {port} on 127.0.0.1 is already in use" in result.stderr and f"PORT={port + 1} make run" in result.stderr
    )
    assert subprocess.run([*READINESS, "port-free", "127.0.0.1", str(port)]).returncode == 0  # free again


def test_embedded_mode_loads_the_models_at_start_and_is_ready_before_the_first_message(
    browser,  # noqa: F811
    live_stack,  # noqa: F811
    sheldon,
    tmp_path,
):
    env = {key: value for key, value in live_stack.env.items() if key not in ("REDIS_URL", "GENERATION_QUEUE")}
    env["VAR_DIR"] = str(tmp_path)
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"], cwd=REPO, env=env, check=True
    )
    since = time.time()
    process, port = live_stack.spawn_server(env, tmp_path / "daphne.log")
    try:
        waited = subprocess.run(
            [*READINESS, "wait", "127.0.0.1", str(port), str(since)], capture_output=True, text=True, timeout=120
        )
        assert waited.returncode == 0, (waited.stdout, waited.stderr, (tmp_path / "daphne.log").read_text())
        assert "Models loaded" in waited.stdout
        # The load's time is kept as the estimate for the next start's progress bar.
        assert float((tmp_path / "warmup-seconds").read_text()) > 0

        server = f"http://127.0.0.1:{port}"
        page = logged_in_page(browser, server, sheldon, viewport={"width": 1280, "height": 800})
        page.goto(f"{server}/")
        page.fill("#message-input", "Are you awake?")
        page.press("#message-input", "Enter")
        wait_for_reply(page, 1)
        assert page.is_hidden("#waking-up")
        reply = Message.objects.get(role="bot", conversation__owner=sheldon)
        assert reply.status == "done" and reply.text
        # Loaded before the message came: the reply did not wait for the models.
        assert reply.warmup_seconds is not None and reply.warmup_seconds < float(
            (tmp_path / "warmup-seconds").read_text()
        )
    finally:
        process.kill()
        process.wait(timeout=10)


def test_the_page_says_sheldon_is_waking_up_until_the_models_are_loaded(
    browser,  # noqa: F811
    live_stack,  # noqa: F811
    sheldon,
    tmp_path,
    test_output,
):
    # A web process whose replies nobody takes yet, while the workers' report says "loading".
    env = {**live_stack.env, "GENERATION_QUEUE": NOBODY}
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"], cwd=REPO, env=env, check=True
    )
    process, server = live_stack.start_server(env, tmp_path / "daphne.log")
    cache.set(
        STATUS_KEY,
        {"state": "loading", "step": 1, "started": time.time() - 12, "expected_seconds": 40.0, "error": ""},
        timeout=None,
    )
    try:
        page = logged_in_page(browser, server, sheldon, viewport={"width": 1280, "height": 800})
        page.goto(f"{server}/")
        page.fill("#message-input", "Hello?")
        page.press("#message-input", "Enter")
        page.wait_for_selector("#waking-up:not([hidden])")
        assert "Sheldon is waking up…" in page.inner_text("#waking-up")
        detail = page.inner_text("#waking-up-detail")
        assert "loading the models (step 2 of 3)" in detail and "of about 40 s" in detail
        assert 25 <= page.evaluate("document.querySelector('#waking-up-progress').value") <= 95
        page.screenshot(path=str(test_output / "waking-up.png"))  # its seconds differ each run: not in docs/

        # Loaded: the notice goes, and the reply is still waiting its turn.
        cache.set(
            STATUS_KEY,
            {"state": "ready", "step": 2, "started": time.time() - 30, "expected_seconds": 40.0, "error": ""},
            timeout=None,
        )
        page.wait_for_selector("#waking-up", state="hidden", timeout=5000)
        assert Message.objects.get(role="bot", conversation__owner=sheldon).status == "queued"
        page.click("#stop-button")
        page.wait_for_selector(".message-bot.status-stopped")
    finally:
        cache.delete(STATUS_KEY)
        process.kill()
        process.wait(timeout=10)
    assert os.environ.get("REDIS_URL")  # the report went through the shared cache
