"""The Celery application. Its settings are the CELERY_* names in config.settings."""

import copy
import ctypes
import logging.config
import os
import socket
import warnings
from typing import Any, Final

from celery import Celery, signals
from celery.exceptions import CPendingDeprecationWarning

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("imgsvc", task_cls="celery.contrib.django.task:DjangoTask")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# glibc's malloc settings (mallopt(3)) a worker process sets, each with the names an
# operator's environment may already give it (those win): blocks under HEAP_BLOCK_BYTES
# taken from the heap rather than mapped, and freed memory kept until KEPT_FREE_BYTES is
# free at the top of a heap.
HEAP_BLOCK_BYTES: Final = 32 * 1024 * 1024
KEPT_FREE_BYTES: Final = 64 * 1024 * 1024
_MALLOC_SETTINGS: Final = (
    (-3, HEAP_BLOCK_BYTES, "MALLOC_MMAP_THRESHOLD_", "glibc.malloc.mmap_threshold"),
    (-1, KEPT_FREE_BYTES, "MALLOC_TRIM_THRESHOLD_", "glibc.malloc.trim_threshold"),
)

logger = logging.getLogger(__name__)


@signals.setup_logging.connect
def logging_setup(loglevel: int | str | None = None, **_: Any) -> None:
    """Worker and beat log as the web does (settings.LOGGING), not in Celery's own way;
    Celery's own lines keep the level its --loglevel option gives them."""
    from django.conf import settings

    config = copy.deepcopy(settings.LOGGING)
    if loglevel:
        config["loggers"]["celery"] = {"level": loglevel}
    logging.config.dictConfig(config)


@signals.celeryd_after_setup.connect
def cancel_on_connection_loss_warning_silenced(**_: Any) -> None:
    """Celery 5 warns at every broker loss, in eight lines, that Celery 6.0 will cancel the
    tasks under way instead, for as long as worker_cancel_long_running_tasks_on_connection_loss
    is False, even when set so on purpose: it is (config/settings.py says why). Its logging
    set-up, just before this, shows every such warning always; this one is dropped."""
    warnings.filterwarnings(
        "ignore",
        message=r"\s*In Celery 5\.1 we introduced an optional breaking change which\s+on "
        r"connection loss cancels",
        category=CPendingDeprecationWarning,
    )


@signals.worker_init.connect
@signals.beat_init.connect
def misspelt_settings_said(**_: Any) -> None:
    from config.checks import unread_variables_logged

    unread_variables_logged()


@signals.worker_init.connect
def storage_writable(sender: Any = None, **_: Any) -> None:
    """Stop the worker at its start if it cannot write the output storage: started, it
    took every batch its queues gave it and failed each image with storage_error (a
    STORAGE_DIR it cannot write, a bucket it may not put in), while it looked healthy.

    A worker of webhooks alone starts whatever the storage: stopped by a full disk, it
    left the webhooks of requests already finished unsent until there was room again."""
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from processing.queue import STORAGE_FREE_QUEUES

    queues = set(sender.app.amqp.queues.consume_from) if sender is not None else set()
    if queues and queues <= STORAGE_FREE_QUEUES:
        return
    probe = f"probes/worker-{socket.gethostname()}-{os.getpid()}"
    try:
        default_storage.delete(default_storage.save(probe, ContentFile(b"probe")))
    except Exception as error:  # an OSError, a bucket's refusal: whatever stops the outputs
        logger.critical(
            "cannot write the output storage (%s): %s. Fix STORAGE_DIR or the bucket's "
            "settings; this worker stops.",
            _storage_where(),
            error,
        )
        raise SystemExit(1) from None


def _storage_where() -> str:
    from django.conf import settings

    bucket = getattr(settings, "S3_BUCKET", "")
    return f"bucket {bucket}" if bucket else f"STORAGE_DIR {settings.MEDIA_ROOT}"


@signals.worker_process_init.connect
def keep_freed_memory(**_: Any) -> None:
    """Let each worker process re-use the memory it frees rather than fault it in again.

    glibc gives the top of a heap back once twice the largest recent block is free, and
    the perceptual score makes and drops arrays of megabytes each try: about 1,500 page
    faults an image, 7-8% of its CPU (BENCHMARKS.md). The cost is up to KEPT_FREE_BYTES
    a malloc arena (the task's thread and each download thread). Without mallopt (musl),
    nothing changes."""
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    for parameter, value, variable, tunable in _MALLOC_SETTINGS:
        if variable in os.environ or tunable in tunables:
            continue
        if not mallopt(parameter, value):
            logger.warning("mallopt(%d, %d) failed: freed memory is given back", parameter, value)
