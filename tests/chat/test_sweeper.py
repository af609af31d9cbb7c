"""The process's reply sweeper thread: one per process, and it stops when told, even mid-wait."""
import threading

import pytest

from chat.sweeper import start_sweeper, stop_sweeper


def sweepers() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "reply-sweeper" and thread.is_alive()]


@pytest.mark.django_db(transaction=True)  # its rounds read the database from their own thread
def test_one_sweeper_a_process_that_stops_between_rounds_and_starts_again(settings):
    settings.CHAT_REPLY_STALE_SECONDS = 400  # a round every 100 s: a stop must cut the wait short
    assert stop_sweeper()  # one that a socket test of this run started
    start_sweeper()
    start_sweeper()
    assert len(sweepers()) == 1

    assert stop_sweeper(timeout=10), "the sweeper slept through its stop"
    assert sweepers() == []

    start_sweeper()
    assert len(sweepers()) == 1
    assert stop_sweeper(timeout=10)
    assert sweepers() == []
