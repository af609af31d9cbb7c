"""Redis restarted in the middle of a reply: the worker lives on and every reply ends."""

import time

import pytest

from chat import services
from chat.models import Message

from .conftest import queued_reply, send_reply_task, wait_for_status, worker_log

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]

FINISHED = (Message.Status.DONE, Message.Status.FAILED)


def test_worker_survives_a_redis_restart_mid_reply(fault_stack, own_redis, django_user_model):
    user = django_user_model.objects.create_user("leonard", password="a-long-password-42")
    reply = queued_reply(user)
    send_reply_task(fault_stack, reply.pk)
    wait_for_status(reply.pk, [Message.Status.STREAMING], timeout=30)
    time.sleep(1.0)  # a few tokens in

    own_redis.restart(down_seconds=1.0)
    seconds = wait_for_status(reply.pk, FINISHED, timeout=60)
    assert fault_stack.worker.poll() is None, worker_log(fault_stack)
    assert "Unrecoverable error" not in worker_log(fault_stack)
    finished = Message.objects.get(pk=reply.pk)
    assert finished.status == Message.Status.DONE and finished.text, (finished.status, finished.error)
    print(f"\nreply in flight over a Redis restart ended {finished.status} {seconds:.1f} s after the restart")

    # The same worker takes new work from the restarted broker.
    after = queued_reply(user, "And after the restart?")
    send_reply_task(fault_stack, after.pk)
    seconds = wait_for_status(after.pk, FINISHED, timeout=60)
    assert Message.objects.get(pk=after.pk).status == Message.Status.DONE
    print(f"the next reply after the restart: done in {seconds:.1f} s")


def test_queued_work_lost_in_a_redis_restart_is_sent_again(make_stack, own_redis, django_user_model):
    stack = make_stack(CHAT_QUEUE_RESEND_SECONDS="3")
    user = django_user_model.objects.create_user("howard", password="a-long-password-42")
    reply = queued_reply(user, "Is anybody there?")
    send_reply_task(stack, reply.pk)
    # The task is in Redis, not yet taken (it is claimed in a moment): the restart loses it or not;
    # either way the reply must end.
    own_redis.restart(down_seconds=0.5)
    lost = queued_reply(user, "My task was lost with Redis.")  # queued, and its task is gone
    seconds = wait_for_status(lost.pk, FINISHED, timeout=60)
    assert Message.objects.get(pk=lost.pk).status == Message.Status.DONE
    wait_for_status(reply.pk, FINISHED, timeout=60)
    print(f"\na reply whose task was lost: done {seconds:.1f} s after it was queued (resent by the sweep)")


def test_a_message_posted_while_redis_is_down_is_stored_and_left_for_the_sweep(
    settings, own_redis, django_user_model, caplog
):
    # The send after the commit needs Redis (here the cache that says which worker holds the conversation);
    # Redis away for a moment must not turn a stored message into an error: the reply stays queued, and the
    # sweep sends it again (test_queued_work_lost_in_a_redis_restart_is_sent_again).
    settings.CELERY_TASK_ALWAYS_EAGER, settings.WORKER_AFFINITY = False, True
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": own_redis.url}}
    user = django_user_model.objects.create_user("stuart", password="a-long-password-42")
    earlier = queued_reply(user, "Hello?")
    Message.objects.filter(pk=earlier.pk).update(status=Message.Status.DONE, text="Hello.", worker="celery@w/1")
    own_redis.kill()
    try:
        message, reply = services.post_user_message(earlier.conversation_id, user, "Are you still there?")
    finally:
        own_redis.start()
    assert Message.objects.get(pk=message.pk).text == "Are you still there?"
    assert Message.objects.get(pk=reply.pk).status == Message.Status.QUEUED
    assert "in on_commit()" in caplog.text  # logged with its traceback
