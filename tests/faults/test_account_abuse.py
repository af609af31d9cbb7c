"""Account abuse: throttled log-ins and sign-ups, a generated demo password and secret key, the deployment switch."""

import json
import os
import stat
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
from django.db import transaction
from django.test import Client

from chat.models import Conversation

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.django_db


def from_address():
    """A client from an address of its own, so earlier runs' counters (in the shared cache) do not count."""
    return Client(REMOTE_ADDR=f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}")


def test_password_guessing_is_throttled_per_address_and_per_username(settings, django_user_model):
    settings.LOGIN_RATE_LIMIT, settings.LOGIN_USER_RATE_LIMIT = "5/300", "3/300"
    victim = f"victim-{uuid.uuid4().hex[:8]}"
    django_user_model.objects.create_user(victim, password="the-right-password-1")
    attacker = from_address()
    answers = [attacker.post("/accounts/login/", {"username": f"u{n}", "password": "x"}).status_code for n in range(6)]
    assert answers == [200] * 5 + [429]  # wrong passwords, then refused without checking
    # Per username, from many addresses: the fourth try is refused even with the right password.
    for _ in range(3):
        assert from_address().post("/accounts/login/", {"username": victim, "password": "wrong"}).status_code == 200
    refused = from_address().post("/accounts/login/", {"username": victim, "password": "the-right-password-1"})
    assert refused.status_code == 429 and b"Too many attempts" in refused.content
    # The same account under another spelling that the login form reads as it (spaces, full-width, case).
    for spelling in (f" {victim}", f"{victim}\t", victim.upper(), "".join(chr(ord(c) + 0xFEE0) for c in victim)):
        refused = from_address().post("/accounts/login/", {"username": spelling, "password": "the-right-password-1"})
        assert refused.status_code == 429, spelling


def test_the_admin_login_keeps_the_same_limits(settings, django_user_model):
    settings.LOGIN_RATE_LIMIT, settings.LOGIN_USER_RATE_LIMIT = "5/300", "3/300"
    boss = f"boss-{uuid.uuid4().hex[:8]}"
    django_user_model.objects.create_user(boss, password="the-right-password-1", is_staff=True)
    attacker = from_address()
    for n in range(5):
        assert b"Too many attempts" not in attacker.post("/admin/login/", {"username": f"u{n}", "password": "x"}).content
    assert b"Too many attempts" in attacker.post("/admin/login/", {"username": "u5", "password": "x"}).content
    for _ in range(3):
        from_address().post("/admin/login/", {"username": boss, "password": "wrong"})
    refused = from_address().post("/admin/login/", {"username": boss, "password": "the-right-password-1"})
    assert b"Too many attempts" in refused.content and "_auth_user_id" not in refused.wsgi_request.session


def test_sign_ups_are_throttled_per_address(settings):
    settings.SIGNUP_RATE_LIMIT = "2/3600"
    client = from_address()
    for _ in range(2):
        name = f"throwaway-{uuid.uuid4().hex[:8]}"
        answer = client.post(
            "/accounts/signup/", {"username": name, "password1": "Cooper-73-prime", "password2": "Cooper-73-prime"}
        )
        assert answer.status_code == 302
        client.post("/accounts/logout/")
    third = client.post(
        "/accounts/signup/", {"username": "third-one", "password1": "Cooper-73-prime", "password2": "Cooper-73-prime"}
    )
    assert third.status_code == 429 and b"Too many attempts" in third.content


def test_sign_up_forms_sent_back_do_not_use_up_the_limit(settings):
    settings.SIGNUP_RATE_LIMIT = "2/3600"
    client = from_address()
    for _ in range(5):  # a common password, then two that do not match: sent back, no account made
        assert client.post("/accounts/signup/", {"username": "x", "password1": "password", "password2": "password"}).status_code == 200
    name = f"throwaway-{uuid.uuid4().hex[:8]}"
    answer = client.post("/accounts/signup/", {"username": name, "password1": "Cooper-73-prime", "password2": "Cooper-73-prime"})
    assert answer.status_code == 302


def test_password_reset_is_offered_only_with_mail(client, settings):
    settings.EMAIL_HOST = ""
    assert client.get("/accounts/password_reset/").status_code == 404
    settings.EMAIL_HOST = "mail.example.com"
    assert client.get("/accounts/password_reset/").status_code == 200


def test_the_demo_password_is_generated_per_installation(settings, tmp_path):
    from data.management.commands.bootstrap import demo_password

    settings.VAR_DIR = tmp_path / "one"
    settings.VAR_DIR.mkdir()
    first, made = demo_password()
    assert made and len(first) >= 16 and first != "bazinga-demo"
    assert demo_password() == (first, False)  # the same on the next `make run`
    assert stat.S_IMODE((settings.VAR_DIR / "demo-password").stat().st_mode) == 0o600
    settings.VAR_DIR = tmp_path / "two"
    settings.VAR_DIR.mkdir()
    assert demo_password()[0] != first


def settings_in_a_process(var_dir, code, **env):
    environment = {key: value for key, value in os.environ.items() if key != "SECRET_KEY"}
    environment.update(VAR_DIR=str(var_dir), DJANGO_SETTINGS_MODULE="sheldonsite.settings", **env)
    return subprocess.run([sys.executable, *code], cwd=REPO, env=environment, capture_output=True, text=True)


PRINT_KEY = ["-c", "import django; django.setup(); from django.conf import settings; print(settings.SECRET_KEY)"]


def test_without_secret_key_each_installation_makes_its_own(tmp_path):
    first = settings_in_a_process(tmp_path / "a", PRINT_KEY).stdout.strip()
    again = settings_in_a_process(tmp_path / "a", PRINT_KEY).stdout.strip()
    other = settings_in_a_process(tmp_path / "b", PRINT_KEY).stdout.strip()
    assert len(first) >= 50 and first == again != other
    assert stat.S_IMODE((tmp_path / "a" / "secret-key").stat().st_mode) == 0o600


def test_check_deploy_is_clean_with_the_deployment_switch_only(tmp_path):
    check = ["manage.py", "check", "--deploy", "--fail-level", "WARNING"]
    switched = settings_in_a_process(tmp_path, check, SECURE_DEPLOYMENT="1", ALLOWED_HOSTS="chat.example.com")
    assert switched.returncode == 0, switched.stdout + switched.stderr
    plain = settings_in_a_process(tmp_path, check, ALLOWED_HOSTS="chat.example.com")
    assert plain.returncode != 0 and "SECURE_SSL_REDIRECT" in plain.stdout + plain.stderr


def test_conversations_are_capped_and_listed_a_page_at_a_time(settings, django_user_model):
    settings.CHAT_MAX_CONVERSATIONS = 5
    client = Client()
    client.force_login(django_user_model.objects.create_user("collector", password="a-long-password-42"))
    created = [client.post("/api/conversations/", {}, content_type="application/json") for _ in range(6)]
    assert [answer.status_code for answer in created] == [201] * 5 + [400]
    assert "delete one" in created[-1].json()["error"]
    first = client.get("/api/conversations/?limit=3").json()
    assert len(first["conversations"]) == 3 and first["has_more"]
    # Between the two reads the oldest conversation is renamed: it moves to the top, ahead of the first page.
    oldest = Conversation.objects.filter(owner__username="collector").earliest("updated").pk
    client.patch(f"/api/conversations/{oldest}/", {"title": "Renamed"}, content_type="application/json")
    second = client.get("/api/conversations/", {"limit": 3, "after": first["next"]}).json()
    ids = [c["id"] for c in first["conversations"] + second["conversations"]]
    # None read twice (an offset gave the first page's last one again, pushed down by the renamed one), and the
    # renamed one is where a new read starts.
    assert len(ids) == len(set(ids)) == 4 and not second["has_more"]
    assert client.get("/api/conversations/?limit=3").json()["conversations"][0]["id"] == oldest
    for bad in ("-1", "yesterday~3", "2026-12-03T10:00:00~3", f"{first['next'].split('~')[0]}~x"):
        assert client.get("/api/conversations/", {"after": bad}).status_code == 400, bad


@pytest.mark.django_db(transaction=True)
def test_two_conversations_created_at_once_keep_the_cap(settings, django_user_model):
    settings.CHAT_MAX_CONVERSATIONS = 2
    user = django_user_model.objects.create_user(f"twin-{uuid.uuid4().hex[:8]}", password="a-long-password-42")
    client = Client()
    client.force_login(user)
    Conversation.objects.create(owner=user)
    answers = []
    with transaction.atomic():  # another request creating the second one, not committed yet
        django_user_model.objects.select_for_update().get(pk=user.pk)
        Conversation.objects.create(owner=user)
        racing = threading.Thread(
            target=lambda: answers.append(client.post("/api/conversations/", {}, content_type="application/json"))
        )
        racing.start()
        racing.join(timeout=2)
        assert racing.is_alive()  # it waits for the account's lock instead of counting one conversation
    racing.join(timeout=30)
    assert answers[0].status_code == 400 and Conversation.objects.filter(owner=user).count() == 2


def test_the_machine_itself_always_reaches_the_site_by_its_loopback_names(tmp_path):
    """The containers' health check and `make run`'s readiness poll ask 127.0.0.1, whatever name ALLOWED_HOSTS gives."""
    ask = [
        "-c",
        "import django, json; django.setup(); from django.test import Client; "
        "print(json.dumps([Client().get('/healthz', HTTP_HOST=host).status_code for host in "
        "('127.0.0.1:8000', 'localhost', 'chat.example.com', 'evil.example')]))",
    ]
    answered = settings_in_a_process(tmp_path, ask, ALLOWED_HOSTS="chat.example.com")
    *allowed, foreign = json.loads(answered.stdout.strip().splitlines()[-1])
    assert 400 not in allowed and foreign == 400, answered.stdout + answered.stderr  # 400: DisallowedHost


def test_the_embedded_database_is_a_file_of_var_dir_whatever_its_folder_is_named(tmp_path):
    var_dir = tmp_path / "a #1 100%20 dir"  # URL syntax in a folder's name
    var_dir.mkdir()
    name = ["-c", "import django; django.setup(); from django.conf import settings; print(settings.DATABASES['default']['NAME'])"]
    assert settings_in_a_process(var_dir, name, DATABASE_URL="").stdout.strip() == str(var_dir / "db.sqlite3")


def test_the_images_build_step_leaves_no_secret_key_in_the_image(tmp_path):
    """Made as the Dockerfile makes it: a key written then would be root's, unreadable to the app, and shared."""
    dockerfile = (REPO / "Dockerfile").read_text()
    step = next(line for line in dockerfile.splitlines() if "collectstatic" in line and line.startswith("RUN "))
    command = step.removeprefix("RUN ").rstrip(" \\")
    environment = {key: value for key, value in os.environ.items() if key != "SECRET_KEY"}
    built = subprocess.run(
        ["sh", "-c", command.replace("python ", f"{sys.executable} ", 1)], cwd=REPO, capture_output=True, text=True,
        env={**environment, "VAR_DIR": str(tmp_path)},
    )
    assert built.returncode == 0, built.stderr
    assert not (tmp_path / "secret-key").exists()


def test_a_sessions_password_checks_are_limited_per_account(settings, django_user_model):
    """A stolen session must not try passwords without end: a right one deletes the account or changes its password."""
    settings.LOGIN_USER_RATE_LIMIT = "3/300"
    owner = django_user_model.objects.create_user(f"owner-{uuid.uuid4().hex[:8]}", password="the-right-password-1")
    session = from_address()
    session.force_login(owner)
    for _ in range(3):
        wrong = session.post("/accounts/delete/", {"password": "guess", "confirm": "on"})
        assert b"That is not your password." in wrong.content
    right = session.post("/accounts/delete/", {"password": "the-right-password-1", "confirm": "on"})
    assert b"Too many attempts" in right.content and django_user_model.objects.filter(pk=owner.pk).exists()
    change = {"old_password": "the-right-password-1", "new_password1": "Taken-over-77", "new_password2": "Taken-over-77"}
    assert b"Too many attempts" in session.post("/accounts/password_change/", change).content
    owner.refresh_from_db()
    assert owner.check_password("the-right-password-1")



def test_sign_up_forms_are_limited_too_so_usernames_are_not_probed_without_end(settings, django_user_model):
    settings.SIGNUP_ATTEMPT_RATE_LIMIT = "4/3600"
    taken = django_user_model.objects.create_user(f"taken-{uuid.uuid4().hex[:8]}").username
    client = from_address()
    probe = {"username": taken, "password1": "Cooper-73-prime", "password2": "Cooper-73-prime"}
    assert [client.post("/accounts/signup/", probe).status_code for _ in range(5)] == [200] * 4 + [429]


def test_the_admins_password_change_counts_as_the_accounts_login_attempts(settings, django_user_model):
    settings.LOGIN_USER_RATE_LIMIT = "3/300"
    boss = django_user_model.objects.create_user(f"boss-{uuid.uuid4().hex[:8]}", password="the-right-password-1", is_staff=True)
    session = from_address()
    session.force_login(boss)
    wrong = {"old_password": "guess", "new_password1": "Taken-over-77", "new_password2": "Taken-over-77"}
    for _ in range(3):
        assert b"Too many attempts" not in session.post("/admin/password_change/", wrong).content
    right = {**wrong, "old_password": "the-right-password-1"}
    assert b"Too many attempts" in session.post("/admin/password_change/", right).content
    boss.refresh_from_db()
    assert boss.check_password("the-right-password-1")
    # The same window as the account's log-ins: a login with the right password is refused as well.
    assert from_address().post("/accounts/login/", {"username": boss.username, "password": "the-right-password-1"}).status_code == 429


def test_a_limits_window_lasts_as_long_as_the_limit_says():
    """Not the cache's default timeout (300 s): a sign-up limit of 5 an hour must not become 5 every 5 minutes."""
    from django.core.cache import caches

    from accounts.throttle import allow

    cache = caches["default"]
    if "Redis" not in type(cache).__name__:
        pytest.skip(f"reads the window's time to live in Redis; the cache here is {type(cache).__name__}")
    key = f"window-{uuid.uuid4().hex}"
    assert allow(key, "5/3600")
    time_to_live = cache._cache.get_client(write=False).ttl(cache.make_key(f"throttle:{key}"))
    assert 3500 < time_to_live <= 3600
