"""Staff review labels on the character's replies.

Kept apart from the users' own ratings (chat.Rating): a label is a staff
judgement with a note and its author, used to filter transcripts and to
decide which replies become training data.
"""
from django.conf import settings
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
