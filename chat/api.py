"""The JSON API of the chat (session auth, CSRF on every change; docs/web.md).

Another user's conversation or message answers 404, exactly like one that
does not exist.
"""

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404
from django.utils import timezone

from . import frames, services, warmup
from .export import conversations_json, conversations_markdown
from .models import Conversation, Message, Rating
from .serializers import conversation_dict, message_dict, rating_dict

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
TITLE_MAX_CHARS = Conversation._meta.get_field("title").max_length
DATABASE_MAX_INT = 2**63 - 1  # PostgreSQL's bigint: ids, offsets
COMMENT_MAX_CHARS = 2000
SEARCH_MIN_CHARS = 2
SEARCH_MAX_CHARS = 200
SEARCH_RESULTS = 50
SNIPPET_CHARS = 60  # shown on each side of the match


class BadRequest(Exception):
    """Bad input to an API view; the message becomes the 400 answer's `error`."""


# An API view: a request and the URL's arguments in, a response out.
View = Callable[..., HttpResponse]


def json_api(*methods: str) -> Callable[[View], View]:
    """Login, allowed methods, and errors as JSON for an API view."""

    def decorate(view: View) -> View:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                return JsonResponse({"error": "Log in first."}, status=401)
            if request.method not in methods:
                response = JsonResponse({"error": f"Use {', '.join(methods)}."}, status=405)
                response["Allow"] = ", ".join(methods)
                return response
            try:
                return view(request, *args, **kwargs)
            except Http404:
                return JsonResponse({"error": "Not found."}, status=404)
            except BadRequest as error:
                return JsonResponse({"error": str(error)}, status=400)
            except services.ChatError as error:
                return JsonResponse({"error": error.detail, "code": error.code}, status=400)

        return wrapper

    return decorate


def json_body(request: HttpRequest) -> dict:
    try:
        body = json.loads(request.body or b"{}")
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
        raise BadRequest("The body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object.")
    return body


def storable(text: str, name: str) -> str:
    """`text`, or a BadRequest that names what in it the database cannot store."""
    if problem := services.unstorable(text):
        raise BadRequest(f"{name} holds {problem}.")
    return text


def clean_title(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadRequest("title must be a non-empty string.")
    title = " ".join(value.split())  # one line, as the list and the export's heading show it
    if len(title) > TITLE_MAX_CHARS:
        raise BadRequest(f"title has at most {TITLE_MAX_CHARS} characters.")
    return storable(title, "title")


@json_api("GET", "POST")
def conversations(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        body = json_body(request)
        title = clean_title(body["title"]) if "title" in body else ""
        with transaction.atomic():
            # One creation at a time per account: two at once would both count below the cap.
            get_user_model().objects.select_for_update().get(pk=request.user.pk)
            if Conversation.objects.filter(owner=request.user).count() >= settings.CHAT_MAX_CONVERSATIONS:
                raise BadRequest(
                    f"You have {settings.CHAT_MAX_CONVERSATIONS} conversations, the most one account may keep: "
                    "delete one to start another."
                )
            conversation = Conversation.objects.create(
                owner=request.user, title=title, character=settings.SHELDON_CHARACTER
            )
        return JsonResponse(conversation_dict(conversation), status=201)
    # Most recently updated first, a page at a time: `?after=` the previous page's `next`, the place of its last
    # conversation in that order. Not an offset: a conversation updated between two reads moves to the top, and
    # under an offset the others would shift, one read twice and another never.
    limit = min(whole_number(request.GET.get("limit", MAX_PAGE_SIZE), "limit"), MAX_PAGE_SIZE)
    owned = Conversation.objects.filter(owner=request.user)
    if "after" in request.GET:
        updated, pk = conversation_place(request.GET["after"])
        owned = owned.filter(Q(updated__lt=updated) | Q(updated=updated, id__lt=pk))
    page = list(owned.order_by("-updated", "-id")[: limit + 1])
    has_more = len(page) > limit
    last = page[limit - 1] if has_more else None
    return JsonResponse(
        {
            "conversations": [conversation_dict(c) for c in page[:limit]],
            "has_more": has_more,
            "next": f"{last.updated.astimezone(UTC):%Y-%m-%dT%H:%M:%S.%fZ}~{last.pk}" if last else None,
        }
    )


def conversation_place(value: str) -> tuple[datetime, int]:
    """(updated, id) of a page's `next`: `<ISO time in UTC>~<id>` (no "+": a query string reads it as a space)."""
    time, _, pk = value.rpartition("~")
    try:
        # Only the UTC form a page's `next` has: another offset can take the time out of the databases' range.
        updated = datetime.fromisoformat(time) if time.endswith("Z") else None
    except ValueError:
        updated = None
    if updated is None:
        raise BadRequest("after must be a page's `next`.")
    return updated, whole_number(pk, "after's id")


@json_api("GET", "PATCH", "DELETE")
def conversation(request: HttpRequest, conversation_id: int) -> HttpResponse:
    conversation = get_object_or_404(Conversation, pk=conversation_id, owner=request.user)
    if request.method == "DELETE":
        conversation.delete()
        return HttpResponse(status=204)
    if request.method == "PATCH":
        conversation.title = clean_title(json_body(request).get("title"))
        conversation.save(update_fields=["title", "updated"])
    return JsonResponse(conversation_dict(conversation))


def whole_number(value: Any, name: str, minimum: int = 1) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise BadRequest(f"{name} must be a whole number.") from None
    if number < minimum:
        raise BadRequest(f"{name} must be at least {minimum}.")
    if number > DATABASE_MAX_INT:
        raise BadRequest(f"{name} must be at most {DATABASE_MAX_INT}.")
    return number


@json_api("GET")
def messages(request: HttpRequest, conversation_id: int) -> HttpResponse:
    """One page of the history, newest page first: `?before=<id>` gives the page before it.

    Within a page the messages are in reading order (oldest first).
    """
    conversation = get_object_or_404(Conversation, pk=conversation_id, owner=request.user)
    limit = min(whole_number(request.GET.get("limit", PAGE_SIZE), "limit"), MAX_PAGE_SIZE)
    page = conversation.messages.order_by("-id")
    if "before" in request.GET:
        page = page.filter(id__lt=whole_number(request.GET["before"], "before"))
    page = list(page[: limit + 1])
    has_more = len(page) > limit
    page = list(reversed(page[:limit]))
    ratings = {r.message_id: r for r in Rating.objects.filter(user=request.user, message__in=page)}
    return JsonResponse(
        {
            "messages": [message_dict(m, ratings.get(m.pk)) for m in page],
            "has_more": has_more,
            "before": page[0].pk if has_more else None,
        }
    )


@json_api("PUT")
def rating(request: HttpRequest, message_id: int) -> HttpResponse:
    message = get_object_or_404(Message, pk=message_id, role=Message.Role.BOT, conversation__owner=request.user)
    body = json_body(request)
    score = body.get("score")
    # bool is an int in Python; `true` is no score.
    if not isinstance(score, int) or isinstance(score, bool) or not 1 <= score <= 5:
        raise BadRequest("score must be a whole number from 1 to 5.")
    comment = body.get("comment", "")
    if not isinstance(comment, str) or len(comment) > COMMENT_MAX_CHARS:
        raise BadRequest(f"comment must be a string of at most {COMMENT_MAX_CHARS} characters.")
    storable(comment, "comment")
    saved, _ = Rating.objects.update_or_create(
        message=message, user=request.user, defaults={"score": score, "comment": comment}
    )
    return JsonResponse(rating_dict(saved))


@json_api("POST")
def choose(request: HttpRequest, message_id: int) -> HttpResponse:
    """Show this alternative reply instead of the others to the same message."""
    try:
        reply = services.choose_reply(message_id, request.user)
    except Message.DoesNotExist:
        raise Http404 from None
    # The owner's other open pages switch too (a frame carries no rating: each page keeps its own).
    frames.send(reply.conversation_id, frames.message_frame(reply))
    own_rating = Rating.objects.filter(message=reply, user=request.user).first()
    return JsonResponse(message_dict(reply, own_rating))


def snippet(text: str, query: str) -> str:
    """The part of `text` around the first match of `query`, with … where it was cut."""
    # Found in the text itself: a position in text.lower() is off where lowering changes a length ("İ").
    match = re.search(re.escape(query), text, re.IGNORECASE)
    at = match.start() if match else 0
    start, end = max(0, at - SNIPPET_CHARS), min(len(text), at + len(query) + SNIPPET_CHARS)
    return ("…" if start else "") + text[start:end] + ("…" if end < len(text) else "")


@json_api("GET")
def search(request: HttpRequest) -> HttpResponse:
    """The user's own messages that contain `q` (case-insensitive), newest first."""
    query = request.GET.get("q", "").strip()
    if not SEARCH_MIN_CHARS <= len(query) <= SEARCH_MAX_CHARS:
        raise BadRequest(f"q must have {SEARCH_MIN_CHARS} to {SEARCH_MAX_CHARS} characters.")
    storable(query, "q")
    found = (
        Message.objects.filter(conversation__owner=request.user, is_chosen=True, text__icontains=query)
        .select_related("conversation")
        .order_by("-id")[: SEARCH_RESULTS + 1]
    )
    found = list(found)
    return JsonResponse(
        {
            "query": query,
            "results": [
                {
                    "conversation": {"id": m.conversation_id, "title": m.conversation.title},
                    "message": {"id": m.pk, "role": m.role, "created": m.created.isoformat()},
                    "snippet": snippet(m.text, query),
                }
                for m in found[:SEARCH_RESULTS]
            ],
            "has_more": len(found) > SEARCH_RESULTS,
        }
    )


EXPORT_FORMATS = {
    "json": ("application/json", "json", conversations_json),
    "markdown": ("text/markdown; charset=utf-8", "md", conversations_markdown),
}


@json_api("GET")
def export(request: HttpRequest) -> HttpResponse:
    """All of the user's conversations as a download: `?format=json` (default) or `markdown`."""
    name = request.GET.get("format", "json")
    if name not in EXPORT_FORMATS:
        raise BadRequest(f"format must be one of: {', '.join(EXPORT_FORMATS)}.")
    content_type, extension, render = EXPORT_FORMATS[name]
    response = HttpResponse(render(request.user), content_type=content_type)
    filename = f"sheldon-conversations-{timezone.now():%Y-%m-%d}.{extension}"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def status(request: HttpRequest) -> HttpResponse:
    """Whether the models are loaded, for the page's "waking up" notice and scripts/run.sh; no login needed."""
    if request.method != "GET":
        return JsonResponse({"error": "Use GET."}, status=405)
    mode = "embedded" if settings.CELERY_TASK_ALWAYS_EAGER else "workers"
    return JsonResponse({"mode": mode, "models": warmup.status()})
