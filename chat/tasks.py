"""The Celery task that writes Sheldon's reply to one bot message.

It lives with the data it writes. The web process queues it by name once the
bot message is committed (`queue_reply`), so it never imports the task's
model code; only a worker runs `generate_reply`, which imports `inference`
when it first runs. Safe to run twice: `chat.generation.claim_reply` decides
whether there is anything left to do (see that module).
"""

import logging
import os
import threading
import time

from celery import Task, current_app, shared_task
from celery.signals import worker_ready
from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone

from . import affinity
from .generation import (
    IN_PROGRESS_ELSEWHERE,
    GenerationAbandoned,
    ReplyStream,
    claim_reply,
    conversation_history,
    fail_unclaimed_reply,
)

logger = logging.getLogger(__name__)

GENERATE_REPLY = "chat.tasks.generate_reply"


def queue_reply(bot_message_id: int) -> None:
    """Generate the reply once the current transaction commits (a worker must find the row).

    With a broker the task goes by name to the worker that holds the
    conversation's last turn, or to GENERATION_QUEUE (`affinity.queue_for`);
    without one (no REDIS_URL) it runs on a thread of this process.
    """
    if settings.CELERY_TASK_ALWAYS_EAGER:
        transaction.on_commit(lambda: _generate_in_this_process(bot_message_id), robust=True)
    else:
        # robust: a send that fails (the broker away for a moment) is logged, not raised into the committed
        # request; the reply stays queued, and the sweep sends it again (CHAT_QUEUE_RESEND_SECONDS).
        transaction.on_commit(lambda: send_reply_task(bot_message_id, affinity.queue_for(bot_message_id)), robust=True)


def send_reply_task(bot_message_id: int, queue: str | None = None) -> None:
    """Send the task by name (the web process never imports its code) to `queue`, by default
    GENERATION_QUEUE: the sweep's resends go there, whatever worker the first send was meant for."""
    current_app.send_task(GENERATE_REPLY, args=[bot_message_id], queue=queue or settings.GENERATION_QUEUE)


def _generate_in_this_process(bot_message_id: int) -> None:
    def run() -> None:
        try:
            generate_reply.apply(args=[bot_message_id])
        finally:
            connections.close_all()  # the thread ends here; left open, its connection outlives it

    threading.Thread(target=run, name=f"reply-{bot_message_id}", daemon=True).start()


@shared_task(bind=True, name=GENERATE_REPLY, acks_late=True, reject_on_worker_lost=True)
def generate_reply(self: Task, bot_message_id: int) -> None:
    task_started, warmup_started = timezone.now(), time.monotonic()
    # Only workers get here: the models' code is imported on the first reply (or at worker start).
    from inference.backends import cut_to_tokens
    from inference.batching import get_engine
    from inference.replier import Turn, get_replier

    try:
        # Loaded before the claim: the first load of a model may take a while.
        engine = get_engine()
        warmup_seconds = time.monotonic() - warmup_started
    except Exception as error:
        logger.exception("Could not load the models for reply %s", bot_message_id)
        fail_unclaimed_reply(bot_message_id, f"The models could not be loaded: {error}")
        return

    worker = f"{self.request.hostname or 'web'}/{os.getpid()}"
    message = claim_reply(bot_message_id, worker)
    if message == IN_PROGRESS_ELSEWHERE:
        # A duplicate delivery while a live worker streams it: look again once
        # that worker would count as dead, and take over only then.
        raise self.retry(countdown=settings.CHAT_REPLY_STALE_SECONDS + 1, max_retries=settings.CHAT_REPLY_MAX_ATTEMPTS)
    if message is None:
        logger.info("Reply %s needs no generation (finished or gone)", bot_message_id)
        return

    history, question = conversation_history(message, turns=settings.HISTORY_TURNS * 2)
    stream = ReplyStream(message, task_started=task_started, warmup_seconds=warmup_seconds)
    try:
        # A long message costs every reply of the batch its prompt's time: it
        # is cut to CHAT_MAX_MESSAGE_TOKENS, and the reply's record says so.
        limit = settings.CHAT_MAX_MESSAGE_TOKENS
        question, question_tokens = cut_to_tokens(get_replier().backend.tokenizer, question, limit)
        if question_tokens > limit:
            stream.notes["message_cut"] = {"tokens": question_tokens, "kept": limit}
        # Through the process's batching engine: replies requested together are
        # generated together, while this thread saves and sends the pieces.
        generation = engine.submit(
            history=[Turn(role=role, text=text) for role, text in history],
            message=question,
            on_piece=stream.add,
            should_stop=stream.should_stop,
        )
        reply = stream.follow(generation)
    except GenerationAbandoned:
        logger.error("Reply %s: the generation did not stop when told to; abandoned", bot_message_id)
        stream.abandon()
        return
    except Exception as error:
        logger.exception("Generation failed for reply %s", bot_message_id)
        stream.fail(f"Generation failed: {error}")
        return
    stream.finish(reply)


@worker_ready.connect
def load_models_at_start(**kwargs: object) -> None:
    """Load the models when the worker starts, not on its first reply; start the reply sweep."""
    # Imported here: the sweeper's services queue their replies through this module.
    from .sweeper import start_sweeper
    from .warmup import warm_up

    start_sweeper()

    try:
        warm_up()
    except Exception:  # each reply will then fail with the reason, and the page offers a retry
        logger.exception("The worker could not load its models")
    # Heartbeats pause while the models load, which may outlast ALIVE_SECONDS: "ready" and alive together.
    affinity.announce()
