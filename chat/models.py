"""Conversations with the character, their messages, and users' ratings."""
from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models.functions import Now


class Conversation(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations")
    title = models.CharField(max_length=200, blank=True)
    character = models.CharField(max_length=200, default="Sheldon")
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated"]
        indexes = [models.Index(fields=["owner", "-updated"])]

    def __str__(self):
        return self.title or f"Conversation {self.pk}"


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user"
        BOT = "bot"

    class Status(models.TextChoices):
        QUEUED = "queued"
        STREAMING = "streaming"
        DONE = "done"
        FAILED = "failed"
        STOPPED = "stopped"

    FINISHED = (Status.DONE, Status.FAILED, Status.STOPPED)
    IN_PROGRESS = (Status.QUEUED, Status.STREAMING)

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=8, choices=Role.choices)
    text = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DONE, db_index=True)
    # The database's clock, as every time the sweep compares with (chat/generation.py says why).
    created = models.DateTimeField(db_default=Now(), db_index=True)
    updated = models.DateTimeField(auto_now=True)

    # A bot message answers a user message; regenerated alternatives answer
    # the same one, and exactly one of them is the chosen one.
    reply_to = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="replies"
    )
    is_chosen = models.BooleanField(default=True)
    stop_requested = models.BooleanField(default=False)

    # The generation record of a bot message.
    profile = models.CharField(max_length=100, blank=True)
    generator_model = models.CharField(max_length=300, blank=True, db_index=True)
    retriever_model = models.CharField(max_length=300, blank=True)
    parameters = models.JSONField(default=dict, blank=True)
    retrieved_text = models.TextField(blank=True)
    retrieved_score = models.FloatField(null=True, blank=True)
    retrieved_episode = models.CharField(max_length=300, blank=True)
    retrieved_scene = models.PositiveIntegerField(null=True, blank=True)
    seconds = models.FloatField(null=True, blank=True)  # generating, once the models were loaded
    queue_seconds = models.FloatField(null=True, blank=True)  # until a worker took the reply
    warmup_seconds = models.FloatField(null=True, blank=True)  # loading the models for this reply
    waited_seconds = models.FloatField(null=True, blank=True)  # from the message to the finished reply
    new_tokens = models.PositiveIntegerField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    # How many times a worker claimed this reply; a redelivered task restarts
    # it, and only the worker holding the latest attempt may write to it.
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True)
    fallback = models.BooleanField(default=False)

    class Meta:
        ordering = ["created", "id"]
        indexes = [models.Index(fields=["conversation", "-created"])]

    def __str__(self):
        return f"{self.role}: {self.text[:60]}"


class Rating(models.Model):
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="ratings")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="ratings")
    score = models.PositiveSmallIntegerField(validators=[MinValueValidator(1), MaxValueValidator(5)])
    comment = models.TextField(blank=True, max_length=2000)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["message", "user"], name="one_rating_per_user_and_message"),
            models.CheckConstraint(condition=models.Q(score__gte=1, score__lte=5), name="rating_score_1_to_5"),
        ]

    def __str__(self):
        return f"{self.score} by {self.user} on message {self.message_id}"


class ReplyCharge(models.Model):
    """A reply a user asked for (a message, a regenerate, an edit), counted by the rate limits.

    Kept apart from the messages: an edit deletes the replies it replaces and deleting a conversation deletes
    its messages, and neither may give the user's allowance back. Rows older than the longest limit's window are
    deleted as new ones come.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="reply_charges")
    tokens = models.PositiveIntegerField()  # services.token_cost of the message it answers
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["user", "created"])]

    def __str__(self):
        return f"{self.tokens} tokens for {self.user} at {self.created:%Y-%m-%d %H:%M:%S}"
