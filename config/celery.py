"""The Celery app: `celery -A config worker -l info` starts a worker."""

import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("switchboard")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.worker_init.connect
def _check_worker(**kwargs: object) -> None:
    from config import topology

    topology.check_or_exit("Celery worker")


@signals.beat_init.connect
def _check_beat(**kwargs: object) -> None:
    from config import topology

    topology.check_or_exit("Celery beat")
