"""Logging out, or a change of password, closes the user's open sockets (in every tab and web process)."""

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.dispatch import receiver
from django.http import HttpRequest

from .notify import user_group

logger = logging.getLogger(__name__)


def _tell_users_sockets(user_id: int, event_type: str) -> None:
    try:
        async_to_sync(get_channel_layer().group_send)(user_group(user_id), {"type": event_type})
    except Exception:  # what caused it must go through; the sockets then close at their next frame
        logger.exception("Could not close the sockets of user %s", user_id)


@receiver(user_logged_out)
def close_sockets_on_logout(
    sender: type, request: HttpRequest | None, user: AbstractBaseUser | None, **kwargs: object
) -> None:
    if user is not None:
        _tell_users_sockets(user.pk, "session.ended")


class CloseSocketsOnPasswordChange:
    """A password validator in name only (AUTH_PASSWORD_VALIDATORS): Django calls every validator's
    `password_changed` whenever a user's password changes, by the change or reset pages, the admin or
    `changepassword`. The change ends the user's other sessions, but a socket checks its session only when it
    connects: so every socket of the user is closed, its page reconnects, and only a session that is still
    valid gets back in (one that took over an account cannot read or post on through an open socket)."""

    def validate(self, password: str, user: AbstractBaseUser | None = None) -> None:
        return None

    def get_help_text(self) -> str:
        return ""

    def password_changed(self, password: str, user: AbstractBaseUser | None = None) -> None:
        if user is not None and user.pk is not None:
            user_id = user.pk
            transaction.on_commit(lambda: _tell_users_sockets(user_id, "session.changed"), robust=True)
