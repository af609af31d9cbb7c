"""List filters for the conversation and reply admins.

Each reply filter states its criterion once, as a Q over chat.Message from
review.selection; on the conversation list it keeps the conversations that
hold a matching message.
"""
from datetime import date

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ERROR_FLAG, PAGE_VAR
from django.db.models import Q

from chat.models import Message
from review.models import ReviewLabel
from review.overview import short_model_name
from review.selection import RATING_CHOICES, UNRATED, conversations_with, labelled, rating_choice, reply_status


class DateRangeFilter(admin.FieldListFilter):
    """From and to dates (inclusive, UTC) on a date-time field, typed into a small form."""

    template = "review/admin/date_range_filter.html"

    def __init__(self, field, request, params, model, model_admin, field_path):
        self.since_parameter = f"{field_path}__date__gte"
        self.until_parameter = f"{field_path}__date__lte"
        super().__init__(field, request, params, model, model_admin, field_path)
        self.title = f"{self.title} (from, to)"
        # The form sends an empty box as an empty value: no bound, not an error.
        self.used_parameters = {name: value for name, value in self.used_parameters.items() if self._last(value)}

    @staticmethod
    def _last(value):
        return value[-1] if isinstance(value, list) else value

    def expected_parameters(self):
        return [self.since_parameter, self.until_parameter]

    def queryset(self, request, queryset):
        for value in self.used_parameters.values():
            try:
                date.fromisoformat(self._last(value))
            except ValueError as error:
                raise IncorrectLookupParameters(f"Not a YYYY-MM-DD date: {value}") from error
        return super().queryset(request, queryset)

    def choices(self, changelist):
        # The form replaces only the two dates; every other filter, the search
        # and the ordering stay; the page number and an old error flag go.
        dropped = {*self.expected_parameters(), PAGE_VAR, ERROR_FLAG}
        kept = [
            (name, value)
            for name, values in changelist.filter_params.items()
            if name not in dropped
            for value in values
        ]
        yield {
            "since_parameter": self.since_parameter,
            "until_parameter": self.until_parameter,
            "since": self._last(self.used_parameters.get(self.since_parameter, "")),
            "until": self._last(self.used_parameters.get(self.until_parameter, "")),
            "kept_parameters": kept,
            "clear_query_string": changelist.get_query_string(remove=self.expected_parameters()),
        }


class ReplyFilter(admin.SimpleListFilter):
    """A filter stated over messages; applies to messages or conversations."""

    def reply_q(self, value):
        raise NotImplementedError

    def queryset(self, request, queryset):
        if self.value() is None:
            return queryset
        if self.value() not in {str(lookup) for lookup, _ in self.lookup_choices}:
            raise IncorrectLookupParameters(f"Unknown choice for {self.title}: {self.value()}")
        q = self.reply_q(self.value())
        return queryset.filter(q if queryset.model is Message else conversations_with(q))


class DistinctValueFilter(ReplyFilter):
    """One choice per value the bot replies hold in `field` (e.g. each model id)."""

    field = None

    def lookups(self, request, model_admin):
        values = (
            Message.objects.filter(role=Message.Role.BOT)
            .exclude(**{self.field: ""})
            .values_list(self.field, flat=True)
            .distinct()
            .order_by(self.field)
        )
        return [(value, self.label(value)) for value in values]

    def label(self, value):
        return value

    def reply_q(self, value):
        return Q(**{self.field: value})


class ProfileFilter(DistinctValueFilter):
    title = "inference profile"
    parameter_name = "profile"
    field = "profile"


class GeneratorModelFilter(DistinctValueFilter):
    title = "generator model"
    parameter_name = "model"
    field = "generator_model"

    def label(self, value):
        return short_model_name(value)  # the full path is in the choice's URL


class RatingFilter(ReplyFilter):
    title = "user rating"
    parameter_name = "rating"

    def lookups(self, request, model_admin):
        return [(value, label) for value, (label, _) in RATING_CHOICES.items()] + [(UNRATED, "unrated reply")]

    def reply_q(self, value):
        return rating_choice(value)


class StatusFilter(ReplyFilter):
    title = "reply status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return Message.Status.choices

    def reply_q(self, value):
        return reply_status(value)


class LabelFilter(ReplyFilter):
    title = "staff label"
    parameter_name = "label"

    def lookups(self, request, model_admin):
        return ReviewLabel.Kind.choices

    def reply_q(self, value):
        return labelled(value)


class ConsentFilter(admin.SimpleListFilter):
    title = "owner allows training use"
    parameter_name = "consent"

    def lookups(self, request, model_admin):
        return [("yes", "yes"), ("no", "no")]

    def queryset(self, request, queryset):
        consenting = Q(owner__account_settings__allow_training_use=True)
        if self.value() == "yes":
            return queryset.filter(consenting)
        if self.value() == "no":
            return queryset.exclude(consenting)
        return queryset
