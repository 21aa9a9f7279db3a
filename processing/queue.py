"""Sending work to the workers: tasks by name, after the transaction commits, and the
routing table that puts each kind of work on its own queue.

Services queue work through here and never import processing.tasks, so that tasks (which
call services) and services do not import each other.
"""

import contextlib
import logging
from collections.abc import Iterator
from contextvars import ContextVar
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
# sweep: short, and what users wait on last). Each has a worker of its own in the
# Procfile (`images`, `requests`, `webhooks`); its `worker`, for one machine, takes images
# and requests, and `make run` starts `webhooks` beside it: a receiver that holds its
# answer holds one of the webhooks' processes for up to 2 x WEBHOOK_TIMEOUT, and on a
# worker shared with requests, eight of them held every start and finalisation.
DEFAULT_QUEUE: Final = "requests"
QUEUES: Final = ("images", "requests", "webhooks")
TASK_QUEUES: Final = {IMAGES_PROCESS: "images", WEBHOOK_SEND: "webhooks"}
# Queues whose tasks never write the output storage: a webhook send reads the database.
STORAGE_FREE_QUEUES: Final = frozenset({"webhooks"})

# The tasks about one request, which take its id last (the sweep's and expiry's take none).
ABOUT_A_REQUEST: Final = frozenset(
    {REQUEST_START, IMAGES_PROCESS, REQUEST_FINALIZE, WEBHOOK_SEND, RESULTS_DELETE}
)


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
        except Exception as error:
            # The work is in the database: the sweep finds it and queues it later.
            # Named from the task, not from where it was asked: an upload's transaction
            # commits before its view knows the id, and a re-run's view is bound to the
            # request it re-runs.
            about = {"request_id": self.request_id}
            refused = _refused_watch.get()
            if refused is None:
                logger.exception(
                    "could not queue %s%s; the sweep will", self.name, self.args, extra=about
                )
                return
            # Whoever watches says so in words (a command), without the traceback.
            refused.append(error)
            logger.warning(
                "could not queue %s%s; the sweep will: %s",
                self.name,
                self.args,
                error,
                extra=about,
            )

    @property
    def request_id(self) -> str:
        """The id of the request the task is about; empty for the sweep's and expiry's."""
        return str(self.args[-1]) if self.name in ABOUT_A_REQUEST and self.args else ""


def enqueue_after_commit(name: str, *args: Any, countdown: float | None = None) -> None:
    """Queue task `name` with args once the current transaction commits (at once outside
    one). A broker that cannot take it loses nothing: the sweep re-queues from the database."""
    transaction.on_commit(QueuedTask(name, args, countdown))


# The broker's refusals of the tasks sent while queue_refusals_watched() is open.
_refused_watch: ContextVar[list[Exception] | None] = ContextVar("refused_watch", default=None)


@contextlib.contextmanager
def queue_refusals_watched() -> Iterator[list[Exception]]:
    """The errors of the tasks the broker refused within (sent at commit, at once outside a
    transaction): for a command that says whether what it asked for was queued."""
    refused: list[Exception] = []
    token = _refused_watch.set(refused)
    try:
        yield refused
    finally:
        _refused_watch.reset(token)
