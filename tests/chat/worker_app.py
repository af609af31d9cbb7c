"""The Celery app of the chat tests' worker: the real app and task, slower pieces.

The tiny test generator writes a whole reply in milliseconds. A stop, a
reload or a killed worker must land in the middle of a reply, so each
generation step (the replier asks `should_stop` once per token) waits
TEST_TOKEN_DELAY_SECONDS. Everything
else (the task, the replier, the database, the channel layer) is the real one.
"""
import os
import time
from concurrent.futures import Future

from celery import signals

from sheldonsite.celery import app  # noqa: F401  (celery -A finds the app here)

TOKEN_DELAY_SECONDS = float(os.environ.get("TEST_TOKEN_DELAY_SECONDS", "0.06"))


# A message with this in it gets a generation that never ends and ignores its
# stop: what a hung engine looks like to the task.
HANG = "[hang]"


class SlowEngine:
    def __init__(self, engine):
        self.engine = engine

    def submit(self, history, message, on_piece=None, should_stop=None):
        if HANG in message:
            on_piece("Hmm, let me think")
            return Future()  # never done
        def slow_should_stop():
            time.sleep(TOKEN_DELAY_SECONDS)
            return should_stop()

        return self.engine.submit(history, message, on_piece=on_piece, should_stop=slow_should_stop)

    def reply(self, history, message):
        return self.engine.reply(history, message)  # the warm-up's first reply (chat.warmup), not slowed


@signals.worker_init.connect
def load_models_and_slow_down(**kwargs):
    from inference import batching

    slow = SlowEngine(batching.get_engine())  # loads the models before the first task
    batching.get_engine = lambda: slow
