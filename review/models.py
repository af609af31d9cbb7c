"""Staff review labels on the character's replies, and blind comparisons of replies.

Kept apart from the users' own ratings (chat.Rating): a label is a staff
judgement with a note and its author, used to filter transcripts and to
decide which replies become training data.
"""
from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models


class ReviewLabel(models.Model):
    class Kind(models.TextChoices):
        GREAT = "great", "great"
        OFF_CHARACTER = "off_character", "off-character"
        WRONG_FACT = "wrong_fact", "wrong fact"
        REPETITIVE = "repetitive", "repetitive"
        NOT_AN_ANSWER = "not_an_answer", "does not answer"
        UNSAFE = "unsafe", "unsafe"

    # Labels that mark a reply as bad whatever its users' ratings say.
    NEGATIVE = (Kind.OFF_CHARACTER, Kind.WRONG_FACT, Kind.REPETITIVE, Kind.NOT_AN_ANSWER, Kind.UNSAFE)

    message = models.ForeignKey(
        "chat.Message",
        on_delete=models.CASCADE,
        related_name="review_labels",
        limit_choices_to={"role": "bot"},
    )
    label = models.CharField(max_length=32, choices=Kind.choices, db_index=True)
    note = models.TextField(blank=True, max_length=2000)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="review_labels"
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created", "-id"]
        constraints = [models.UniqueConstraint(fields=["message", "label"], name="one_label_kind_per_message")]

    def __str__(self):
        return f"{self.get_label_display()} on message {self.message_id}"


class ComparisonItem(models.Model):
    """One dialogue and the candidate replies staff compare blind ("Compare replies").

    From a blind sheet (`load_comparison`), or from a real conversation turn
    whose regenerated replies came from different model versions.
    """

    set_name = models.CharField(max_length=200, db_index=True, help_text="the sheet it came from, or `conversations`")
    sheet_item = models.PositiveIntegerField(null=True, blank=True, help_text="the item's number on its sheet")
    # [[speaker, text], ...], oldest first; the last line is the one the candidates answer.
    dialogue = models.JSONField()
    turn = models.OneToOneField(
        "chat.Message",
        null=True,
        blank=True,
        on_delete=models.CASCADE,  # the item copies the user's words: it goes with their conversation
        related_name="comparison",
        help_text="the user message the candidates answer, for a real conversation turn",
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["set_name", "sheet_item"], condition=models.Q(sheet_item__isnull=False), name="one_item_per_sheet_number"
            )
        ]

    def __str__(self):
        where = f"item {self.sheet_item}" if self.sheet_item is not None else f"turn {self.turn_id}"
        return f"{self.set_name} {where}"


class ComparisonCandidate(models.Model):
    """A reply to compare; `systems` names every system/version that gave this text (hidden from raters)."""

    item = models.ForeignKey(ComparisonItem, on_delete=models.CASCADE, related_name="candidates")
    text = models.TextField()
    systems = models.JSONField(default=list)
    message = models.ForeignKey(
        "chat.Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="comparison_candidates"
    )

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return f"{', '.join(self.systems)}: {self.text[:60]}"


class ComparisonRating(models.Model):
    """A staff member's rating of one candidate, on the blind rubric's scales."""

    candidate = models.ForeignKey(ComparisonCandidate, on_delete=models.CASCADE, related_name="ratings")
    rater = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="comparison_ratings")
    sense = models.PositiveSmallIntegerField(validators=[MinValueValidator(1), MaxValueValidator(5)])
    character = models.PositiveSmallIntegerField(validators=[MinValueValidator(1), MaxValueValidator(5)])
    fit = models.PositiveSmallIntegerField(validators=[MinValueValidator(1), MaxValueValidator(5)])
    bad = models.BooleanField(default=False)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["candidate", "rater"], name="one_comparison_rating_per_rater"),
            *(
                models.CheckConstraint(
                    condition=models.Q(**{f"{scale}__gte": 1, f"{scale}__lte": 5}), name=f"comparison_{scale}_1_to_5"
                )
                for scale in ("sense", "character", "fit")
            ),
        ]

    def __str__(self):
        return f"{self.sense}/{self.character}/{self.fit}{' bad' if self.bad else ''} by {self.rater} on {self.candidate_id}"
