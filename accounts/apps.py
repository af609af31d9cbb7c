from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class AccountsConfig(AppConfig):
    name = "accounts"
    default = True  # this module also holds the admin's config below


class ThrottledAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin, with the site that keeps the login limits (accounts/sites.py)."""

    default = False
    default_site = "accounts.sites.ThrottledAdminSite"
