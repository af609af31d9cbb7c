"""The WebSocket stack's middleware: origin, session and user.

- `SameOriginValidator`: Channels' allowed-hosts check looks at the Origin's
  host only; this also wants its scheme and port to be the page's own (the
  Host header the browser sent), or one of CSRF_TRUSTED_ORIGINS (a proxy).
- `SocketAuthMiddleware`: Channels' AuthMiddleware, with the session and user
  lookup on the executor pool instead of the one thread all sockets share
  (the handshakes queued there under a socket storm).
"""

from urllib.parse import urlparse

from channels.auth import AuthMiddleware, get_user
from channels.db import database_sync_to_async
from channels.security.websocket import AllowedHostsOriginValidator, WebsocketDenier
from channels.sessions import CookieMiddleware, SessionMiddleware
from django.conf import settings


def _header(scope: dict, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin1")
    return None


def same_origin(scope: dict) -> bool:
    """The Origin's scheme, host and port are the page's own (or a trusted origin); True without a Host header."""
    origin, host = _header(scope, b"origin"), _header(scope, b"host")
    if origin is None or host is None:
        return True  # the allowed-hosts check decides alone
    if origin in settings.CSRF_TRUSTED_ORIGINS:
        return True
    try:
        parsed = urlparse(origin)
        origin_port = parsed.port  # raises on a port that is not one (":99999") or a broken IPv6 address
    except ValueError:
        return False
    secure = scope.get("scheme") in ("wss", "https")
    expected_scheme = "https" if secure else "http"
    default_port = 443 if parsed.scheme == "https" else 80
    host_name, _, host_port = host.rpartition(":") if host.rsplit(":", 1)[-1].isdigit() else (host, "", "")
    port = int(host_port) if host_port else (443 if secure else 80)
    return (
        parsed.scheme == expected_scheme
        and (parsed.hostname or "") == host_name.strip("[]").lower()
        and (origin_port or default_port) == port
    )


class SameOriginValidator:
    def __init__(self, application):
        self.application = AllowedHostsOriginValidator(application)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and not same_origin(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)


class SocketAuthMiddleware(AuthMiddleware):
    async def resolve_scope(self, scope):
        scope["user"]._wrapped = await database_sync_to_async(get_user.func, thread_sensitive=False)(scope)


def socket_auth_stack(inner):
    return CookieMiddleware(SessionMiddleware(SocketAuthMiddleware(inner)))
