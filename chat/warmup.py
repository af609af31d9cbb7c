"""Loading the models at start, and telling the page and `make run` how far it got.

A worker loads its models as it starts (`chat.tasks.load_models_at_start`); a
web process without Redis, which generates replies itself, loads them on a
background thread as it starts (`sheldonsite/asgi.py`). Either way the progress
goes to the cache (Redis when REDIS_URL is set, so web processes see what the
workers report; this process's memory otherwise) and `GET /api/status/`
reads it: the page shows "Sheldon is waking up…" while a message waits for the
models, and scripts/run.sh prints "ready" only once they are loaded. With
workers, "ready" also needs a live worker: once every one is gone, the state
is "no_worker" (they announce themselves at each heartbeat, chat/affinity.py).
"""

import logging
import threading
import time

from django.conf import settings
from django.core.cache import cache

from . import affinity

logger = logging.getLogger(__name__)

STATUS_KEY = "sheldon:models"
STEPS = ("importing the model code", "loading the models", "warming up")
# A first reply at start: the engine's first one pays one-time costs (OpenVINO compiles its kernels for each
# new shape, the selector embeds for the first time). bench/first_run.py measured the first word 3.4 s after
# "ready" without it, where later lone replies take about 1.2 s.
WARM_UP_MESSAGE = "Hello, Sheldon."
# How long the last warm-up on this machine took: the page's estimate of the next one.
LAST_DURATION_FILE = "warmup-seconds"

_started = False
_started_lock = threading.Lock()


def _last_duration() -> float | None:
    try:
        return float((settings.VAR_DIR / LAST_DURATION_FILE).read_text())
    except (OSError, ValueError):
        return None


def _report(state: str, step: int, started: float, expected: float | None, error: str = "") -> None:
    cache.set(
        STATUS_KEY,
        {"state": state, "step": step, "started": started, "expected_seconds": expected, "error": error},
        timeout=None,
    )


def warm_up() -> None:
    """Load this process's models (the batching engine around the replier) and reply once, reporting each step."""
    started, expected = time.time(), _last_duration()
    _report("loading", 0, started, expected)
    try:
        from inference.batching import get_engine  # imports torch and the model code: seconds

        _report("loading", 1, started, expected)
        engine = get_engine()
    except Exception as error:
        _report("failed", 1, started, expected, f"The models could not be loaded: {error}")
        raise
    try:
        _report("loading", 2, started, expected)
        engine.reply([], WARM_UP_MESSAGE)
    except Exception as error:
        _report("failed", 2, started, expected, f"The models loaded, but a first reply failed: {error}")
        raise
    duration = time.time() - started
    _report("ready", len(STEPS), started, expected)
    try:
        (settings.VAR_DIR / LAST_DURATION_FILE).write_text(f"{duration:.1f}")
    except OSError:
        pass  # only the next estimate is lost
    logger.info("Models loaded in %.1f s", duration)


def warm_up_in_background() -> None:
    """Start loading the models on a thread of this process, once."""
    global _started
    with _started_lock:
        if _started:
            return
        _started = True

    def run() -> None:
        try:
            warm_up()
        except Exception:  # each reply then fails with the reason, and the page offers a retry
            logger.exception("Could not load the models")

    threading.Thread(target=run, name="model-warm-up", daemon=True).start()


def status() -> dict:
    """What /api/status/ says about the models: state, step, seconds so far and the estimate."""
    report = cache.get(STATUS_KEY)
    if report is None:
        # No process has started loading (in worker mode: no worker has started yet).
        return {
            "state": "unknown",
            "started": None,
            "step": None,
            "step_number": 0,
            "steps": len(STEPS),
            "elapsed_seconds": None,
            "expected_seconds": None,
            "error": "",
        }
    step, state = report["step"], report["state"]
    # A worker said it loaded the models; that holds only while some worker lives (chat/affinity.py).
    if state == "ready" and not settings.CELERY_TASK_ALWAYS_EAGER and not affinity.some_worker_alive():
        state = "no_worker"
    return {
        "state": state,
        "started": report["started"],  # Unix time: a report left by an earlier run is older than this run
        "step": STEPS[step] if step < len(STEPS) else None,
        "step_number": min(step + 1, len(STEPS)),
        "steps": len(STEPS),
        "elapsed_seconds": round(time.time() - report["started"], 1) if state == "loading" else None,
        "expected_seconds": report["expected_seconds"],
        "error": report["error"],
    }
