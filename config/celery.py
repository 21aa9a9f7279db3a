"""The Celery application. Its settings are the CELERY_* names in config.settings."""

import copy
import logging.config
import os
from typing import Any

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("imgsvc", task_cls="celery.contrib.django.task:DjangoTask")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.setup_logging.connect
def logging_setup(loglevel: int | str | None = None, **_: Any) -> None:
    """Worker and beat log as the web does (settings.LOGGING), not in Celery's own way;
    Celery's own lines keep the level its --loglevel option gives them."""
    from django.conf import settings

    config = copy.deepcopy(settings.LOGGING)
    if loglevel:
        config["loggers"]["celery"] = {"level": loglevel}
    logging.config.dictConfig(config)
