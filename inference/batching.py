"""Dynamic batching: replies requested at about the same time are generated together.

A worker runs many task threads (Celery's threads pool); each hands its
request to the process's one engine (`submit`) and, while it waits, saves
and sends what has been generated so far (`chat.generation.ReplyStream`). The engine's thread takes the
first waiting request, gathers those that arrive within BATCH_WINDOW_MS (up
to BATCH_MAX_SIZE), and generates them in one padded batch through
`Replier.reply_many`, streaming each reply to its own callbacks. A stop
requested for one reply, or a failing callback, ends only that row.
"""
import logging
import queue
import sys
import threading
import time
from concurrent.futures import Future

from django.conf import settings
from django.db import close_old_connections

from .replier import ReplyRequest, get_replier

logger = logging.getLogger(__name__)

_engine = None
_engine_lock = threading.Lock()


class BatchingEngine:
    def __init__(self, replier, window_seconds, max_batch):
        self.replier = replier
        self.window_seconds = window_seconds
        self.max_batch = max_batch
        self.batch_sizes = []  # of every batch generated, for tests and benchmarks
        self._waiting = queue.Queue()
        # The engine's thread gives up the GIL inside every torch operation; with
        # many task threads around, Python's default 5 ms switch interval makes
        # it wait that long to get it back, many times per step (measured: a
        # batch of 16 ran 1.2x faster at 0.5 ms beside 16 busy threads).
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.0005))
        self._thread = threading.Thread(target=self._run, name="batching-engine", daemon=True)
        self._thread.start()

    def submit(self, history, message, on_piece=None, should_stop=None):
        """Queue a request; a Future of its Reply, generated in a batch with the requests around it.

        The callbacks run on the engine's thread, between generation steps:
        they must be quick (no database or network), or they hold up the batch.
        """
        future = Future()
        self._waiting.put((ReplyRequest(history, message, on_piece, should_stop), future))
        return future

    def reply(self, history, message, on_piece=None, should_stop=None):
        """Like `Replier.reply`: the Reply, once generated."""
        return self.submit(history, message, on_piece, should_stop).result()

    def _gather(self):
        batch = [self._waiting.get()]
        deadline = time.monotonic() + self.window_seconds
        while len(batch) < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                batch.append(self._waiting.get(timeout=remaining) if remaining > 0 else self._waiting.get_nowait())
            except queue.Empty:
                break
        return batch

    def _run(self):
        while True:
            batch = self._gather()
            self.batch_sizes.append(len(batch))
            rows = [_GuardedRequest(request) for request, _ in batch]
            try:
                replies = self.replier.reply_many([row.request for row in rows])
            except Exception as error:  # every waiting task learns why; the engine goes on
                logger.exception("A batch of %d replies failed", len(batch))
                replies = [error] * len(batch)
            finally:
                # The callbacks write to the database from this thread: give its
                # connection back between batches, as Django does between requests.
                close_old_connections()
            for (_, future), row, reply in zip(batch, rows, replies):
                outcome = row.error or reply
                if isinstance(outcome, Exception):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)


class _GuardedRequest:
    """A request whose failing callback ends its own row, not the whole batch."""

    def __init__(self, request):
        self.original = request
        self.error = None
        self.request = ReplyRequest(request.history, request.message, self._on_piece, self._should_stop)

    def _on_piece(self, text):
        if self.error is None and self.original.on_piece is not None:
            try:
                self.original.on_piece(text)
            except Exception as error:
                self.error = error

    def _should_stop(self):
        if self.error is None and self.original.should_stop is not None:
            try:
                return bool(self.original.should_stop())
            except Exception as error:
                self.error = error
        return self.error is not None


def get_engine():
    """The process's engine, started on first use around the process's replier."""
    global _engine
    with _engine_lock:
        if _engine is None:
            _engine = BatchingEngine(
                get_replier(), settings.BATCH_WINDOW_MS / 1000, max(1, settings.BATCH_MAX_SIZE)
            )
        return _engine
