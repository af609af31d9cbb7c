from django.urls import path

from . import views

urlpatterns = [
    path("signup/", views.signup, name="signup"),
    path("settings/", views.account_settings, name="account-settings"),
    path("delete/", views.delete_account, name="delete-account"),
]
