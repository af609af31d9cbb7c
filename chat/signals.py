"""Logging out closes the user's open sockets (in every tab and web process)."""

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.signals import user_logged_out
from django.dispatch import receiver
from django.http import HttpRequest

from .notify import user_group

logger = logging.getLogger(__name__)


@receiver(user_logged_out)
def close_sockets_on_logout(
    sender: type, request: HttpRequest | None, user: AbstractBaseUser | None, **kwargs: object
) -> None:
    if user is None:
        return
    try:
        async_to_sync(get_channel_layer().group_send)(user_group(user.pk), {"type": "session.ended"})
    except Exception:  # the logout itself must go through; the sockets then close at their next frame
        logger.exception("Could not close the sockets of user %s", user.pk)
