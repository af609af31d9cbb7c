"""The load benchmark's client against a real daphne: a reply whose last frame never came is read again.

The fault is made as it happens: the reply ends in the database and its `reply_done` frame never reaches
the socket (a channel layer delivers at most once). The benchmark must then read the reply, as the page
does, and say so in its summary; before, it waited out its 600 s timeout and counted an error.
"""
import asyncio
import threading
import time
import uuid
from argparse import Namespace

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from bench.load import BENCH_PASSWORD, run
from chat.models import Message

from ..chat.live import live_stack  # noqa: F401  (a fixture)

pytestmark = [pytest.mark.timeout(120), pytest.mark.django_db(transaction=True)]

END = "I'm not crazy. My mother had me tested."


@pytest.fixture
def server_without_worker(live_stack):  # noqa: F811
    """A daphne whose replies go to a queue no worker reads: a reply ends only when the test ends it."""
    env = {**live_stack.env, "GENERATION_QUEUE": f"nobody-{uuid.uuid4().hex[:8]}"}
    process, url = live_stack.start_server(env)
    yield url
    live_stack.stop(process)


def test_a_reply_whose_last_frame_never_came_is_read_again(server_without_worker):
    get_user_model().objects.create_user("bench-0", password=BENCH_PASSWORD)
    args = Namespace(
        target="stack", url=[server_without_worker], users=1, messages=1, timeout=60, read_again_seconds=1
    )
    reports = []
    client = threading.Thread(target=lambda: reports.append(asyncio.run(run(args))))
    client.start()

    deadline = time.monotonic() + 30
    while not Message.objects.filter(role=Message.Role.BOT).exists():
        assert time.monotonic() < deadline, "the message was never sent"
        time.sleep(0.2)
    time.sleep(2.5)  # the client reads again at least once while the reply is queued, and keeps waiting
    assert client.is_alive(), reports and reports[0].outcomes
    # The worker ends the reply; its frame is lost on the way.
    Message.objects.filter(role=Message.Role.BOT).update(status=Message.Status.DONE, text=END, updated=timezone.now())
    client.join(timeout=30)

    summary = reports[0].summary()
    assert summary["errors"] == 0, summary["error_samples"]
    assert summary["replies"] == 1 and summary["replies_read_again"] == 1
    assert reports[0].outcomes[0].text == END
    assert reports[0].outcomes[0].reply_s < 30, "well before the 60 s timeout"
