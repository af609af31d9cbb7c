"""Redis restarted under open sockets: they close, and the page's reconnect is answered (no 500)."""
import asyncio
import json

import pytest
import websockets
from django.test import Client

from chat.models import Conversation
from tests.chat.live import LiveStack

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


async def open_socket(url, cookie, conversation_id):
    return await websockets.connect(
        url.replace("http", "ws", 1) + f"/ws/conversations/{conversation_id}/",
        additional_headers={"Cookie": f"sessionid={cookie}", "Origin": url},
        open_timeout=10,
    )


async def answers_a_stop(socket):
    await socket.send(json.dumps({"type": "stop"}))
    frame = json.loads(await asyncio.wait_for(socket.recv(), 10))
    return frame.get("code") == "not_generating"


def test_sockets_reconnect_after_a_redis_restart(own_redis, tiny_chat, tmp_path, django_user_model):
    user = django_user_model.objects.create_user("penny", password="a-long-password-42")
    conversation = Conversation.objects.create(owner=user)
    client = Client()
    client.force_login(user)
    cookie = client.cookies["sessionid"].value
    stack = LiveStack(own_redis.url, tiny_chat, tmp_path)
    server, url = stack.start_server()

    async def scenario():
        socket = await open_socket(url, cookie, conversation.pk)
        assert await answers_a_stop(socket)
        own_redis.restart(down_seconds=1.0)
        # The first reconnect after Redis is back must open (the page retries after 0.5 s).
        await asyncio.sleep(0.5)
        again = await open_socket(url, cookie, conversation.pk)
        assert await answers_a_stop(again)
        await again.close()
        await socket.close()

    try:
        asyncio.run(scenario())
    finally:
        stack.stop(server)
    assert "Traceback" not in (tmp_path / "daphne.log").read_text()
