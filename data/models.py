"""The scripted show: episodes, their lines, and the exchanges built from them."""
from django.db import models


class Episode(models.Model):
    name = models.CharField(max_length=300, unique=True)
    season = models.PositiveSmallIntegerField(default=0)
    number = models.PositiveSmallIntegerField(default=0)
    # Hash of the episode's cleaned lines: a re-import skips unchanged episodes.
    content_hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["season", "number", "name"]

    def __str__(self):
        return self.name


class Line(models.Model):
    episode = models.ForeignKey(Episode, on_delete=models.CASCADE, related_name="lines")
    scene = models.PositiveIntegerField()
    position = models.PositiveIntegerField()
    speaker = models.CharField(max_length=200, db_index=True)
    text = models.TextField()

    class Meta:
        ordering = ["episode", "position"]
        constraints = [models.UniqueConstraint(fields=["episode", "position"], name="unique_line_position")]

    def __str__(self):
        return f"{self.speaker}: {self.text[:60]}"


class Exchange(models.Model):
    """A character's scripted answer to the line before it, with its context."""

    character = models.CharField(max_length=200, db_index=True)
    episode = models.ForeignKey(Episode, on_delete=models.CASCADE, related_name="exchanges")
    scene = models.PositiveIntegerField()
    answer_line = models.OneToOneField(Line, on_delete=models.CASCADE, related_name="exchange")
    question = models.TextField()
    answer = models.TextField()
    context = models.JSONField(default=list)  # earlier lines of the scene, oldest first

    class Meta:
        ordering = ["episode", "answer_line__position"]

    def __str__(self):
        return f"{self.character}: {self.answer[:60]}"
