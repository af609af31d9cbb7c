"""The Redis channel layer, without losing a frame when a socket closes while it receives.

channels_redis 4.3.0 receives all of a process's frames through one blocking
pop (BZPOPMIN), run by whichever socket's `receive` holds the layer's lock,
which hands each frame to the socket it is for. The pop copies a frame to a
backup queue only once Redis's answer is read. So when the socket running the
pop closes (its task is cancelled) after Redis has popped a frame for another
socket but before the answer is read, that frame is gone. In a 16-user load run
a `reply_done` was lost this way while other users closed their sockets, and
its page waited for a reply that had ended.

Here a pop runs in a task of its own that a cancelled receive leaves running
(`asyncio.shield`); the next receive on the channel takes over that pop and its
frame instead of starting another. One pop per channel at a time, as the
library's backup queue assumes. Channel layers still promise at-most-once
delivery (Redis may restart), so the page also reads the messages again when
a reply stays quiet too long (static/chat/chat.js, "Frames that never came").
"""
import asyncio

from channels_redis.core import RedisChannelLayer


class ShieldedPopChannelLayer(RedisChannelLayer):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # (connection index, channel key) -> its pop in flight, or done and its frame not yet taken.
        self._pops: dict[tuple[int, str], asyncio.Task] = {}

    async def _brpop_with_clean(self, index: int, channel: str, timeout: int) -> bytes | None:
        key = (index, channel)
        pop = self._pops.get(key)
        if pop is None or pop.cancelled() or (pop.done() and pop.exception() is not None):
            # Nothing to take over (an error nobody waited for is not this receive's).
            pop = self._pops[key] = asyncio.ensure_future(super()._brpop_with_clean(index, channel, timeout))
            pop.add_done_callback(lambda task: task.cancelled() or task.exception())  # retrieved: no warning
        try:
            member = await asyncio.shield(pop)
        except asyncio.CancelledError:
            raise  # the pop goes on; the next receive takes its frame
        except BaseException:
            self._pops.pop(key, None)
            raise
        self._pops.pop(key, None)
        return member

    async def close_pools(self) -> None:
        """Also end the pops no receive waits for, so that their connections close with the pools."""
        pops, self._pops = list(self._pops.values()), {}
        for pop in pops:
            pop.cancel()
        await asyncio.gather(*pops, return_exceptions=True)
        await super().close_pools()
