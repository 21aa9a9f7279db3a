"""The Celery application. Its settings are the CELERY_* names in config.settings."""

import copy
import ctypes
import logging.config
import os
from typing import Any, Final

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("imgsvc", task_cls="celery.contrib.django.task:DjangoTask")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# glibc's malloc settings (mallopt(3)): freed memory kept until this much is free at the
# top of the heap, and blocks under this size taken from the heap rather than mapped.
_M_TRIM_THRESHOLD: Final = -1
_M_MMAP_THRESHOLD: Final = -3
KEPT_FREE_BYTES: Final = 64 * 1024 * 1024
HEAP_BLOCK_BYTES: Final = 32 * 1024 * 1024


@signals.setup_logging.connect
def logging_setup(loglevel: int | str | None = None, **_: Any) -> None:
    """Worker and beat log as the web does (settings.LOGGING), not in Celery's own way;
    Celery's own lines keep the level its --loglevel option gives them."""
    from django.conf import settings

    config = copy.deepcopy(settings.LOGGING)
    if loglevel:
        config["loggers"]["celery"] = {"level": loglevel}
    logging.config.dictConfig(config)


@signals.worker_process_init.connect
def keep_freed_memory(**_: Any) -> None:
    """Let each worker process re-use the memory it frees instead of giving it back at once.

    The perceptual score makes and drops arrays of a few megabytes per try; glibc's default
    hands the top of the heap back to the kernel as soon as 2 x the largest such block is
    free, so the next try faulted the pages in again: about 1,500 page faults an image,
    7-8% of the perceptual mode's CPU (BENCHMARKS.md). It costs at most KEPT_FREE_BYTES of
    resident memory a process. Nothing is changed where the C library has no mallopt
    (musl) or where the environment sets glibc's own MALLOC_*_ variables."""
    if any(name.startswith("MALLOC_") and name.endswith("_") for name in os.environ):
        return
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is not None:
        mallopt(_M_MMAP_THRESHOLD, HEAP_BLOCK_BYTES)
        mallopt(_M_TRIM_THRESHOLD, KEPT_FREE_BYTES)
