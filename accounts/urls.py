from django.contrib.auth.views import PasswordChangeView
from django.urls import path

from . import views
from .forms import ThrottledPasswordChangeForm

urlpatterns = [
    # Before django.contrib.auth.urls (same prefix): these replace its login, password reset and password change.
    path("login/", views.ThrottledLoginView.as_view(), name="login"),
    path("password_reset/", views.MailedPasswordResetView.as_view(), name="password_reset"),
    path(
        "password_change/",
        PasswordChangeView.as_view(form_class=ThrottledPasswordChangeForm),
        name="password_change",
    ),
    path("signup/", views.signup, name="signup"),
    path("settings/", views.account_settings, name="account-settings"),
    path("delete/", views.delete_account, name="delete-account"),
]
