"""The Celery app: generation tasks run on workers listening to `cpu` or `gpu`."""
import os

from celery import Celery
from kombu import Queue

from .broker_fix import apply as apply_broker_fix

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sheldonsite.settings")
# Without it a Redis restart during a reply kills the worker (see broker_fix.py).
apply_broker_fix()

app = Celery("sheldonsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = (Queue("cpu"), Queue("gpu"))
app.autodiscover_tasks()
