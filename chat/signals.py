"""Logging out, or a change of password, closes the user's open sockets (in every tab and web process)."""

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.db.models.signals import pre_save
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


@receiver(pre_save, sender=settings.AUTH_USER_MODEL)
def close_sockets_on_password_change(sender: type, instance: AbstractBaseUser, **kwargs: object) -> None:
    """A change of password (the change or reset pages, the admin, `changepassword`) ends the user's other
    sessions, but a socket checks its session only when it connects: every socket of the user is closed
    once the change commits, its page reconnects, and only a session that is still valid gets back in (one
    that took over the account cannot read or post on through a socket opened before)."""
    update_fields = kwargs.get("update_fields")
    if instance.pk is None or (update_fields is not None and "password" not in update_fields):
        return  # a new user, or a save of other fields (a login's last_login)
    stored = sender.objects.filter(pk=instance.pk).values_list("password", flat=True).first()
    if stored is not None and stored != instance.password:
        user_id = instance.pk
        transaction.on_commit(lambda: _tell_users_sockets(user_id, "session.changed"), robust=True)
