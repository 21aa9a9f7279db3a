"""Celery tasks: take ids, call one service. Declared acks_late in settings, so a task
whose worker dies is delivered again; the services make a second run harmless. Services
send these by name (processing.queue), never by importing this module.

Each kind has a time limit past which Celery kills its process and starts another: a
backstop behind the limits the services keep (CELERY_TASK_TIME_LIMIT for the others)."""

import uuid
from typing import Any, Final

from celery import Task, shared_task, signals
from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections

from config.logs import request_id_bound
from processing import expiry, finalize, intake, metrics, pipeline, queue, sweep, webhooks

# A database away for a moment (PostgreSQL restarting or failing over, SQLite locked) fails
# a task on its first query. It is sent again after at most 1, 2, 4, 8, 16 and 32 s (a
# random share of each, so that workers do not all come back at once), where it had waited
# for the sweep, WORK_LEASE_SECONDS (5 minutes by default). A run that finds its work done
# or claimed changes nothing. Past the last try, the sweep as before.
DATABASE_AWAY: Final[dict[str, Any]] = {
    "autoretry_for": (OperationalError, InterfaceError),
    "retry_backoff": 1,
    "retry_backoff_max": 32,
    "retry_jitter": True,
    # A random share of each wait: six tries could all be spent within 8 s, and a routine
    # PostgreSQL restart of 20 s left their images to the sweep's lease (5 minutes). Ten
    # last about a minute and a half, in all, on average.
    "max_retries": 10,
}


@shared_task(name=queue.REQUEST_START, **DATABASE_AWAY)
def request_start(request_id: str) -> None:
    with request_id_bound(request_id):
        intake.request_start(request_id=uuid.UUID(request_id))


@shared_task(
    bind=True, name=queue.IMAGES_PROCESS, time_limit=settings.IMAGE_TASK_TIME_LIMIT, **DATABASE_AWAY
)
def images_process(self: Task[Any, None], image_ids: list[int], request_id: str = "") -> None:
    # request_id, the request the batch's images belong to, names it in every line the
    # task logs, Celery's own too (config/logs.py); absent from tasks queued before it was.
    with request_id_bound(request_id):
        pipeline.images_process(
            image_ids=image_ids, task_id=self.request.id, tries=self.request.retries
        )


@shared_task(name=queue.REQUEST_FINALIZE, **DATABASE_AWAY)
def request_finalize(request_id: str) -> None:
    with request_id_bound(request_id):
        finalize.request_finalize(request_id=uuid.UUID(request_id))


@shared_task(
    name=queue.WEBHOOK_SEND, time_limit=int(settings.WEBHOOK_TIMEOUT * 2) + 60, **DATABASE_AWAY
)
def webhook_send(request_id: str) -> None:
    with request_id_bound(request_id):
        webhooks.webhook_send(request_id=uuid.UUID(request_id))


@shared_task(name=queue.SWEEP)
def sweep_run() -> None:
    sweep.sweep_run()


@shared_task(name=queue.EXPIRE)
def requests_expire() -> None:
    expiry.requests_expire()


@shared_task(name=queue.RESULTS_DELETE, **DATABASE_AWAY)
def results_delete(request_id: str) -> None:
    # A storage error ends it: the expiry's next pass finishes what it left.
    expiry.results_delete(request_id=uuid.UUID(request_id))


@signals.task_prerun.connect
def database_connection_checked(**_: object) -> None:
    """Before each task, what Django does before each web request: a connection that
    errors have broken, or older than CONN_MAX_AGE, is closed, and the next query checks
    the one it gets (CONN_HEALTH_CHECKS), opening another where it is dead. Celery's own
    fixup closes connections only every 2 x CELERY_DB_REUSE_MAX tasks: after PostgreSQL
    restarted or failed over, every task of every worker, the sweep's included, failed on
    its dead connection until someone restarted the workers."""
    close_old_connections()


@signals.worker_ready.connect
def metrics_serve(**_: object) -> None:
    if settings.WORKER_METRICS_PORT:
        metrics.metrics_serve(port=settings.WORKER_METRICS_PORT)
