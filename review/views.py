"""Staff pages beside the admin: a chat-like transcript and the ratings overview.

Both are wrapped in admin.site.admin_view (review/urls.py): anyone who is
not active staff is sent to the admin login, and staff need the view
permission named here, else they get 403.
"""
from datetime import timedelta

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Prefetch
from django.http import HttpResponseBadRequest
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.utils import timezone

from chat.models import Conversation, Message
from review.models import ReviewLabel
from review.overview import LOW_SCORE, chart_png, finished_replies, reply_stats

DEFAULT_WEEKS = 12
MAX_WEEKS = 520


def require_permission(request, permission):
    if not request.user.has_perm(permission):
        raise PermissionDenied(f"Reviewing needs the permission {permission}.")


def transcript(request, pk):
    require_permission(request, "chat.view_conversation")
    messages = Message.objects.order_by("created", "id").prefetch_related(
        "ratings", Prefetch("review_labels", ReviewLabel.objects.select_related("author"))
    )
    conversation = get_object_or_404(
        Conversation.objects.select_related("owner").prefetch_related(Prefetch("messages", messages)), pk=pk
    )
    return TemplateResponse(
        request,
        "review/transcript.html",
        {
            **admin.site.each_context(request),
            "title": f"Transcript: {conversation}",
            "conversation": conversation,
            "chat_messages": conversation.messages.all(),
        },
    )


def ratings_overview(request):
    require_permission(request, "chat.view_message")
    try:
        weeks = int(request.GET.get("weeks", DEFAULT_WEEKS))
        if not 1 <= weeks <= MAX_WEEKS:
            raise ValueError
    except ValueError:
        return HttpResponseBadRequest(f"weeks must be a whole number from 1 to {MAX_WEEKS}.")
    since = timezone.now() - timedelta(weeks=weeks)
    weekly, overall = reply_stats(finished_replies(since))
    return TemplateResponse(
        request,
        "review/ratings_overview.html",
        {
            **admin.site.each_context(request),
            "title": "Ratings overview",
            "weeks": weeks,
            "weekly": weekly,
            "overall": overall,
            "low_score": LOW_SCORE,
            "chart": chart_png(weekly) if weekly else None,
        },
    )
