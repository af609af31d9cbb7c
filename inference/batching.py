"""Dynamic batching: replies requested at about the same time are generated together.

A worker runs many task threads (Celery's threads pool); each hands its
request to the process's one engine (`submit`, which also retrieves and
builds the prompt in that thread) and, while it waits, saves and sends what
has been generated so far (`chat.generation.ReplyStream`). The engine's
thread only generates: it keeps one running `ReplyBatch`. When it is idle, it
takes the first waiting request and those that arrive within
BATCH_WINDOW_MS; while it runs, requests that arrive join it between two
generation steps (continuous batching, for chat models; a seq2seq batch
takes them once its generate call is over), up to BATCH_MAX_SIZE rows. Each
reply streams to its own callbacks and leaves as soon as it is done; a stop
requested for one reply, or a failing callback, ends only that reply's rows.

A request is sampled as several candidates (sample-and-rank), as many as the
rows allow: BATCH_MAX_SIZE shared among the requests in progress, at most
REPLY_CANDIDATES each. One person alone gets the full choice; at 16 people
each request gets one row, and serving stays as fast as without ranking.
"""
import logging
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future

from django.conf import settings

from .replier import Replier, Reply, RequestState, Turn, get_replier

logger = logging.getLogger(__name__)

_engine = None
_engine_lock = threading.Lock()


class EngineStats:
    """What the engine did since its last report (as vLLM logs its throughput every few seconds).

    The rows a step runs on average tell how full the batch is kept: a step of one row costs nearly
    what a step of sixteen does on the CPU, so an engine that steps half-empty batches wastes the cores.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.since = time.monotonic()
        self.steps = 0
        self.rows = 0  # summed over the steps
        self.stepping_seconds = 0.0
        self.replies = 0
        self.new_tokens = 0

    def record_step(self, rows: int, seconds: float, finished: list[RequestState]) -> None:
        self.steps += 1
        self.rows += rows
        self.stepping_seconds += seconds
        self.replies += len(finished)
        self.new_tokens += sum(request.new_tokens for request in finished)

    def report(self) -> str:
        """One line of the figures since the last report; starts the next period."""
        elapsed = max(time.monotonic() - self.since, 1e-9)
        line = (
            f"Engine, last {elapsed:.1f} s: {self.replies} replies ({self.replies / elapsed:.1f}/s), "
            f"{self.new_tokens} generated tokens ({self.new_tokens / elapsed:.1f}/s), "
            f"{self.steps} steps of {self.rows / max(self.steps, 1):.1f} rows on average, "
            f"stepping {self.stepping_seconds / elapsed:.0%} of the time"
        )
        self.reset()
        return line


class BatchingEngine:
    def __init__(
        self, replier: Replier, window_seconds: float, max_batch: int, stats_seconds: float = 0.0
    ) -> None:
        self.replier = replier
        self.window_seconds = window_seconds
        self.max_batch = max_batch
        # How many requests started together, each time (the latest 1,000), for tests and benchmarks.
        self.batch_sizes = deque(maxlen=1000)
        self.stats = EngineStats()
        self.stats_seconds = stats_seconds  # how often the stats are logged while the engine works; 0: never
        self._waiting = queue.Queue()
        self._in_progress = 0  # requests submitted and not yet answered
        self._in_progress_lock = threading.Lock()
        # The engine's thread gives up the GIL inside every torch operation; with
        # many task threads around, Python's default 5 ms switch interval makes
        # it wait that long to get it back, many times per step (measured: a
        # batch of 16 ran 1.2x faster at 0.5 ms beside 16 busy threads).
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.0005))
        self._thread = threading.Thread(target=self._run, name="batching-engine", daemon=True)
        self._thread.start()

    def submit(
        self, history: list[Turn], message: str, on_piece: Callable[[str], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> Future:
        """Queue a request; a Future of its Reply, generated in a batch with the requests around it.

        Retrieval and the prompt are done here, in the caller's thread, so the
        engine's thread only generates. The callbacks run on the engine's
        thread, between generation steps: they must be quick (no database or
        network), or they hold up the batch. One that raises ends its own
        request only, and the Future raises its error.
        """
        request = RequestState(history, message, on_piece, should_stop)
        with self._in_progress_lock:
            self._in_progress += 1
        try:
            self.replier.prepare([request])
        except BaseException:
            self._answered()
            raise
        future = Future()
        future.add_done_callback(lambda _: self._answered())
        self._waiting.put((request, future))
        return future

    def candidates_for(self, in_progress: int) -> int:
        """Candidates to sample for a request when `in_progress` requests share the rows.

        Decided when the request joins the batch, not when it is submitted: the first request of a burst
        then sees the whole burst waiting behind it."""
        return max(1, min(self.replier.max_candidates, self.max_batch // max(1, in_progress)))

    def _answered(self) -> None:
        with self._in_progress_lock:
            self._in_progress -= 1

    def reply(
        self, history: list[Turn], message: str, on_piece: Callable[[str], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> Reply:
        """Like `Replier.reply`: the Reply, once generated."""
        return self.submit(history, message, on_piece, should_stop).result()

    def _arrivals(self, running: int) -> list[tuple[RequestState, Future]]:
        """The requests to start now: those waiting, while there are rows left in the batch.

        An idle engine waits for a first request, then BATCH_WINDOW_MS for company. Each arrival
        then gets its candidates (`candidates_for` the requests in progress, within the rows left), a row each.
        """
        arrivals = []
        if not running:
            self._report_stats(idle=True)
            arrivals.append(self._waiting.get())
            self.stats.reset()  # the next period starts with work, not with the wait for it
            deadline = time.monotonic() + self.window_seconds
            while (remaining := deadline - time.monotonic()) > 0 and self._has_room(running, arrivals):
                try:
                    arrivals.append(self._waiting.get(timeout=remaining))
                except queue.Empty:
                    break
        while self._has_room(running, arrivals):
            try:
                arrivals.append(self._waiting.get_nowait())
            except queue.Empty:
                break
        candidates = self.candidates_for(self._in_progress)
        if arrivals:
            # Rows already running may hold an earlier request's several candidates: what is left is shared,
            # so a step never runs more than max_batch rows (_has_room leaves at least one each).
            candidates = min(candidates, (self.max_batch - running) // len(arrivals))
        for request, _ in arrivals:
            request.candidates = candidates
        return arrivals

    def _has_room(self, running: int, arrivals: list[tuple[RequestState, Future]]) -> bool:
        return running + len(arrivals) < self.max_batch

    def _run(self) -> None:
        batch, futures = None, {}  # futures: id(request) -> Future
        while True:
            arrivals = self._arrivals(len(batch) if batch is not None else 0)
            # A Future cancelled while it waited is dropped; the others can no longer be cancelled, so
            # answering them below cannot fail (InvalidStateError would end this thread for every request).
            arrivals = [(request, future) for request, future in arrivals if future.set_running_or_notify_cancel()]
            futures.update((id(request), future) for request, future in arrivals)
            try:
                if batch is None:
                    batch = self.replier.open_batch()
                started = time.perf_counter()
                if arrivals:
                    self.batch_sizes.append(len(arrivals))
                    batch.add([request for request, _ in arrivals])
                rows = len(batch)
                finished = batch.step()
                self.stats.record_step(rows, time.perf_counter() - started, finished)
            except Exception as error:
                # Not a bad request (those are refused in submit) but the model or the machine:
                # the batch's state is not to be trusted. Every reply in it learns why, and the
                # engine goes on with a new batch.
                logger.exception("A batch of %d replies failed", len(futures))
                for future in futures.values():
                    future.set_exception(error)
                if batch is not None:
                    batch.abandon()
                batch, futures = None, {}
                continue
            for request in finished:
                future = futures.pop(id(request))
                if request.error is not None:
                    future.set_exception(request.error)
                else:
                    future.set_result(request.reply)
            self._report_stats()

    def _report_stats(self, idle: bool = False) -> None:
        """Log the stats every `stats_seconds` while the engine works, and what is left of them when it goes idle."""
        due = idle or time.monotonic() - self.stats.since >= self.stats_seconds
        if self.stats_seconds and self.stats.steps and due:
            logger.info(self.stats.report())


def get_engine() -> BatchingEngine:
    """The process's engine, started on first use around the process's replier."""
    global _engine
    with _engine_lock:
        if _engine is None:
            _engine = BatchingEngine(
                get_replier(), settings.BATCH_WINDOW_MS / 1000, max(1, settings.BATCH_MAX_SIZE),
                stats_seconds=settings.ENGINE_STATS_SECONDS,
            )
        return _engine
