"""Sign-up and account settings; login, logout and password change are Django's own views."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login, logout
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import UserCreationForm
from django.contrib.auth.views import LoginView, PasswordResetView
from django.http import Http404
from django.shortcuts import redirect, render

from .forms import AccountSettingsForm, DeleteAccountForm
from .models import AccountSettings
from .throttle import TOO_MANY, allow, client_ip, login_allowed


class ThrottledLoginView(LoginView):
    """Django's login, with attempts limited per address and per username (password guessing)."""

    def post(self, request, *args, **kwargs):
        if not login_allowed(request, request.POST.get("username", "")):
            form = self.get_form()
            form.add_error(None, TOO_MANY)
            return self.render_to_response(self.get_context_data(form=form), status=429)
        return super().post(request, *args, **kwargs)


class MailedPasswordResetView(PasswordResetView):
    """Password reset only where mail is set up (EMAIL_HOST); otherwise there is no such page."""

    def dispatch(self, request, *args, **kwargs):
        if not settings.EMAIL_HOST:
            raise Http404("Password reset needs mail, and none is set up.")
        return super().dispatch(request, *args, **kwargs)


def signup(request):
    if request.user.is_authenticated:
        return redirect("chat:index")
    form = UserCreationForm(request.POST if request.method == "POST" else None)
    # Two limits per address: forms sent (loose: one sent back says whether a username is taken, so names are
    # not probed without end), and accounts made (a form sent back for a bad password does not count).
    if form.is_bound and not (
        allow(f"signup-try-ip:{client_ip(request)}", settings.SIGNUP_ATTEMPT_RATE_LIMIT)
        and (not form.is_valid() or allow(f"signup-ip:{client_ip(request)}", settings.SIGNUP_RATE_LIMIT))
    ):
        form.add_error(None, TOO_MANY)
        return render(request, "registration/signup.html", {"form": form}, status=429)
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
