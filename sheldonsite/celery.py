"""The Celery app: generation tasks run on workers listening to `cpu` or `gpu`."""
import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sheldonsite.settings")

app = Celery("sheldonsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = (Queue("cpu"), Queue("gpu"))
app.autodiscover_tasks()
