"""Which conversations and replies a reviewer means: one set of criteria.

The admin's list filters and `export_transcripts` both build their
querysets here, so a filter means the same thing on the page and in the
export. Criteria about replies (rating, status, label, model) are Q objects
over chat.Message; a conversation matches when any of its messages does.
"""
from dataclasses import dataclass
from datetime import date

from django.db.models import Q

from chat.models import Message, Rating
from review.models import ReviewLabel

# The rating choices offered by the admin and the command: value -> (label, bounds).
RATING_CHOICES = {
    "1": ("rated 1", {"at_most": 1}),
    "2-": ("rated 2 or lower", {"at_most": 2}),
    "3-": ("rated 3 or lower", {"at_most": 3}),
    "4+": ("rated 4 or higher", {"at_least": 4}),
    "5": ("rated 5", {"at_least": 5}),
}
UNRATED = "unrated"


def rated(at_most=None, at_least=None):
    """Messages with a user rating within the bounds (inclusive)."""
    ratings = Rating.objects.all()
    if at_most is not None:
        ratings = ratings.filter(score__lte=at_most)
    if at_least is not None:
        ratings = ratings.filter(score__gte=at_least)
    return Q(pk__in=ratings.values("message_id"))


def rating_choice(value):
    """Messages matching one of RATING_CHOICES, or bot replies nobody rated."""
    if value == UNRATED:
        return Q(role=Message.Role.BOT) & ~Q(pk__in=Rating.objects.values("message_id"))
    return rated(**RATING_CHOICES[value][1])


def reply_status(status):
    """Bot replies in this state (user messages are always `done`)."""
    return Q(role=Message.Role.BOT, status=status)


def labelled(label):
    return Q(pk__in=ReviewLabel.objects.filter(label=label).values("message_id"))


def conversations_with(message_q):
    """Conversations that hold at least one message matching message_q."""
    return Q(pk__in=Message.objects.filter(message_q).values("conversation_id"))


@dataclass
class Criteria:
    """Filters for an export; empty ones are ignored. Consent is the export's business."""

    user: str = ""  # the owner's username
    since: date | None = None  # conversation started on or after (UTC date)
    until: date | None = None  # conversation started on or before
    character: str = ""
    profile: str = ""
    generator_model: str = ""
    rating: str = ""  # a key of RATING_CHOICES, or UNRATED
    status: str = ""  # a Message.Status value
    label: str = ""  # a ReviewLabel.Kind value
    search: str = ""  # words in the title or any message's text

    def conversation_q(self):
        q = Q()
        if self.user:
            q &= Q(owner__username=self.user)
        if self.since:
            q &= Q(created__date__gte=self.since)
        if self.until:
            q &= Q(created__date__lte=self.until)
        if self.character:
            q &= Q(character=self.character)
        if self.search:
            q &= Q(title__icontains=self.search) | conversations_with(Q(text__icontains=self.search))
        for message_q in self.message_qs():
            q &= conversations_with(message_q)
        return q

    def message_qs(self):
        if self.profile:
            yield Q(profile=self.profile)
        if self.generator_model:
            yield Q(generator_model=self.generator_model)
        if self.rating:
            yield rating_choice(self.rating)
        if self.status:
            yield reply_status(self.status)
        if self.label:
            yield labelled(self.label)
