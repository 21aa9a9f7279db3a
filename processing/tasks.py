"""Celery tasks: take ids, call one service. Declared acks_late in settings, so a task
whose worker dies is delivered again; the services make a second run harmless."""

import logging
import uuid

from celery import Task, shared_task, signals
from django.conf import settings
from django.db import transaction

from config.logs import request_id_bound
from processing import metrics, services, sweep, webhooks

logger = logging.getLogger(__name__)


def enqueue_after_commit(task: Task[[str], None], request_id: str) -> None:
    """Queue task(request_id) once the current transaction commits. If the broker cannot
    take it, the stored work is not lost: the sweep finds it and queues it later."""

    def enqueue() -> None:
        try:
            task.delay(request_id)
        except Exception:
            logger.exception("could not queue %s for %s; the sweep will", task.name, request_id)

    transaction.on_commit(enqueue)


@shared_task(name="processing.request_start")
def request_start(request_id: str) -> None:
    with request_id_bound(request_id):
        services.request_start(request_id=uuid.UUID(request_id))


@shared_task(name="processing.images_process")
def images_process(image_ids: list[int]) -> None:
    services.images_process(image_ids=image_ids)


@shared_task(name="processing.request_finalize")
def request_finalize(request_id: str) -> None:
    with request_id_bound(request_id):
        services.request_finalize(request_id=uuid.UUID(request_id))


@shared_task(name="processing.webhook_send")
def webhook_send(request_id: str) -> None:
    with request_id_bound(request_id):
        webhooks.webhook_send(request_id=uuid.UUID(request_id))


@shared_task(name="processing.sweep")
def sweep_run() -> None:
    sweep.sweep_run()


@signals.worker_ready.connect
def metrics_serve(**_: object) -> None:
    if settings.WORKER_METRICS_PORT:
        metrics.metrics_serve(port=settings.WORKER_METRICS_PORT)
