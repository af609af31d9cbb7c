"""200 sockets opened 50 at a time against a real daphne: none refused, stops still answered."""

import asyncio

import pytest
from django.test import Client

from bench.socket_storm import report, storm
from chat.models import Conversation
from tests.chat.live import LiveStack

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]


def test_a_socket_storm_fails_no_handshake_and_stops_are_answered(
    django_db_setup, redis_url, tiny_chat, tmp_path, django_user_model
):
    user = django_user_model.objects.create_user("amy", password="a-long-password-42")
    conversation = Conversation.objects.create(owner=user)
    client = Client()
    client.force_login(user)
    stack = LiveStack(redis_url, tiny_chat, tmp_path)
    stack.env["DB_POOL_MAX_SIZE"] = "16"
    server, url = stack.start_server()
    try:
        figures = asyncio.run(storm(url, client.cookies["sessionid"].value, conversation.pk))
    finally:
        stack.stop(server)
    print("\n" + report(figures))
    assert figures["failed"] == 0, figures["failures"]
    assert figures["stops"] >= 3
