"""The admin's login page keeps the site's limits on login attempts (accounts.forms)."""

from django.contrib import admin

from .forms import ThrottledAdminAuthenticationForm

admin.site.login_form = ThrottledAdminAuthenticationForm
