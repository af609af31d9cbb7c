from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm, AdminPasswordChangeForm
from django.contrib.auth.forms import PasswordChangeForm
from django.core.exceptions import ValidationError

from .models import AccountSettings
from .throttle import TOO_MANY, login_allowed, password_check_allowed


class AccountSettingsForm(forms.ModelForm):
    class Meta:
        model = AccountSettings
        fields = ["allow_training_use"]
        labels = {"allow_training_use": "Let my conversations be used to improve the model"}
        help_texts = {
            "allow_training_use": (
                "Staff may export conversations of people who agreed as training data. Off unless you turn it on."
            )
        }


class DeleteAccountForm(forms.Form):
    """Deleting an account needs the password again and an explicit yes."""

    password = forms.CharField(
        label="Your password", strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "current-password"})
    )
    confirm = forms.BooleanField(
        label="Delete my account, my conversations and my ratings for good",
        help_text="This cannot be undone. Export your conversations first if you want to keep them.",
    )

    def __init__(self, user, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_password(self):
        password = self.cleaned_data["password"]
        if not password_check_allowed(self.user):
            raise forms.ValidationError(TOO_MANY)
        if not self.user.check_password(password):
            raise forms.ValidationError("That is not your password.")
        return password


class ThrottledPasswordChangeForm(PasswordChangeForm):
    """Django's password change, its old password checked within the account's limit."""

    def clean_old_password(self):
        if not password_check_allowed(self.user):
            raise forms.ValidationError(TOO_MANY, code="throttled")
        return super().clean_old_password()


class ThrottledAdminPasswordChangeForm(ThrottledPasswordChangeForm, AdminPasswordChangeForm):
    """The admin's password change, likewise."""


class ThrottledAdminAuthenticationForm(AdminAuthenticationForm):
    """The admin's login form, with the login page's limits on attempts (staff accounts read every transcript)."""

    def clean(self):
        if not login_allowed(self.request, self.data.get("username", "")):
            raise ValidationError(TOO_MANY, code="throttled")
        return super().clean()
