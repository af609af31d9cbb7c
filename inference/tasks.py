"""The Celery task that writes Sheldon's reply to one bot message.

Queued by the chat consumer on GENERATION_QUEUE (`cpu` or `gpu`) once the
bot message is committed. Safe to run twice: `chat.generation.claim_reply`
decides whether there is anything left to do (see that module).
"""
import logging
import os

from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings

from chat.generation import IN_PROGRESS_ELSEWHERE, ReplyStream, claim_reply, conversation_history, fail_reply

from .batching import get_engine
from .replier import Turn

logger = logging.getLogger(__name__)


@shared_task(bind=True)
def generate_reply(self, bot_message_id):
    try:
        # Loaded before the claim: the first load of a model may take a while.
        engine = get_engine()
    except Exception as error:
        logger.exception("Could not load the models for reply %s", bot_message_id)
        fail_reply(bot_message_id, f"The models could not be loaded: {error}")
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
    stream = ReplyStream(message)
    try:
        # Through the process's batching engine: replies requested together are
        # generated together, while this thread saves and sends the pieces.
        generation = engine.submit(
            history=[Turn(role=role, text=text) for role, text in history],
            message=question,
            on_piece=stream.add,
            should_stop=stream.should_stop,
        )
        reply = stream.follow(generation)
    except Exception as error:
        logger.exception("Generation failed for reply %s", bot_message_id)
        stream.fail(f"Generation failed: {error}")
        return
    stream.finish(reply)


@worker_ready.connect
def load_models_at_start(**kwargs):
    """Load the models when the worker starts, not on its first reply."""
    try:
        get_engine()
    except Exception:  # each reply will then fail with the reason, and the page offers a retry
        logger.exception("The worker could not load its models")
