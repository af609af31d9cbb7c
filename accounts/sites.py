"""The admin site with the site's limits on password checks: its login, and its password change.

Installed in place of `django.contrib.admin` by `accounts.apps.ThrottledAdminConfig` (Django's "overriding the
default admin site"): staff accounts read
every transcript, so their password must not be guessable without end on the admin's own pages.
"""

from django.contrib import admin
from django.contrib.auth.views import PasswordChangeView
from django.urls import reverse

from .forms import ThrottledAdminAuthenticationForm, ThrottledAdminPasswordChangeForm


class ThrottledAdminSite(admin.AdminSite):
    login_form = ThrottledAdminAuthenticationForm

    def password_change(self, request, extra_context=None):
        """Django's, with the throttled form (its form class is not a setting)."""
        request.current_app = self.name
        return PasswordChangeView.as_view(
            form_class=ThrottledAdminPasswordChangeForm,
            success_url=reverse("admin:password_change_done", current_app=self.name),
            extra_context={**self.each_context(request), **(extra_context or {})},
        )(request)
