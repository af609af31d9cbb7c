"""Fixed-window counters in the cache (Redis when REDIS_URL is set, so all web processes share them)."""

import hashlib
import unicodedata

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest

TOO_MANY = "Too many attempts from here: wait a few minutes and try again."


def per_window(setting: str) -> tuple[int, int]:
    """(count, seconds) from a setting such as "10/300"."""
    count, seconds = setting.split("/")
    return int(count), int(seconds)


def allow(key: str, limit: str) -> bool:
    """Count one more attempt under `key`; False once the window's `limit` is used up."""
    count, seconds = per_window(limit)
    key = f"throttle:{key}"
    cache.add(key, 0, seconds)  # starts the window; does nothing if it is running
    try:
        used = cache.incr(key)
    except ValueError:  # the window ended between the two calls
        cache.set(key, 1, seconds)
        used = 1
    return used <= count


def client_ip(request: HttpRequest) -> str:
    """The peer's address (behind a proxy, the proxy's: let it limit per client, or set its real-IP header)."""
    return request.META.get("REMOTE_ADDR", "unknown")


def account_allowed(username: str) -> bool:
    """Count an attempt at the account a typed username reaches; False once its window is used up.

    The account as the login form reads the name (spaces stripped, NFKC), case-folded: "victim ", " VICTIM" and
    full-width "ｖｉｃｔｉｍ" share one counter. Hashed: a cache key holds no spaces.
    """
    name = unicodedata.normalize("NFKC", username.strip()).casefold()
    return allow(f"login-user:{hashlib.sha256(name.encode()).hexdigest()[:32]}", settings.LOGIN_USER_RATE_LIMIT)


def login_allowed(request: HttpRequest, username: str) -> bool:
    """Count a login attempt; False once its address or the account it names used up its window."""
    return allow(f"login-ip:{client_ip(request)}", settings.LOGIN_RATE_LIMIT) and account_allowed(username)


def password_check_allowed(user) -> bool:
    """Count a check of a logged-in user's password (account deletion, password change) as a login attempt of the
    account; False once its window is used up: a stolen session must not try passwords without end."""
    return account_allowed(user.get_username())
