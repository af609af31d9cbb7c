"""Sign-up and account settings; login, logout and password change are Django's own views."""
from django.contrib import messages
from django.contrib.auth import login, logout
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import UserCreationForm
from django.shortcuts import redirect, render

from .forms import AccountSettingsForm, DeleteAccountForm
from .models import AccountSettings


def signup(request):
    if request.user.is_authenticated:
        return redirect("chat:index")
    form = UserCreationForm(request.POST if request.method == "POST" else None)
    if form.is_bound and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("chat:index")
    return render(request, "registration/signup.html", {"form": form})


@login_required
def account_settings(request):
    # Not `request.POST or None`: unticking the box posts an empty form.
    data = request.POST if request.method == "POST" else None
    form = AccountSettingsForm(data, instance=AccountSettings.for_user(request.user))
    if form.is_bound and form.is_valid():
        form.save()
        messages.success(request, "Your settings are saved.")
        return redirect("account-settings")
    return render(request, "accounts/settings.html", {"form": form})


@login_required
def delete_account(request):
    """Delete the user with everything that is theirs (conversations, messages, ratings cascade)."""
    form = DeleteAccountForm(request.user, request.POST if request.method == "POST" else None)
    if form.is_bound and form.is_valid():
        user = request.user
        logout(request)
        user.delete()
        messages.success(request, "Your account and your conversations are deleted.")
        return redirect("login")
    return render(request, "accounts/delete.html", {"form": form})
