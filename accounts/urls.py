from django.urls import path

from . import views

urlpatterns = [
    # Before django.contrib.auth.urls (same prefix): these replace its login and password reset.
    path("login/", views.ThrottledLoginView.as_view(), name="login"),
    path("password_reset/", views.MailedPasswordResetView.as_view(), name="password_reset"),
    path("signup/", views.signup, name="signup"),
    path("settings/", views.account_settings, name="account-settings"),
    path("delete/", views.delete_account, name="delete-account"),
]
