"""Work around a worker crash when the Redis broker restarts during a task.

Celery 5.7.0 with kombu 5.7.0 and redis-py 8.1.0: when the broker connection
is lost, `Consumer.on_connection_error_after_connected` first `collect()`s the
connection (which sets the transport's `client` to None) and then `close()`s
it. Closing the redis channel restores its unacknowledged messages, which
asks for a connection pool, whose parameters are read from the transport's
`client`: `AttributeError: 'NoneType' object has no attribute 'hostname'`.
An AttributeError is not a connection error, so `ignore_errors` lets it out
and the worker dies ("Unrecoverable error"). An idle worker survives (nothing
to restore); one with a task in flight does not. The task's own late ack on
that dead channel fails the same way.

The fix here turns "the transport is already gone" into the connection error
it is, which kombu and Celery already handle: the close goes on, the worker
reconnects, and the late ack is logged as lost (docs/reliability.md).
"""

from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError

_original_connparams = kombu_redis.Channel._connparams


def _connparams(self, asynchronous=False):
    if self.connection is None or self.connection.client is None:
        raise RedisConnectionError("The broker connection is closed (the channel outlived its transport).")
    return _original_connparams(self, asynchronous=asynchronous)


def apply() -> None:
    kombu_redis.Channel._connparams = _connparams
