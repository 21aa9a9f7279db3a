"""The Celery application. Its settings are the CELERY_* names in config.settings."""

import logging.config
import os
from typing import Any

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("imgsvc", task_cls="celery.contrib.django.task:DjangoTask")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.setup_logging.connect
def logging_setup(**_: Any) -> None:
    """Worker and beat log as the web does (settings.LOGGING), not in Celery's own way."""
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)
