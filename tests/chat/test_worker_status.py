"""GET /api/status/ says "ready" only while a worker lives, not whenever one once loaded the models."""
import time

import pytest

from chat.affinity import ALIVE_SECONDS

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(240)]


def wait_for_state(client, state, timeout):
    deadline = time.monotonic() + timeout
    while (seen := client.get("/api/status/").json()["models"]["state"]) != state:
        assert time.monotonic() < deadline, f"the state is still {seen!r} after {timeout} s"
        time.sleep(0.2)


def test_the_status_is_not_ready_once_every_worker_is_dead(client, live_settings, live_stack):
    # A fresh worker reports its models loaded (another test may have cleared the report).
    live_stack.kill_worker()
    live_stack.start_worker()
    wait_for_state(client, "ready", timeout=ALIVE_SECONDS)

    live_stack.kill_worker()  # SIGKILL: no goodbye, its announcement expires
    try:
        wait_for_state(client, "no_worker", timeout=ALIVE_SECONDS + 5)
    finally:
        live_stack.start_worker()  # the session's worker, for the tests after this one
    wait_for_state(client, "ready", timeout=ALIVE_SECONDS)
