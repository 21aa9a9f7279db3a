"""Sending work to the workers: tasks by name, after the transaction commits, and the
routing table that puts each kind of work on its own queue.

Services queue work through here and never import processing.tasks, so that tasks (which
call services) and services do not import each other.
"""

import logging
from dataclasses import dataclass
from typing import Any, Final

from django.db import transaction

from config.celery import app

logger = logging.getLogger(__name__)

REQUEST_START: Final = "processing.request_start"
IMAGES_PROCESS: Final = "processing.images_process"
REQUEST_FINALIZE: Final = "processing.request_finalize"
WEBHOOK_SEND: Final = "processing.webhook_send"
SWEEP: Final = "processing.sweep"
EXPIRE: Final = "processing.expire"
RESULTS_DELETE: Final = "processing.results_delete"

# Queues by kind of work, so that slow work never starves fast work: `images` (download
# and encode), `webhooks` (slow receivers) and `requests` for the rest (start, finalise,
# sweep: short, and what users wait on last). The Procfile's `images` and `requests`
# workers split them across hosts; its `worker` takes all three.
DEFAULT_QUEUE: Final = "requests"
QUEUES: Final = ("images", "requests", "webhooks")
TASK_QUEUES: Final = {IMAGES_PROCESS: "images", WEBHOOK_SEND: "webhooks"}


def task_route(name: str, *_: Any, **__: Any) -> dict[str, str]:
    """Celery's router (settings.CELERY_TASK_ROUTES names it): the queue for a task."""
    return {"queue": TASK_QUEUES.get(name, DEFAULT_QUEUE)}


@dataclass(frozen=True)
class QueuedTask:
    """One task to send; called once the transaction that asked for it has committed."""

    name: str
    args: tuple[Any, ...]
    countdown: float | None = None

    def __call__(self) -> None:
        try:
            # A signature by name: routed by task_route, and run in place where Celery is
            # told to run tasks eagerly (bench/costs.py).
            signature = app.signature(self.name, args=self.args)
            if self.countdown is None:
                signature.apply_async()
            else:
                signature.apply_async(countdown=self.countdown)
        except Exception:
            # The work is in the database: the sweep finds it and queues it later.
            logger.exception("could not queue %s%s; the sweep will", self.name, self.args)


def enqueue_after_commit(name: str, *args: Any, countdown: float | None = None) -> None:
    """Queue task `name` with args once the current transaction commits (at once outside
    one). A broker that cannot take it loses nothing: the sweep re-queues from the database."""
    transaction.on_commit(QueuedTask(name, args, countdown))
