from django.conf import settings
from django.db import models


class Profile(models.Model):
    """Per-user choices; created on first use."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="profile")
    # Consent to use this user's conversations as training data; off by default.
    allow_training_use = models.BooleanField(default=False)

    def __str__(self):
        return f"Profile of {self.user}"

    @classmethod
    def for_user(cls, user):
        return cls.objects.get_or_create(user=user)[0]
