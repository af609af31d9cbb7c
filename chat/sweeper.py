"""The periodic sweep of replies nobody will finish (`services.sweep_replies`), one thread per process.

Where it runs, and why there: a loop on a thread of every worker process
(started when the worker is ready) and of every web process (started with
its first socket), not Celery beat. Beat would be one more process to
supervise, and its sweep task would queue behind the very replies it has to
rescue, on workers that may be gone; a loop in the processes that are
already there needs neither. The worker's loop covers the replies of
conversations nobody has open; the web process's covers the time when no
worker runs at all. Every change the sweep makes is conditional, so any
number of sweepers can run together.

The loop survives its own failures: a database or Redis error is logged and
the next round tries again (a sweep that dies on its first error is the
fault it exists to repair).
"""

import logging
import threading

from django.conf import settings
from django.db import connection

from . import frames, services

logger = logging.getLogger(__name__)

_running: tuple[threading.Thread, threading.Event] | None = None  # this process's sweeper and its stop
_lock = threading.Lock()


def sweep_interval() -> float:
    return max(1.0, settings.CHAT_REPLY_STALE_SECONDS / 4)


def sweep_once() -> None:
    """One round: end what is stale, re-send what is lost, tell the pages."""
    try:
        for reply in services.sweep_replies():
            logger.warning("Reply %s failed in the sweep: %s", reply.pk, reply.error)
            frames.send(reply.conversation_id, frames.reply_done_frame(reply))
    finally:
        # A connection per round: one broken by a database restart is not kept.
        connection.close()


def _run(stop: threading.Event) -> None:
    failing = False
    while not stop.is_set():
        try:
            sweep_once()
            if failing:
                logger.info("The reply sweep works again")
            failing = False
        except Exception as error:
            if failing:  # the traceback once per outage, then one line a round
                logger.warning("The reply sweep still fails (%s); trying again in %.0f s", error, sweep_interval())
            else:
                logger.exception("The reply sweep failed; trying again in %.0f s", sweep_interval())
            failing = True
        stop.wait(sweep_interval())


def start_sweeper() -> None:
    """Start this process's sweeper thread (once: later calls do nothing while it runs)."""
    global _running
    with _lock:
        if _running is not None:
            return
        stop = threading.Event()  # its own: a sweeper still ending its last round never sees a new one cleared
        thread = threading.Thread(target=_run, args=(stop,), name="reply-sweeper", daemon=True)
        thread.start()
        _running = thread, stop


def stop_sweeper(timeout: float = 30.0) -> bool:
    """Stop this process's sweeper thread after its round in progress; whether it ended within `timeout`.

    A process that ends may leave the daemon thread to die with it; a test run stops it before its
    database goes, so that no round reads a database being dropped."""
    global _running
    with _lock:
        if _running is None:
            return True
        (thread, stop), _running = _running, None
    stop.set()
    thread.join(timeout)
    return not thread.is_alive()
