"""A reply's life inside a worker: claim it, stream it, save it.

Used by `chat.tasks.generate_reply`. The database row of the bot message
is the single source of truth: the worker claims it with a new attempt number,
saves the partial text before each piece goes to the page (so a page that
reconnects reads at least what was sent), and writes only while it still holds
the latest attempt of a `streaming` reply. A redelivered task, a stale-reply
sweep and a user's stop can therefore never produce two replies or mix two
generations into one text.

Whether a worker is alive is told by when it last wrote the row (`updated`).
Workers, web processes and their sweeps run on several machines, so every
such time is the database's (`Now()`), written and compared there: a machine
whose clock is off can neither look dead nor take a live reply for dead.
"""
import logging
import threading
import time
from concurrent.futures import Future
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Q
from django.db.models.functions import Now
from django.utils import timezone

from . import frames
from .models import Message
from .records import GenerationRecord

logger = logging.getLogger(__name__)

# Another worker is generating this reply right now.
IN_PROGRESS_ELSEWHERE = "in-progress-elsewhere"
STOP_CHECK_SECONDS = 0.3
# A generation still running this long after it was told to stop (hung) is abandoned.
STOP_GRACE_SECONDS = 2.0
# How long the last write of a reply is retried while the database is unreachable;
# past that the sweep fails the reply once the database is back.
DATABASE_RETRY_SECONDS = 30.0


class GenerationAbandoned(Exception):
    """The generation did not stop when told to; the reply ends without it."""


def reply_done(message: Message) -> None:
    frames.send(message.conversation_id, frames.reply_done_frame(message))


def fail_unclaimed_reply(message_id: int, reason: str) -> None:
    """Mark a reply failed that no worker has claimed (e.g. this worker could not load its models).

    A streaming one is left alone: a duplicate delivery may reach a worker that cannot generate while a
    healthy one streams the reply.
    """
    changed = Message.objects.filter(pk=message_id, status=Message.Status.QUEUED).update(
        status=Message.Status.FAILED, error=reason, updated=Now()
    )
    if changed:
        reply_done(Message.objects.get(pk=message_id))


def claim_reply(message_id: int, worker: str) -> Message | str | None:
    """The bot message to generate, now `streaming` under a new attempt.

    None when there is nothing to do (finished, or gone); IN_PROGRESS_ELSEWHERE
    when a live worker holds it. A reply left `streaming` by a dead worker
    starts over from an empty text, up to CHAT_REPLY_MAX_ATTEMPTS attempts.
    """
    with transaction.atomic():
        message = Message.objects.select_for_update().filter(pk=message_id, role=Message.Role.BOT).first()
        if message is None or message.status in Message.FINISHED:
            return None
        this_reply = Message.objects.filter(pk=message.pk)
        if message.status == Message.Status.STREAMING:
            if this_reply.filter(updated__gte=Now() - timedelta(seconds=settings.CHAT_REPLY_STALE_SECONDS)).exists():
                return IN_PROGRESS_ELSEWHERE
            logger.warning("Reply %s was left streaming by %s: starting it again", message.pk, message.worker)
        if message.attempts >= settings.CHAT_REPLY_MAX_ATTEMPTS:
            error = f"Gave up after {message.attempts} attempts: the workers kept stopping."
            this_reply.update(status=Message.Status.FAILED, error=error, updated=Now())
            message.refresh_from_db()
            transaction.on_commit(lambda: reply_done(message))
            return None
        this_reply.update(status=Message.Status.STREAMING, attempts=message.attempts + 1, text="", worker=worker, updated=Now())
        message.refresh_from_db()
    frames.send(message.conversation_id, frames.message_frame(message))
    return message


def conversation_history(reply: Message, turns: int) -> tuple[list[tuple[str, str]], str]:
    """(history, question) for a bot message: the dialogue before its user message."""
    question = reply.reply_to
    earlier = (
        Message.objects.filter(conversation_id=reply.conversation_id, id__lt=question.pk)
        .filter(
            Q(role=Message.Role.USER)
            | Q(role=Message.Role.BOT, is_chosen=True, status__in=[Message.Status.DONE, Message.Status.STOPPED])
        )
        .exclude(text="")
        .order_by("-id")[:turns]
    )
    history = [(message.role, message.text) for message in reversed(earlier)]
    return history, question.text


class ReplyStream:
    """The pieces of one reply on their way to the database and the page.

    `add` and `should_stop` are the generation's callbacks: they run on the
    batching engine's thread between generation steps and do no I/O. The
    task's own thread runs `follow` meanwhile: it saves and sends the text in
    time-based chunks (CHAT_STREAM_FLUSH_SECONDS, not one frame per token, so
    a slow client cannot overflow the channel layer) and polls for a stop.
    """

    def __init__(
        self, message: Message, task_started: datetime | None = None, warmup_seconds: float | None = None
    ) -> None:
        self.message = message
        # When the task began (timezone-aware) and how long it waited for the
        # models: with the reply's own time they make the record's waits.
        self.task_started = task_started
        self.warmup_seconds = warmup_seconds
        self.text = ""  # generated so far; only the generation's thread appends
        self._wake = threading.Event()  # the first piece arrived, or the generation ended
        self.sent = 0  # characters already saved and sent
        self.last_check = self.last_save = time.monotonic()
        self.deadline = self.last_check + settings.CELERY_TASK_SOFT_TIME_LIMIT
        self.stop = False  # the user asked to stop
        self.lost = False  # the reply is no longer ours (finished or taken over elsewhere)
        self.timed_out = False
        self.database_failed = False  # a write failed: the generation stops, the reply ends failed
        self.stopping_since = None
        self.notes = {}  # what the person should know about this reply, kept in its parameters

    def _save(self, **fields: Any) -> bool:
        """Write to the reply if this attempt still holds it; remembers when it does not."""
        if self.lost:
            return False
        changed = Message.objects.filter(
            pk=self.message.pk, status=Message.Status.STREAMING, attempts=self.message.attempts
        ).update(updated=Now(), **fields)
        self.last_save = time.monotonic()
        self.lost = not changed
        return bool(changed)

    def add(self, piece: str) -> None:
        first = not self.text
        self.text += piece
        if first:
            self._wake.set()  # the first words go out at once, the rest in chunks

    def should_stop(self) -> bool:
        return self.stop or self.lost or self.timed_out or self.database_failed

    def follow(self, generation: Future) -> Any:
        """Flush and check for a stop until `generation` (a Future of the Reply) is done; its Reply.

        Raises GenerationAbandoned when the generation goes on for
        STOP_GRACE_SECONDS after it was told to stop.
        """
        generation.add_done_callback(lambda _: self._wake.set())
        while True:
            self._wake.wait(settings.CHAT_STREAM_FLUSH_SECONDS)
            self._wake.clear()
            if generation.done():
                return generation.result()
            try:
                self.flush()
                self._check()
            except DatabaseError:
                logger.exception("Reply %s: a database write failed; ending the reply", self.message.pk)
                self.database_failed = True
            if self.should_stop():
                now = time.monotonic()
                self.stopping_since = self.stopping_since or now
                if now - self.stopping_since > STOP_GRACE_SECONDS:
                    raise GenerationAbandoned()

    def flush(self) -> None:
        text = self.text  # one snapshot: the generation may append meanwhile
        if len(text) == self.sent or not self._save(text=text):
            return
        frame = frames.token_frame(self.message.pk, self.sent, text[self.sent :])
        frames.send(self.message.conversation_id, frame)
        self.sent = len(text)

    def _check(self) -> None:
        now = time.monotonic()
        if now - self.last_check >= STOP_CHECK_SECONDS:
            self.last_check = now
            self.stop = Message.objects.filter(pk=self.message.pk, stop_requested=True).exists()
            # Well within CHAT_REPLY_STALE_SECONDS, so a live worker never looks dead.
            if now - self.last_save >= settings.CHAT_REPLY_STALE_SECONDS / 4:
                self._save()  # no piece for a while (a long prompt): show the reply is still alive
            self.timed_out = now > self.deadline

    def _finish(self, **fields: Any) -> None:
        """The reply's last write, retried while the database is unreachable."""
        deadline = time.monotonic() + DATABASE_RETRY_SECONDS
        while True:
            try:
                if self._save(**fields):
                    self.message.refresh_from_db()
                    reply_done(self.message)
                return
            except DatabaseError:
                if time.monotonic() > deadline:
                    logger.exception("Reply %s: could not save its end; the sweep will fail it", self.message.pk)
                    return
                connection.close()  # the next try opens a new connection
                time.sleep(1.0)

    def _last_flush(self) -> None:
        """The last pieces, so the token frames spell the whole text (unless the database is gone)."""
        if not self.database_failed:
            try:
                self.flush()
            except DatabaseError:
                self.database_failed = True

    def fail(self, reason: str) -> None:
        self._last_flush()
        self._finish(status=Message.Status.FAILED, error=reason, text=self.text)

    def abandon(self) -> None:
        """End the reply without its generation (which ignored the stop): as the stop asked."""
        if self.stop and not (self.timed_out or self.database_failed):
            self._finish(status=Message.Status.STOPPED, text=self.text)
        else:
            self.fail(self.failure_reason() or "The generation stopped answering.")

    def failure_reason(self) -> str | None:
        if self.timed_out:
            return f"The reply took longer than {settings.CELERY_TASK_SOFT_TIME_LIMIT} s."
        if self.database_failed:
            return "The database could not be reached while the reply was written; try again."
        return None

    def finish(self, reply: Any) -> None:
        """Save the final text and the generation record, and tell the page."""
        self._last_flush()
        created = self.message.created
        waits = {
            "queue_seconds": (self.task_started - created).total_seconds() if self.task_started else None,
            "warmup_seconds": self.warmup_seconds,
            "waited_seconds": (timezone.now() - created).total_seconds(),
        }
        record = GenerationRecord.of_reply(reply, self.message.worker, self.message.attempts, **waits).columns()
        record["parameters"] = {**record["parameters"], **self.notes}
        if self.timed_out or self.database_failed:
            self._finish(status=Message.Status.FAILED, error=self.failure_reason(), text=self.text, **record)
        elif self.stop or reply.stopped:
            # Keep exactly what the user saw, not a cleaned-up version of it.
            self._finish(status=Message.Status.STOPPED, text=self.text, **record)
        else:
            self._finish(status=Message.Status.DONE, text=reply.text, **record)
