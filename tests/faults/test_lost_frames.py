"""A socket that closes while it runs its process's pop must not take another socket's frame with it."""
import asyncio
import threading
import time
import uuid

import pytest
import redis
from django.conf import settings

from sheldonsite.channel_layer import ShieldedPopChannelLayer

pytestmark = pytest.mark.timeout(60)


def make_layer(prefix):
    return ShieldedPopChannelLayer(**{**settings.CHANNEL_LAYERS["default"]["CONFIG"], "prefix": prefix})


@pytest.mark.skipif(not settings.REDIS_URL, reason="needs REDIS_URL: the fault is in the Redis channel layer")
def test_the_served_layer_is_the_shielded_one():
    assert settings.CHANNEL_LAYERS["default"]["BACKEND"] == "sheldonsite.channel_layer.ShieldedPopChannelLayer"


@pytest.mark.skipif(not settings.REDIS_URL, reason="needs REDIS_URL: the fault is in the Redis channel layer")
def test_a_frame_popped_for_a_closing_socket_reaches_its_own():
    prefix = f"test-{uuid.uuid4().hex}"
    layer, sender = make_layer(prefix), make_layer(prefix)
    frame = {"type": "chat.frame", "n": 1}
    store = redis.Redis.from_url(settings.REDIS_URL)

    async def send_from_another_process(channel):
        await sender.send(channel, frame)
        await sender.close_pools()

    async def scenario():
        closing, waiting = await layer.new_channel(), await layer.new_channel()
        queue = prefix + layer.non_local_name(waiting)  # the process's queue, where both frames go
        # The closing socket's receive takes the lock and waits in the process's blocking pop.
        closing_receive = asyncio.ensure_future(layer.receive(closing))
        await asyncio.sleep(0.5)
        # The other socket's frame arrives from another process (here a thread with its own loop).
        # This loop does not run meanwhile, so Redis pops the frame and answers before the pop reads it...
        thread = threading.Thread(target=lambda: asyncio.run(send_from_another_process(waiting)))
        thread.start()
        thread.join()
        deadline = time.monotonic() + 5
        while store.zcard(queue) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert store.zcard(queue) == 0, "Redis has not popped the frame"
        # ...and the closing socket's receive is cancelled first, as when its socket closes.
        closing_receive.cancel()
        with pytest.raises(asyncio.CancelledError):
            await closing_receive
        received = await asyncio.wait_for(layer.receive(waiting), 10)
        # Once, not twice: the backup queue keeps no copy that a later receive would get again.
        await layer.wait_received()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(layer.receive(waiting), 2)
        await layer.flush()
        return received

    try:
        assert asyncio.run(scenario()) == frame
    finally:
        store.close()
