"""Real processes for the fault suite: a Redis server of its own, workers, a TCP proxy to PostgreSQL.

The shared PostgreSQL and Redis on 5432/6379 are used by others and are
never stopped here: Redis faults use a redis-server this suite starts on a
port of 6391-6399, PostgreSQL faults cut a proxy between the processes and
the database.
"""

import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from django.db import connection
from kombu import Connection

from chat.models import Conversation, Message
from tests.chat.live import LiveStack

REDIS_PORTS = range(6391, 6400)


def port_free(port):
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


class RedisServer:
    """A redis-server without persistence: a restart loses whatever it held, like a crash."""

    def __init__(self, folder):
        self.port = next((port for port in REDIS_PORTS if port_free(port)), None)
        if self.port is None:
            pytest.skip("No free port in 6391-6399 for the suite's own Redis")
        self.folder = folder
        self.process = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        log = open(self.folder / "redis.log", "a")
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while port_free(self.port):
            assert time.monotonic() < deadline and self.process.poll() is None, "redis-server did not start"
            time.sleep(0.05)

    def kill(self):
        self.process.kill()
        self.process.wait(timeout=10)

    def restart(self, down_seconds=1.0):
        self.kill()
        time.sleep(down_seconds)
        self.start()


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory):
    try:
        server = RedisServer(tmp_path_factory.mktemp("redis"))
        server.start()
    except FileNotFoundError:
        pytest.skip("redis-server is not installed")
    yield server
    server.kill()


def send_reply_task(stack, reply_id):
    """Queue the reply's task by name on the stack's broker, as the web process does."""
    from sheldonsite.celery import app

    with Connection(stack.env["REDIS_URL"]) as connection:
        app.send_task("chat.tasks.generate_reply", args=[reply_id], queue=stack.queue, connection=connection)


def queued_reply(user, text="Tell me about the Doppler effect."):
    conversation = Conversation.objects.create(owner=user)
    question = conversation.messages.create(role=Message.Role.USER, text=text)
    return conversation.messages.create(role=Message.Role.BOT, status=Message.Status.QUEUED, reply_to=question)


def wait_for_status(reply_id, statuses, timeout):
    """Seconds until the reply reached one of `statuses`; fails after `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        status = Message.objects.get(pk=reply_id).status
        if status in statuses:
            return time.monotonic() - started
        time.sleep(0.1)
    message = Message.objects.get(pk=reply_id)
    raise AssertionError(f"Reply {reply_id} is still {message.status} after {timeout} s ({message.error})")


def worker_log(stack):
    return Path(stack.log_dir / f"worker-{stack.workers_started}.log").read_text()


@pytest.fixture
def make_stack(django_db_setup, own_redis, tiny_chat, tmp_path):
    """Start a worker on the suite's own Redis (and, with `database_port`, through a proxy); stopped after the test.

    Its replies take about 6 s (40 tokens, 0.15 s each); `env` overrides its settings.
    """
    stacks = []

    def make(database_port=None, **env):
        stack = LiveStack(own_redis.url, tiny_chat, tmp_path / f"stack-{len(stacks)}")
        stack.log_dir.mkdir()
        stack.queue = f"test-faults-{uuid.uuid4().hex[:8]}"
        stack.env.update(GENERATION_QUEUE=stack.queue, TEST_TOKEN_DELAY_SECONDS="0.15", **env)
        if database_port:
            stack.env["DATABASE_URL"] = stack.env["DATABASE_URL"].replace(
                f":{connection.settings_dict['PORT']}/", f":{database_port}/"
            )
        stacks.append(stack)
        stack.start_worker()
        return stack

    yield make
    for stack in stacks:
        if stack.worker is not None:
            stack.stop(stack.worker)


@pytest.fixture
def fault_stack(make_stack):
    return make_stack()
