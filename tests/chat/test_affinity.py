"""Conversation affinity (chat/affinity.py) with two real worker processes on a queue of their own."""
import asyncio
import uuid

import pytest
from channels.db import database_sync_to_async

from chat.affinity import ALIVE_SECONDS, alive, own_queue, queue_for

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]


class WorkerPair:
    """Two workers sharing a queue; a test may kill one, the next test gets two again."""

    def __init__(self, stack):
        self.stack = stack
        self.queue = f"test-affinity-{uuid.uuid4().hex[:8]}"
        self.processes = []

    def ensure_two(self):
        self.processes = [process for process in self.processes if process.poll() is None]
        while len(self.processes) < 2:
            self.processes.append(self.stack.spawn_worker(self.queue))

    def of(self, worker):
        """The process of a reply's `worker` ("node/pid")."""
        pid = int(worker.rpartition("/")[2])
        return next(process for process in self.processes if process.pid == pid)

    def stop_all(self):
        for process in self.processes:
            self.stack.stop(process)


@pytest.fixture(scope="module")
def worker_pair(live_stack):
    pair = WorkerPair(live_stack)
    yield pair
    pair.stop_all()


@pytest.fixture
def two_workers(worker_pair, live_settings):
    worker_pair.ensure_two()
    live_settings.GENERATION_QUEUE = worker_pair.queue
    live_settings.WORKER_AFFINITY = True
    return worker_pair


async def turn(tab, text):
    await tab.send({"type": "user_message", "text": text})
    reply = await tab.reply_done(timeout=40)
    assert reply["status"] == "done", reply
    return reply


async def eventually(check, timeout):
    deadline = asyncio.get_running_loop().time() + timeout
    while not await database_sync_to_async(check)():
        assert asyncio.get_running_loop().time() < deadline, f"not within {timeout} s"
        await asyncio.sleep(0.2)


async def test_next_turns_go_to_the_worker_that_holds_the_conversation(two_workers, open_socket, live_settings):
    # Both are up and announce their own queue, so the shared queue would alternate between them.
    def both_announced():
        return all(alive(p.node) == {"pid": p.pid, "queue": own_queue(p.node)} for p in two_workers.processes)

    await eventually(both_announced, timeout=ALIVE_SECONDS)
    tab = await open_socket()
    replies = [await turn(tab, text) for text in ("Hello.", "How are you?", "Trains?", "What is your favourite number?")]
    assert len({reply["record"]["worker"] for reply in replies}) == 1, [reply["record"] for reply in replies]

    holder = two_workers.of(replies[-1]["record"]["worker"])
    assert await database_sync_to_async(queue_for)(replies[-1]["id"]) == own_queue(holder.node)
    live_settings.WORKER_AFFINITY = False  # the switch: everything goes to the shared queue
    assert await database_sync_to_async(queue_for)(replies[-1]["id"]) == two_workers.queue


async def test_the_next_turn_of_a_killed_workers_conversation_goes_to_the_shared_queue(
    two_workers, open_socket, live_settings
):
    live_settings.CHAT_QUEUE_RESEND_SECONDS = 600  # so the sweep's resend is not what answers it
    tab = await open_socket()
    first = await turn(tab, "Hello.")
    killed = two_workers.of(first["record"]["worker"])
    await database_sync_to_async(two_workers.stack.stop)(killed)  # SIGKILL

    # Its announcement expires: the conversation's queue is the shared one again.
    await eventually(lambda: queue_for(first["id"]) == two_workers.queue, timeout=ALIVE_SECONDS + 5)
    assert alive(killed.node) is None
    second = await turn(tab, "Are you still there?")
    assert second["record"]["worker"] != first["record"]["worker"]


async def test_a_turn_sent_to_a_just_killed_worker_is_answered_through_the_shared_queue(
    two_workers, open_socket, live_settings
):
    live_settings.CHAT_QUEUE_RESEND_SECONDS = 2
    tab = await open_socket()
    first = await turn(tab, "Hello.")
    killed = two_workers.of(first["record"]["worker"])
    await database_sync_to_async(two_workers.stack.stop)(killed)

    # Still announced for a few seconds: the next turn goes to the dead worker's queue...
    assert await database_sync_to_async(queue_for)(first["id"]) == own_queue(killed.node)
    second = await turn(tab, "Are you still there?")
    # ...and the sweep sends it again, to the shared queue, where the other worker answers it.
    assert second["record"]["worker"] != first["record"]["worker"]
    assert second["record"]["attempts"] == 1
