"""Staff review in the Django admin: transcripts, replies, ratings, labels, consent.

What users and the model said is read-only here: staff read, filter, label
replies and export; nobody rewrites a transcript. The chat and accounts
models are registered here so that the whole review lives in one place.
"""
import json
from datetime import UTC, datetime

from django import forms
from django.contrib import admin, messages
from django.db import models
from django.db.models import Count, Min
from django.http import HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from accounts.models import AccountSettings
from chat.models import Conversation, Message, Rating
from chat.records import GenerationRecord
from review.admin_filters import (
    ConsentFilter,
    DateRangeFilter,
    GeneratorModelFilter,
    LabelFilter,
    ProfileFilter,
    RatingFilter,
    StatusFilter,
)
from review.comparison import exportable, items_from_replies, write_ratings_export
from review.export import FORMATS, write_export
from review.models import ComparisonItem, ComparisonRating, ReviewLabel
from review.overview import short_model_name

admin.site.site_header = "Sheldon chat: staff review"
REPLY_FILTERS = (ProfileFilter, GeneratorModelFilter, RatingFilter, StatusFilter, LabelFilter)


class ReadOnlyMixin:
    """Staff may look, never add, change or delete."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReviewChangeList:
    """The review lists: 50 rows a page, a link to the ratings overview above them."""

    list_per_page = 50
    change_list_template = "review/admin/change_list.html"


def reply_link(message):
    url = reverse("admin:chat_message_change", args=[message.pk])
    return format_html('<a href="{}">{}</a>', url, message.text[:80] or f"({message.status}, empty)")


def waits_line(record):
    """Where the person's wait went, as far as the record knows it."""
    parts = [
        f"{label} {value:.2f} s"
        for label, value in (
            ("waited", record.waited_seconds),
            ("queue", record.queue_seconds),
            ("model warm-up", record.warmup_seconds),
        )
        if value is not None
    ]
    return " · ".join(parts) or "waits not recorded"


class ReplyColumns:
    """How a reply's ratings, labels and generation record read on a page."""

    @admin.display(description="model", ordering="generator_model")
    def generator(self, message):  # not `model`: ModelAdmin.model is the admin's model class
        """Profile and short model name; the full path or hub id on hover."""
        if not message.generator_model:
            return message.profile or "–"
        return format_html(
            '<span title="{}">{} · {}</span>',
            message.generator_model,
            message.profile or "?",
            short_model_name(message.generator_model),
        )

    @admin.display(description="ratings")
    def ratings(self, message):
        return format_html_join(
            ", ", "<b>{}</b>{}", ((r.score, f" “{r.comment}”" if r.comment else "") for r in message.ratings.all())
        ) or "–"

    @admin.display(description="staff labels")
    def labels(self, message):
        return format_html_join(
            ", ",
            '<span title="{}">{}</span>',
            ((label.note, label.get_label_display()) for label in message.review_labels.all()),
        ) or "–"

    @admin.display(description="retrieved line")
    def retrieved(self, message):
        retrieved = GenerationRecord.of_message(message).retrieved
        if retrieved is None:
            return "–"
        return format_html(
            "“{}”<br><small>score {} · {}{}</small>",
            retrieved.text,
            f"{retrieved.score:.3f}" if retrieved.score is not None else "?",
            retrieved.episode or "episode unknown",
            f", scene {retrieved.scene}" if retrieved.scene is not None else "",
        )

    @admin.display(description="generation")
    def generation(self, message):
        if message.role != Message.Role.BOT:
            return "–"
        record = GenerationRecord.of_message(message)
        return format_html(
            '{} · <span title="{}">{}</span><br><small>retriever {}</small><br><small>generated in {}, {} new tokens{}{}</small>'
            "<br><small>{}</small>"
            "<br><small>{}, attempt {}</small><br><code>{}</code>",
            record.profile or "no profile",
            record.generator_model,
            short_model_name(record.generator_model) if record.generator_model else "no generator",
            record.retriever_model or "none",
            f"{record.seconds:.2f} s" if record.seconds is not None else "? s",
            record.new_tokens if record.new_tokens is not None else "?",
            ", fallback" if record.fallback else "",
            f", error: {message.error}" if message.error else "",
            waits_line(record),
            record.worker or "no worker",
            record.attempts,
            json.dumps(record.parameters, sort_keys=True),
        )


class MessageInline(ReadOnlyMixin, ReplyColumns, admin.TabularInline):
    """The transcript, in order, with each reply's record; links to label a reply."""

    model = Message
    fk_name = "conversation"
    extra = 0
    ordering = ("created", "id")
    fields = readonly_fields = ("when", "role", "said", "status", "ratings", "labels", "retrieved", "generation")
    verbose_name_plural = "transcript"

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("ratings", "review_labels")

    @admin.display(description="sent")
    def when(self, message):
        return message.created.strftime("%Y-%m-%d %H:%M:%S")

    @admin.display(description="text")
    def said(self, message):
        note = "" if message.is_chosen else " (alternative not shown)"
        if message.role != Message.Role.BOT:
            return message.text
        url = reverse("admin:chat_message_change", args=[message.pk])
        return format_html('{}<br><small><i>{}</i> <a href="{}">label this reply</a></small>', message.text, note, url)


@admin.action(description="Export the selected conversations (JSONL or CSV)…", permissions=["view"])
def export_conversations(modeladmin, request, queryset):
    """Asks for a format and the consent scope, then sends the file."""
    if request.POST.get("export_format") in FORMATS:
        file_format = request.POST["export_format"]
        consented_only = request.POST.get("scope") != "all"
        scope = "consented" if consented_only else "ALL-for-review"
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        response = HttpResponse(content_type="application/x-ndjson" if file_format == "jsonl" else "text/csv")
        response["Content-Disposition"] = f'attachment; filename="transcripts-{scope}-{stamp}.{file_format}"'
        summary = write_export(queryset, response, file_format, consented_only)
        response["X-Export-Summary"] = summary.describe()
        return response
    consenting = queryset.filter(owner__account_settings__allow_training_use=True).count()
    return TemplateResponse(
        request,
        "review/admin/export_confirmation.html",
        {
            **modeladmin.admin_site.each_context(request),
            "title": "Export transcripts",
            "opts": modeladmin.model._meta,
            "selected": queryset.count(),
            "consenting": consenting,
            "formats": FORMATS,
            # Posted back as they came, so the export covers the same conversations.
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            "selected_ids": request.POST.getlist(admin.helpers.ACTION_CHECKBOX_NAME),
            "select_across": request.POST.get("select_across", "0"),
        },
    )


@admin.register(Conversation)
class ConversationAdmin(ReadOnlyMixin, ReviewChangeList, admin.ModelAdmin):
    list_display = ("__str__", "owner", "character", "created", "updated", "n_messages", "lowest_rating", "transcript")
    list_filter = (
        ("owner", admin.RelatedOnlyFieldListFilter),
        ("created", DateRangeFilter),
        "character",
        ConsentFilter,
        *REPLY_FILTERS,
    )
    search_fields = ("title", "messages__text")
    search_help_text = "Words in the title or in any message."
    fields = readonly_fields = ("title", "owner", "character", "created", "updated", "transcript")
    inlines = (MessageInline,)
    actions = (export_conversations,)

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("owner")
            .annotate(message_count=Count("messages", distinct=True), lowest=Min("messages__ratings__score"))
        )

    @admin.display(description="messages", ordering="message_count")
    def n_messages(self, conversation):
        return conversation.message_count

    @admin.display(description="lowest rating", ordering="lowest")
    def lowest_rating(self, conversation):
        return conversation.lowest if conversation.lowest is not None else "–"

    @admin.display(description="transcript")
    def transcript(self, conversation):
        return format_html('<a href="{}">read as chat</a>', reverse("review:transcript", args=[conversation.pk]))


class ReviewLabelInline(admin.TabularInline):
    model = ReviewLabel
    extra = 1
    formfield_overrides = {models.TextField: {"widget": forms.Textarea(attrs={"rows": 2, "cols": 60})}}
    fields = ("label", "note", "author", "created")
    readonly_fields = ("author", "created")


@admin.action(description="Compare the replies to these messages blind (2+ versions)", permissions=["compare"])
def compare_replies(modeladmin, request, queryset):
    """An item for "Compare replies" from each chosen turn whose replies came from two or more versions."""
    outcome = items_from_replies(queryset)
    if outcome.created:
        url = reverse("review:compare_item", args=[outcome.created[0].pk])
        modeladmin.message_user(
            request,
            format_html('{} item(s) to compare. <a href="{}">Rate them</a>.', len(outcome.created), url),
            messages.SUCCESS,
        )
    for question, why in outcome.skipped:
        modeladmin.message_user(request, f"Not compared: “{question.text[:60]}”: {why}.", messages.WARNING)


@admin.register(Message)
class ReplyAdmin(ReplyColumns, ReviewChangeList, admin.ModelAdmin):
    """The character's replies: read-only records, with staff labels to add."""

    list_display = ("short_text", "conversation_link", "owner", "created", "status", "generator", "score", "ratings", "labels")
    list_filter = (
        ("conversation__owner", admin.RelatedOnlyFieldListFilter),
        ("created", DateRangeFilter),
        "conversation__character",
        *REPLY_FILTERS,
        "fallback",
    )
    search_fields = ("text",)
    fields = readonly_fields = (
        "conversation_link", "question", "text", "status", "is_chosen", "created",
        "ratings", "retrieved", "generation",
    )
    inlines = (ReviewLabelInline,)
    actions = (compare_replies,)

    def has_compare_permission(self, request):
        return request.user.has_perm("review.add_comparisonitem")

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .filter(role=Message.Role.BOT)
            .select_related("conversation__owner", "reply_to")
            .prefetch_related("ratings", "review_labels")
        )

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        # "Changing" a reply means labelling it; its own fields stay read-only.
        return request.user.has_perm("review.add_reviewlabel") or request.user.has_perm("review.change_reviewlabel")

    def save_model(self, request, obj, form, change):
        pass  # the reply itself is never written from the admin

    def save_formset(self, request, form, formset, change):
        for label in formset.save(commit=False):  # new and changed ones: now as whoever saves them says
            label.author = request.user
            label.save()
        for label in formset.deleted_objects:
            label.delete()

    @admin.display(description="reply")
    def short_text(self, message):
        return message.text[:80] or f"({message.status}, empty)"

    @admin.display(description="conversation")
    def conversation_link(self, message):
        url = reverse("review:transcript", args=[message.conversation_id])
        return format_html('<a href="{}#message-{}">{}</a>', url, message.pk, message.conversation)

    @admin.display(description="owner", ordering="conversation__owner__username")
    def owner(self, message):
        return message.conversation.owner

    @admin.display(description="in answer to")
    def question(self, message):
        return message.reply_to.text if message.reply_to else "–"

    @admin.display(description="retrieval score", ordering="retrieved_score")
    def score(self, message):
        return f"{message.retrieved_score:.3f}" if message.retrieved_score is not None else "–"


@admin.register(ReviewLabel)
class ReviewLabelAdmin(admin.ModelAdmin):
    list_display = ("label", "note", "reply", "author", "created")
    list_select_related = ("message", "author")
    list_filter = ("label", ("author", admin.RelatedOnlyFieldListFilter), ("created", DateRangeFilter))
    search_fields = ("note", "message__text")
    fields = ("reply", "label", "note", "author", "created")
    readonly_fields = ("reply", "author", "created")

    def save_model(self, request, obj, form, change):
        obj.author = request.user  # the label now says what this person chose, under their name
        super().save_model(request, obj, form, change)

    def has_add_permission(self, request):
        return False  # labels are added on a reply's page

    @admin.display(description="reply")
    def reply(self, judgement):
        return reply_link(judgement.message)


@admin.register(Rating)
class RatingAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("score", "comment", "reply", "user", "updated")
    list_filter = ("score", ("user", admin.RelatedOnlyFieldListFilter), ("updated", DateRangeFilter))
    search_fields = ("comment", "message__text")
    list_select_related = ("message", "user")

    @admin.display(description="reply")
    def reply(self, judgement):
        return reply_link(judgement.message)


@admin.register(AccountSettings)
class AccountSettingsAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Users' own choices: staff can see them, only the user can change them."""

    list_display = ("user", "allow_training_use")
    list_filter = ("allow_training_use",)
    search_fields = ("user__username",)


@admin.action(description="Export the ratings of the selected items (JSONL, consenting users)", permissions=["view"])
def export_comparison_ratings(modeladmin, request, queryset):
    response = HttpResponse(content_type="application/x-ndjson")
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="comparison-ratings-{stamp}.jsonl"'
    # As the command does by default: real turns only of users who allow training use.
    write_ratings_export(exportable(ComparisonRating.objects.filter(candidate__item__in=queryset)), response)
    return response


@admin.register(ComparisonItem)
class ComparisonItemAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Items of "Compare replies": who made what is visible here, so raters rate on the compare page."""

    list_display = ("__str__", "set_name", "last_line", "n_candidates", "n_ratings", "created", "rate")
    list_filter = ("set_name", ("created", DateRangeFilter))
    fields = readonly_fields = ("set_name", "sheet_item", "dialogue", "turn", "candidates_and_systems", "created")
    actions = (export_comparison_ratings,)
    change_list_template = "review/admin/change_list.html"

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(candidate_count=Count("candidates", distinct=True), rating_count=Count("candidates__ratings"))
        )

    @admin.display(description="line answered")
    def last_line(self, item):
        speaker, text = item.dialogue[-1]
        return f"{speaker}: {text[:80]}"

    @admin.display(description="candidates", ordering="candidate_count")
    def n_candidates(self, item):
        return item.candidate_count

    @admin.display(description="ratings", ordering="rating_count")
    def n_ratings(self, item):
        return item.rating_count

    @admin.display(description="rate")
    def rate(self, item):
        return format_html('<a href="{}">rate blind</a>', reverse("review:compare_item", args=[item.pk]))

    @admin.display(description="candidates (systems)")
    def candidates_and_systems(self, item):
        return format_html_join(
            "", "<p>{} <small>({})</small></p>", ((c.text, ", ".join(c.systems)) for c in item.candidates.all())
        )
