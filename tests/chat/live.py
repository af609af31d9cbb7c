"""The real stack for the chat tests: a Celery worker process and a daphne server.

Both run as subprocesses against the pytest-django test database (so tests
that use them are transactional: the processes only see committed rows) and
the real Redis broker and channel layer. Each fixture instance gets its own
queue name, so no other worker on this machine takes its tasks.
"""
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
# The tiny generator writes 40 tokens, each held back this long (see
# worker_app.py), so a reply takes about two and a half seconds: time for a
# stop, a reload or a killed worker to land in the middle of it.
MAX_NEW_TOKENS = 40
TOKEN_DELAY_SECONDS = 0.06
STALE_SECONDS = 5


UNTHROTTLED = {"LOGIN_RATE_LIMIT": "1000000/1", "LOGIN_USER_RATE_LIMIT": "1000000/1", "SIGNUP_RATE_LIMIT": "1000000/1"}


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url():
    settings = connection.settings_dict
    return f"postgres://{settings['USER']}@{settings['HOST']}:{settings['PORT']}/{settings['NAME']}"


class LiveStack:
    """Environment and processes shared by one test session."""

    def __init__(self, redis_url, generator_folder, var_dir):
        self.queue = f"test-chat-{uuid.uuid4().hex[:8]}"
        self.log_dir = var_dir
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "sheldonsite.settings",
            "DATABASE_URL": database_url(),
            "REDIS_URL": redis_url,
            "VAR_DIR": str(var_dir),
            # This process's key, so the sessions it makes are valid in the processes it starts.
            "SECRET_KEY": django_settings.SECRET_KEY,
            # Tests log in and sign up from one address, over and over: no throttles here
            # (tests/faults/test_account_abuse.py tests them).
            **UNTHROTTLED,
            "GENERATION_QUEUE": self.queue,
            "GENERATOR_MODEL": str(generator_folder),
            "GENERATOR_ADAPTER": "none",
            "RETRIEVER_MODEL": "none",
            "MAX_NEW_TOKENS": str(MAX_NEW_TOKENS),
            # One candidate streams token by token: these tests land stops, reloads and faults mid-stream.
            # Sample-and-rank (a reply sent once chosen) is tested in tests/inference and tests/serving.
            "REPLY_CANDIDATES": "1",
            "REPLY_MAX_SENTENCES": "0",
            "CHAT_REPLY_STALE_SECONDS": str(STALE_SECONDS),
            "TEST_TOKEN_DELAY_SECONDS": str(TOKEN_DELAY_SECONDS),
            "INFERENCE_THREADS": "1",
            "PYTHONPATH": str(REPO),
        }
        self.worker = None
        self.workers_started = 0

    def start_worker(self):
        """A fresh worker process on the session's queue; returns once it is ready for tasks."""
        self.worker = self.spawn_worker(self.queue)

    def spawn_worker(self, queue, **env):
        """A worker process consuming `queue` (its sweep resends there), ready for tasks; the caller stops it."""
        self.workers_started += 1
        log = open(self.log_dir / f"worker-{self.workers_started}.log", "w")
        worker = subprocess.Popen(
            [str(VENV_BIN / "celery"), "-A", "tests.chat.worker_app", "worker", "-Q", queue,
             "--pool", "threads", "--concurrency", "4", "-n", f"{queue}-{self.workers_started}@%h",
             "--without-gossip", "--without-mingle", "--loglevel", "INFO"],
            cwd=REPO, env={**self.env, "GENERATION_QUEUE": queue, **env}, stdout=log, stderr=subprocess.STDOUT,
        )
        self._wait_for_log(log.name, "ready.", worker, timeout=90)
        worker.node = f"{queue}-{self.workers_started}@{socket.gethostname()}"  # Celery's %h
        return worker

    def kill_worker(self):
        """SIGKILL: the worker dies at once, mid-task, acknowledging nothing."""
        self.stop(self.worker)

    def start_server(self, env=None, log_path=None):
        """A daphne (on this stack's settings, or `env`), returned once it takes connections, with its URL."""
        log_path = log_path or self.log_dir / "daphne.log"
        server, port = self.spawn_server(env or self.env, log_path)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and server.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return server, f"http://127.0.0.1:{port}"
            except OSError:
                time.sleep(0.2)
        self.stop(server)
        raise RuntimeError("daphne did not start:\n" + Path(log_path).read_text())

    @staticmethod
    def spawn_server(env, log_path):
        """A daphne process on a free port, not waited for; the caller stops it."""
        port = free_port()
        server = subprocess.Popen(
            [str(VENV_BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "sheldonsite.asgi:application"],
            cwd=REPO, env=env, stdout=open(log_path, "w"), stderr=subprocess.STDOUT,
        )
        return server, port

    @staticmethod
    def _wait_for_log(path, text, process, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            content = Path(path).read_text()
            if text in content:
                return
            if process.poll() is not None:
                raise RuntimeError(f"The process exited:\n{content}")
            time.sleep(0.2)
        raise RuntimeError(f"Timed out waiting for {text!r}:\n{Path(path).read_text()}")

    @staticmethod
    def stop(process):
        # Killed, not shut down: nothing is left for it to finish, and the
        # test database can only be dropped once its connections are gone.
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def live_stack(django_db_setup, redis_url, tiny_chat, tmp_path_factory):
    """A worker on the session's own queue (restarted by tests that kill it)."""
    stack = LiveStack(redis_url, tiny_chat, tmp_path_factory.mktemp("live-stack"))
    stack.start_worker()
    yield stack
    stack.stop(stack.worker)


@pytest.fixture
def live_settings(settings, live_stack):
    """This process queues on the live worker's queue and judges staleness like it."""
    settings.GENERATION_QUEUE = live_stack.queue
    settings.CHAT_REPLY_STALE_SECONDS = STALE_SECONDS
    settings.MAX_NEW_TOKENS = MAX_NEW_TOKENS
    settings.REPLY_CANDIDATES, settings.REPLY_MAX_SENTENCES = 1, 0  # as the live worker: replies stream
    return settings
