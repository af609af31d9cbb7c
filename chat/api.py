"""The JSON API of the chat (session auth, CSRF on every change; docs/web.md).

Another user's conversation or message answers 404, exactly like one that
does not exist.
"""
import json
from functools import wraps

from django.conf import settings
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404

from .models import Conversation, Message, Rating
from .serializers import conversation_dict, message_dict, rating_dict

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
TITLE_MAX_CHARS = Conversation._meta.get_field("title").max_length
COMMENT_MAX_CHARS = 2000


class BadRequest(Exception):
    pass


def json_api(*methods):
    """Login, allowed methods, and errors as JSON for an API view."""

    def decorate(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
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

        return wrapper

    return decorate


def json_body(request):
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        raise BadRequest("The body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object.")
    return body


def clean_title(value):
    if not isinstance(value, str) or not value.strip():
        raise BadRequest("title must be a non-empty string.")
    if len(value.strip()) > TITLE_MAX_CHARS:
        raise BadRequest(f"title has at most {TITLE_MAX_CHARS} characters.")
    return value.strip()


@json_api("GET", "POST")
def conversations(request):
    if request.method == "POST":
        body = json_body(request)
        title = clean_title(body["title"]) if "title" in body else ""
        conversation = Conversation.objects.create(
            owner=request.user, title=title, character=settings.SHELDON_CHARACTER
        )
        return JsonResponse(conversation_dict(conversation), status=201)
    owned = Conversation.objects.filter(owner=request.user)
    return JsonResponse({"conversations": [conversation_dict(c) for c in owned]})


@json_api("GET", "PATCH", "DELETE")
def conversation(request, conversation_id):
    conversation = get_object_or_404(Conversation, pk=conversation_id, owner=request.user)
    if request.method == "DELETE":
        conversation.delete()
        return HttpResponse(status=204)
    if request.method == "PATCH":
        conversation.title = clean_title(json_body(request).get("title"))
        conversation.save(update_fields=["title", "updated"])
    return JsonResponse(conversation_dict(conversation))


def positive_int(value, name):
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise BadRequest(f"{name} must be a whole number.") from None
    if number < 1:
        raise BadRequest(f"{name} must be at least 1.")
    return number


@json_api("GET")
def messages(request, conversation_id):
    """One page of the history, newest page first: `?before=<id>` gives the page before it.

    Within a page the messages are in reading order (oldest first).
    """
    conversation = get_object_or_404(Conversation, pk=conversation_id, owner=request.user)
    limit = min(positive_int(request.GET.get("limit", PAGE_SIZE), "limit"), MAX_PAGE_SIZE)
    page = conversation.messages.order_by("-id")
    if "before" in request.GET:
        page = page.filter(id__lt=positive_int(request.GET["before"], "before"))
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
def rating(request, message_id):
    message = get_object_or_404(
        Message, pk=message_id, role=Message.Role.BOT, conversation__owner=request.user
    )
    body = json_body(request)
    score = body.get("score")
    # bool is an int in Python; `true` is no score.
    if not isinstance(score, int) or isinstance(score, bool) or not 1 <= score <= 5:
        raise BadRequest("score must be a whole number from 1 to 5.")
    comment = body.get("comment", "")
    if not isinstance(comment, str) or len(comment) > COMMENT_MAX_CHARS:
        raise BadRequest(f"comment must be a string of at most {COMMENT_MAX_CHARS} characters.")
    saved, _ = Rating.objects.update_or_create(
        message=message, user=request.user, defaults={"score": score, "comment": comment}
    )
    return JsonResponse(rating_dict(saved))
