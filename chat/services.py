"""What a conversation's owner can do, shared by the socket consumer and the tests.

Each function runs in one transaction that locks the conversation row, so two
tabs of the same user cannot both start a reply at once. The generation is
queued on commit (`tasks.queue_reply`): a worker must never look for a row
that is not there yet.
"""
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.db.models import Q, Sum
from django.db.models.functions import Now
from django.utils import timezone

from accounts.throttle import per_window

from .models import Conversation, Message, ReplyCharge
from .tasks import queue_reply, send_reply_task

TITLE_CHARS = 60


class ChatError(Exception):
    """A request the chat refuses; `code` and `detail` become an error frame."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def unstorable(text: str) -> str:
    """What in `text` the database cannot store ("" when nothing): PostgreSQL's text holds no NUL, and
    UTF-8 has no half of a surrogate pair (JSON's "\\ud800" alone)."""
    if "\x00" in text:
        return "a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "half of a surrogate pair, which is not a character"
    return ""


def token_cost(text: str) -> int:
    """An upper bound of the tokens a reply to `text` costs a worker beyond the persona.

    The web process has no tokenizer: a byte-level BPE token covers at least
    one UTF-8 byte, so the bytes bound the tokens; the worker cuts a message to
    CHAT_MAX_MESSAGE_TOKENS, and the reply adds at most MAX_NEW_TOKENS.
    """
    return min(len(text.encode("utf-8")), settings.CHAT_MAX_MESSAGE_TOKENS) + settings.MAX_NEW_TOKENS


def charge_reply(user: AbstractBaseUser, question_text: str) -> None:
    """Count a reply the user asks for (a message, a regenerate, an edit), or refuse it over the limits.

    Every reply costs a worker a generation, so the limits count replies asked for, across all of the user's
    conversations and web processes: how many, and their tokens. They are counted in ReplyCharge, which
    deleting replies or conversations leaves alone. Runs in the caller's transaction.
    """
    get_user_model().objects.select_for_update().filter(pk=user.pk).first()  # one check at a time per user
    now = timezone.now()
    count, count_seconds = per_window(settings.CHAT_RATE_LIMIT)
    budget, budget_seconds = per_window(settings.CHAT_TOKEN_BUDGET)
    charges = ReplyCharge.objects.filter(user=user)
    charges.filter(created__lt=now - timedelta(seconds=max(count_seconds, budget_seconds))).delete()
    if charges.filter(created__gte=now - timedelta(seconds=count_seconds)).count() >= count:
        raise ChatError(
            "rate_limited", f"Too many messages: at most {count} every {count_seconds} seconds. Wait a moment."
        )
    recent = charges.filter(created__gte=now - timedelta(seconds=budget_seconds))
    used = recent.aggregate(total=Sum("tokens"))["total"] or 0
    cost = token_cost(question_text)
    if used + cost > budget:
        raise ChatError(
            "rate_limited",
            f"Too much text in a short time: at most about {budget} tokens every {budget_seconds} seconds. "
            "Wait a moment or write less.",
        )
    ReplyCharge.objects.create(user=user, tokens=cost)


def _locked_conversation(conversation_id: int, user: AbstractBaseUser) -> Conversation:
    conversation = Conversation.objects.select_for_update().get(pk=conversation_id, owner=user)
    if conversation.messages.filter(status__in=Message.IN_PROGRESS).exists():
        raise ChatError("busy", "Sheldon is still answering. Wait for the reply or press Stop.")
    return conversation


def title_from(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= TITLE_CHARS else text[: TITLE_CHARS - 1].rstrip() + "…"


def post_user_message(conversation_id: int, user: AbstractBaseUser, text: str) -> tuple[Message, Message]:
    """Store the user's message and its queued reply; returns both."""
    with transaction.atomic():
        conversation = _locked_conversation(conversation_id, user)
        charge_reply(user, text)
        user_message = conversation.messages.create(role=Message.Role.USER, text=text)
        reply = conversation.messages.create(role=Message.Role.BOT, status=Message.Status.QUEUED, reply_to=user_message)
        if not conversation.title:
            conversation.title = title_from(text)
        conversation.save()  # also moves the conversation to the top of the list
        queue_reply(reply.pk)
    return user_message, reply


def regenerate(conversation_id: int, user: AbstractBaseUser) -> Message:
    """A new reply to the last user message; earlier alternatives stay, unchosen."""
    with transaction.atomic():
        conversation = _locked_conversation(conversation_id, user)
        last_question = conversation.messages.filter(role=Message.Role.USER).order_by("-id").first()
        if last_question is None:
            raise ChatError("nothing_to_regenerate", "There is no message to answer yet.")
        charge_reply(user, last_question.text)
        last_question.replies.update(is_chosen=False)
        reply = conversation.messages.create(
            role=Message.Role.BOT, status=Message.Status.QUEUED, reply_to=last_question
        )
        conversation.save()
        queue_reply(reply.pk)
    return reply


def edit_last_message(
    conversation_id: int, user: AbstractBaseUser, message_id: int, text: str
) -> tuple[Message, Message]:
    """Replace the text of the last user message, `message_id`, and answer it anew; returns (message, reply).

    The replies to the old text answered another question: they are deleted
    (with their ratings), not kept as alternatives of the new one. An edit of a
    message that is no longer the last (another tab sent one meanwhile) is
    refused: applied to the last, it would replace a message its writer never saw.
    """
    with transaction.atomic():
        conversation = _locked_conversation(conversation_id, user)
        question = conversation.messages.filter(role=Message.Role.USER).order_by("-id").first()
        if question is None:
            raise ChatError("nothing_to_edit", "There is no message to edit yet.")
        if question.pk != message_id:
            raise ChatError(
                "nothing_to_edit", "Only the last message can be edited, and a newer one came after this one."
            )
        charge_reply(user, text)
        question.replies.all().delete()
        question.text = text
        question.save(update_fields=["text", "updated"])
        reply = conversation.messages.create(role=Message.Role.BOT, status=Message.Status.QUEUED, reply_to=question)
        conversation.save()
        queue_reply(reply.pk)
    return question, reply


def choose_reply(message_id: int, user: AbstractBaseUser) -> Message:
    """Make one of a message's finished alternative replies the chosen one; returns it."""
    with transaction.atomic():
        reply = Message.objects.select_for_update().get(
            pk=message_id, role=Message.Role.BOT, conversation__owner=user
        )
        alternatives = Message.objects.filter(
            conversation_id=reply.conversation_id, reply_to_id=reply.reply_to_id, role=Message.Role.BOT
        )
        if alternatives.filter(status__in=Message.IN_PROGRESS).exists():
            raise ChatError("busy", "Sheldon is still writing one of these replies. Wait for it or press Stop.")
        alternatives.exclude(pk=reply.pk).update(is_chosen=False)
        reply.is_chosen = True
        reply.save(update_fields=["is_chosen", "updated"])
    return reply


def request_stop(conversation_id: int, user: AbstractBaseUser) -> Message:
    """Stop the reply in progress; returns it (`stopped` when it was stopped right here).

    A queued reply that no worker has claimed is stopped at once. A streaming
    one gets the stop flag its worker checks between tokens; the worker then
    saves the text so far and reports the end itself, or, if it has not
    within CHAT_STOP_GRACE_SECONDS, `end_unanswered_stop` ends it.
    """
    not_generating = ChatError("not_generating", "There is no reply in progress to stop.")
    with transaction.atomic():
        Conversation.objects.select_for_update().get(pk=conversation_id, owner=user)
        reply = Message.objects.filter(conversation_id=conversation_id, status__in=Message.IN_PROGRESS).first()
        if reply is None:
            raise not_generating
        # Each write holds only while the reply is still as read: its worker does not lock the conversation, and
        # a claim or the last save may land in between (a finished reply must not go back to streaming).
        this_reply = Message.objects.filter(pk=reply.pk)
        stopped = this_reply.filter(status=Message.Status.QUEUED).update(
            stop_requested=True, status=Message.Status.STOPPED, updated=Now()
        )
        if not stopped and not this_reply.filter(status=Message.Status.STREAMING).update(
            stop_requested=True, updated=Now()
        ):
            raise not_generating  # it ended meanwhile; its worker has sent its end
        reply.refresh_from_db()
    return reply


def sweep_replies() -> list[Message]:
    """End or re-send the replies nobody will finish; returns the ones it marked failed.

    A streaming reply's worker saves progress several times a second, so one
    that has not moved for CHAT_REPLY_STALE_SECONDS lost its worker (killed,
    hung, cut off from the database). A queued one that waited
    CHAT_QUEUE_RESEND_SECONDS may have lost its task (a Redis restart loses
    what it held): its task is sent again, which is harmless if the first
    still comes (the claim is idempotent); one still queued after
    CHAT_QUEUE_TIMEOUT_SECONDS found no worker. A failed reply offers a retry
    (regenerate). Every change is conditional, so a worker that finishes at
    this very moment wins, and several sweepers may run at once. Times are the
    database's (chat/generation.py says why).
    """
    # Each write repeats its condition, so it holds only while the reply is still as the sweep found it
    # (no timestamp is compared for equality: SQLite stores the database's and Python's times in two formats).
    stale = Q(
        status=Message.Status.STREAMING, updated__lt=Now() - timedelta(seconds=settings.CHAT_REPLY_STALE_SECONDS)
    ) | Q(status=Message.Status.QUEUED, created__lt=Now() - timedelta(seconds=settings.CHAT_QUEUE_TIMEOUT_SECONDS))
    failed = []
    for reply in Message.objects.filter(stale):
        reason = (
            "The worker generating this reply stopped responding."
            if reply.status == Message.Status.STREAMING
            else "No worker picked up this reply in time."
        )
        changed = Message.objects.filter(stale, pk=reply.pk, status=reply.status).update(
            status=Message.Status.FAILED, error=reason, updated=Now()
        )
        if changed:
            reply.refresh_from_db()
            failed.append(reply)
    if not settings.CELERY_TASK_ALWAYS_EAGER:
        # Until its first resend a queued reply's `updated` is the clock of the web host that queued it: one
        # ahead of the database's counts as due, and `created` (the database's) keeps one behind from coming early.
        resend_before = Now() - timedelta(seconds=settings.CHAT_QUEUE_RESEND_SECONDS)
        waiting = Q(status=Message.Status.QUEUED, created__lt=resend_before) & (
            Q(updated__lt=resend_before) | Q(updated__gt=Now())
        )
        for reply_id in Message.objects.filter(waiting).values_list("pk", flat=True):
            if Message.objects.filter(waiting, pk=reply_id).update(updated=Now()):
                send_reply_task(reply_id)
    return failed


def end_unanswered_stop(reply_id: int) -> Message | None:
    """A stop its worker did not act on in time (gone, hung): the reply ends `stopped` here, with the text so far.

    The worker, if it lives, finds the reply no longer its own and stops writing.
    """
    changed = Message.objects.filter(pk=reply_id, status=Message.Status.STREAMING, stop_requested=True).update(
        status=Message.Status.STOPPED, updated=Now()
    )
    return Message.objects.get(pk=reply_id) if changed else None
