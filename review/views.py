"""Staff pages beside the admin: a chat-like transcript, the ratings overview, "Compare replies".

Both are wrapped in admin.site.admin_view (review/urls.py): anyone who is
not active staff is sent to the admin login, and staff need the view
permission named here, else they get 403.
"""
from datetime import timedelta

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Prefetch
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode

from chat.api import BadRequest, whole_number
from chat.models import Conversation, Message
from review.comparison import blind_order, items_to_rate, parse_ratings, save_ratings, scoreboard
from review.models import ComparisonItem, ComparisonRating, ReviewLabel
from review.overview import LOW_SCORE, chart_png, finished_replies, reply_stats
from training.blind import BOOTSTRAP_RESAMPLES, LAST_LINE_MARK, MEASURES, RUBRIC, SCALES

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


def compare(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    """One item at a time: its dialogue and candidates in this rater's blind order, rated on the rubric's scales.

    Without `pk`, the oldest item with a candidate this rater has not rated
    (of `?set=`, when given; `?after=ID` skips to items after that one).
    """
    require_permission(request, "review.add_comparisonrating")
    set_name = request.GET.get("set", "")
    to_rate = items_to_rate(request.user, set_name)
    if pk is None:
        after = request.GET.get("after", "")
        try:
            item = (to_rate.filter(id__gt=whole_number(after, "after", minimum=0)) if after else to_rate).first()
        except BadRequest as error:
            return HttpResponseBadRequest(str(error))
    else:
        item = get_object_or_404(ComparisonItem, pk=pk)
    if item is None:
        return _compare_page(request, None, [], set_name, to_rate.count(), "")
    ordered = blind_order(item, request.user)
    error = ""
    if request.method == "POST":
        try:
            save_ratings(request.user, parse_ratings(request.POST, ordered))
        except ValueError as problem:
            error = str(problem)
        else:
            next_url = reverse("review:compare")
            return HttpResponseRedirect(f"{next_url}?{urlencode({'set': set_name})}" if set_name else next_url)
    return _compare_page(request, item, ordered, set_name, to_rate.count(), error)


def _compare_page(request, item, ordered, set_name, left, error):
    shown = _shown_values(request, item, ordered)
    candidates = [
        {
            "label": label,
            "candidate": candidate,
            "scales": [(scale, shown[candidate.pk].get(scale, "")) for scale in SCALES],
            "bad": shown[candidate.pk]["bad"],
        }
        for label, candidate in ordered
    ]
    return TemplateResponse(
        request,
        "review/compare.html",
        {
            **admin.site.each_context(request),
            "title": "Compare replies",
            "rubric": RUBRIC,
            "item": item,
            "context_lines": item.dialogue[:-1] if item else [],
            "last_line": item.dialogue[-1] if item else None,
            "last_line_mark": LAST_LINE_MARK,
            "candidates": candidates,
            "values": [str(value) for value in range(1, 6)],
            "left": left,
            "set_name": set_name,
            "error": error,
        },
        status=400 if error else 200,
    )


def _shown_values(request, item, ordered):
    """Per candidate what the form shows: what was just posted (after an error), else the rater's saved rating."""
    if request.method == "POST":
        return {
            candidate.pk: {
                **{scale: request.POST.get(f"{candidate.pk}-{scale}", "") for scale in SCALES},
                "bad": request.POST.get(f"{candidate.pk}-bad") == "on",
            }
            for _, candidate in ordered
        }
    saved = {r.candidate_id: r for r in ComparisonRating.objects.filter(rater=request.user, candidate__item=item)}
    shown = {}
    for _, candidate in ordered:
        rating = saved.get(candidate.pk)
        shown[candidate.pk] = {scale: str(getattr(rating, scale)) for scale in SCALES} if rating else {}
        shown[candidate.pk]["bad"] = bool(rating and rating.bad)
    return shown


def compare_scoreboard(request: HttpRequest) -> HttpResponse:
    """Each system/version's blind scores, computed by the same code as `blind_score`."""
    require_permission(request, "review.view_comparisonrating")
    set_name = request.GET.get("set", "")
    rows = scoreboard(set_name)
    return TemplateResponse(
        request,
        "review/compare_scoreboard.html",
        {
            **admin.site.each_context(request),
            "title": "Compare replies: scoreboard",
            "rows": [
                {**row, "cells": [(row[m], row[f"{m}_low"], row[f"{m}_high"]) for m in MEASURES]} for row in rows
            ],
            "measures": MEASURES,
            "sets": ComparisonItem.objects.order_by("set_name").values_list("set_name", flat=True).distinct(),
            "set_name": set_name,
            "resamples": BOOTSTRAP_RESAMPLES,
        },
    )
