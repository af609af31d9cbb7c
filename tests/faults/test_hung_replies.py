"""Replies nobody will finish end `failed` with no page open: a hung generation, a dead worker."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from chat.models import Message
from tests.chat.worker_app import HANG

from .conftest import queued_reply, send_reply_task, wait_for_status

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]


def test_a_generation_that_never_ends_fails_at_the_time_limit_and_stops_saving(make_stack, django_user_model):
    # A 20 s time limit: the soft one the reply keeps is 5 s.
    stack = make_stack(CELERY_TASK_TIME_LIMIT="20")
    user = django_user_model.objects.create_user("stuart", password="a-long-password-42")
    reply = queued_reply(user, f"Think about this forever {HANG}")
    send_reply_task(stack, reply.pk)
    wait_for_status(reply.pk, [Message.Status.STREAMING], timeout=30)
    seconds = wait_for_status(reply.pk, [Message.Status.FAILED], timeout=20)
    failed = Message.objects.get(pk=reply.pk)
    assert "longer than 5 s" in failed.error and failed.text.startswith("Hmm")
    time.sleep(2)
    assert Message.objects.get(pk=reply.pk).updated == failed.updated  # nothing saved after the end
    print(f"\na hung generation failed {seconds:.1f} s after it started streaming (time limit 5 s)")


def test_the_sweep_ends_a_reply_whose_worker_died_with_no_page_open(fault_stack, django_user_model):
    user = django_user_model.objects.create_user("bernadette", password="a-long-password-42")
    reply = queued_reply(user, "Are you still there?")
    # What a SIGKILLed worker leaves behind: streaming, no longer saved.
    Message.objects.filter(pk=reply.pk).update(
        status=Message.Status.STREAMING, attempts=1, worker="dead-worker", updated=timezone.now() - timedelta(seconds=6)
    )
    seconds = wait_for_status(reply.pk, [Message.Status.FAILED], timeout=15)
    assert "stopped responding" in Message.objects.get(pk=reply.pk).error
    print(f"\na reply left by a dead worker, no page open: failed by the worker's sweep within {seconds:.1f} s")
