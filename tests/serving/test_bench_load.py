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
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth import get_user_model
from django.utils import timezone

from bench.load import BENCH_PASSWORD, run
from chat.frames import reply_done_frame, token_frame
from chat.models import Message
from chat.notify import conversation_group, frame_event

from ..chat.live import live_stack  # noqa: F401  (a fixture)

pytestmark = [pytest.mark.timeout(120), pytest.mark.django_db(transaction=True)]

FIRST = "I'm not crazy. My mother had me tested."
SECOND = "Bazinga!"


@pytest.fixture
def server_without_worker(live_stack):  # noqa: F811
    """A daphne whose replies go to a queue no worker reads: a reply ends only when the test ends it."""
    env = {**live_stack.env, "GENERATION_QUEUE": f"nobody-{uuid.uuid4().hex[:8]}"}
    process, url = live_stack.start_server(env)
    yield url
    live_stack.stop(process)


def wait_for_reply_row(count: int) -> Message:
    deadline = time.monotonic() + 30
    while Message.objects.filter(role=Message.Role.BOT).count() < count:
        assert time.monotonic() < deadline, f"message {count} was never sent"
        time.sleep(0.2)
    return Message.objects.filter(role=Message.Role.BOT).order_by("id").last()


def end_without_a_frame(reply: Message, text: str) -> None:
    """The worker's part: the reply ends in the database, and its last frame is lost on the way."""
    Message.objects.filter(pk=reply.pk).update(status=Message.Status.DONE, text=text, updated=timezone.now())


def test_a_reply_whose_last_frame_never_came_is_read_again(server_without_worker):
    get_user_model().objects.create_user("bench-0", password=BENCH_PASSWORD)
    args = Namespace(
        target="stack", url=[server_without_worker], users=1, messages=2, timeout=60, read_again_seconds=1
    )
    reports = []
    client = threading.Thread(target=lambda: reports.append(asyncio.run(run(args))))
    client.start()

    first = wait_for_reply_row(1)
    time.sleep(2.5)  # the client reads again at least once while the reply is queued, and keeps waiting
    assert client.is_alive(), reports and reports[0].outcomes
    end_without_a_frame(first, FIRST)

    # Read again, the first reply is over and the second message is sent; then the first reply's late frames
    # come after all. They must not end the second exchange.
    second = wait_for_reply_row(2)
    first.refresh_from_db()
    layer_send = async_to_sync(get_channel_layer().group_send)
    layer_send(conversation_group(first.conversation_id), frame_event(token_frame(first.pk, 0, FIRST)))
    layer_send(conversation_group(first.conversation_id), frame_event(reply_done_frame(first)))
    time.sleep(2.5)
    assert client.is_alive(), reports and reports[0].outcomes
    end_without_a_frame(second, SECOND)
    client.join(timeout=30)

    summary = reports[0].summary()
    assert summary["errors"] == 0, summary["error_samples"]
    assert summary["replies"] == 2 and summary["replies_read_again"] == 2 and summary["duplicated_replies"] == 0
    assert [(o.message_id, o.text) for o in reports[0].outcomes] == [(first.pk, FIRST), (second.pk, SECOND)]
    assert all(o.reply_s < 30 for o in reports[0].outcomes), "well before the 60 s timeout"
