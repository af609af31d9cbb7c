"""Conversation affinity: a conversation's next turn goes to the worker that answered its last one.

Each worker process keeps a prefix store (inference/decoding.py): the key-value
cache of the persona and of recent turns, so a conversation's next turn only
computes its new tokens, but only on the worker that holds the previous turn.
So, with WORKER_AFFINITY on:

- every worker also consumes a queue of its own, named after its node name
  (`celeryd_after_setup`, the hook Celery documents for this);
- every worker announces itself in the cache (Redis) at each Celery heartbeat,
  with its process id and that queue, for ALIVE_SECONDS; a worker that stops
  cleanly withdraws at once, a killed one expires;
- the web process sends a reply to the queue of the worker that finished the
  conversation's latest reply (`Message.worker`, "node/pid") while that very
  process is announced, else to the shared GENERATION_QUEUE.

A worker can die between the check and the delivery: its task then waits in a
queue nobody reads until the sweep sends it again (chat.services.sweep_replies,
after CHAT_QUEUE_RESEND_SECONDS), to the shared queue. Nothing is stranded.
"""

import os

from celery.signals import celeryd_after_setup, heartbeat_sent, worker_shutdown
from django.conf import settings
from django.core.cache import cache

from .models import Message

# Celery sends a heartbeat every 2 s: five missed ones and a worker counts as gone.
ALIVE_SECONDS = 10
ALIVE_KEY = "sheldon:worker-alive:{}"
# Announced by every worker alike: some worker lived within ALIVE_SECONDS (GET /api/status/).
SOME_ALIVE_KEY = "sheldon:some-worker-alive"

# This worker process's node name and own queue ("" with affinity off); set as the worker starts.
_this_worker = {"node": None, "queue": ""}


def own_queue(node: str) -> str:
    return f"affinity.{node}"


def alive(node: str) -> dict | None:
    """What the worker `node` last announced ({"pid", "queue"}), or None once it is gone."""
    return cache.get(ALIVE_KEY.format(node))


def some_worker_alive() -> bool:
    return cache.get(SOME_ALIVE_KEY) is not None


def queue_for(bot_message_id: int) -> str:
    """The queue a reply goes to: the own queue of the process that finished the conversation's
    latest reply while it lives and has one, else GENERATION_QUEUE."""
    if settings.WORKER_AFFINITY:
        worker = (
            Message.objects.filter(
                conversation__messages=bot_message_id, role=Message.Role.BOT, status=Message.Status.DONE
            )
            .order_by("-pk")
            .values_list("worker", flat=True)
            .first()
        )
        if worker:
            node, _, pid = worker.rpartition("/")
            # The same process, not only the same name: a restarted worker starts with an empty store.
            announced = alive(node)
            if announced and str(announced["pid"]) == pid and announced["queue"]:
                return announced["queue"]
    return settings.GENERATION_QUEUE


@celeryd_after_setup.connect
def consume_own_queue(sender: str, instance: object, **kwargs: object) -> None:
    """A worker starting up: with affinity on, it also consumes the queue named after it."""
    _this_worker["node"] = sender
    if settings.WORKER_AFFINITY:
        _this_worker["queue"] = own_queue(sender)
        instance.app.amqp.queues.select_add(_this_worker["queue"])


@heartbeat_sent.connect
def announce(**kwargs: object) -> None:
    """This worker lives (at each heartbeat, and once its models are loaded)."""
    if _this_worker["node"]:
        cache.set_many(
            {
                ALIVE_KEY.format(_this_worker["node"]): {"pid": os.getpid(), "queue": _this_worker["queue"]},
                SOME_ALIVE_KEY: _this_worker["node"],
            },
            ALIVE_SECONDS,
        )


@worker_shutdown.connect
def withdraw(**kwargs: object) -> None:
    """Sent once the worker has stopped consuming (after its last heartbeat). SOME_ALIVE_KEY stays
    until it expires: other workers may live."""
    if _this_worker["node"]:
        cache.delete(ALIVE_KEY.format(_this_worker["node"]))
