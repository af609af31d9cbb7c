from django.conf import settings
from django.db import models


class AccountSettings(models.Model):
    """A user's own choices (the account settings page); created on first use."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="account_settings")
    # Consent to use this user's conversations as training data; off by default.
    allow_training_use = models.BooleanField(default=False)

    class Meta:
        verbose_name = verbose_name_plural = "account settings"

    def __str__(self):
        return f"Settings of {self.user}"

    @classmethod
    def for_user(cls, user) -> "AccountSettings":
        return cls.objects.get_or_create(user=user)[0]
