"""The sweep: the database is the source of truth, the queue only a fast path.

Run every SWEEP_INTERVAL by Celery beat (and once by `manage.py sweep`), it finds work the
queue lost — a worker killed mid-image, a broker restarted empty, a finalisation cut off —
and queues it again. Every step is a conditional update, so sweeps that overlap each other
or a live worker change nothing twice.
"""

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from celery import Task
from django.conf import settings
from django.db.models import F, Max, Min, Q
from django.utils import timezone

from processing import services, tasks
from processing.models import ProcessingRequest, ProductImage, WebhookDelivery

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepReport:
    requests_restarted: int = 0
    images_requeued: int = 0
    images_given_up: int = 0
    requests_finalised: int = 0
    webhooks_requeued: int = 0


def sweep_run() -> SweepReport:
    """Queue again what is overdue; give up on images past IMAGE_MAX_ATTEMPTS."""
    now = timezone.now()
    cutoff = now - timedelta(seconds=settings.WORK_LEASE_SECONDS)
    requests_restarted = _requests_restart(cutoff)
    images_requeued, images_given_up = _images_requeue(now, cutoff)
    report = SweepReport(
        requests_restarted=requests_restarted,
        images_requeued=images_requeued,
        images_given_up=images_given_up,
        requests_finalised=_requests_finalise(cutoff),
        webhooks_requeued=_webhooks_requeue(now),
    )
    if report != SweepReport():
        logger.info("sweep: %s", report)
    return report


def _requests_restart(cutoff: datetime) -> int:
    stuck = ProcessingRequest.objects.filter(
        status=ProcessingRequest.Status.PENDING, created_at__lt=cutoff
    ).values_list("pk", flat=True)
    return _enqueue_each(tasks.request_start, stuck)


def _images_requeue(now: datetime, cutoff: datetime) -> tuple[int, int]:
    """Images claimed by a worker that never reported back, or queued and never claimed."""
    overdue = ProductImage.objects.filter(
        Q(status=ProductImage.Status.PROCESSING, claimed_at__lt=cutoff)
        | Q(
            status=ProductImage.Status.PENDING,
            request__status=ProcessingRequest.Status.PROCESSING,
            queued_at__lt=cutoff,
        )
    )
    groups = overdue.values("request_id", "input_url", "status").annotate(
        first_id=Min("id"), attempts=Max("attempts")
    )
    requeued = given_up = 0
    for group in groups.iterator():
        same_url = ProductImage.objects.filter(
            request_id=group["request_id"], input_url=group["input_url"], status=group["status"]
        )
        if group["status"] == ProductImage.Status.PROCESSING:
            same_url = same_url.filter(claimed_at__lt=cutoff)
            if group["attempts"] >= settings.IMAGE_MAX_ATTEMPTS:
                services.image_record(
                    request_id=group["request_id"],
                    same_url=same_url,
                    succeeded=False,
                    status=ProductImage.Status.FAILED,
                    error_code="internal_error",
                    error_message=(
                        f"Gave up after {group['attempts']} attempts that never finished "
                        "(the worker was lost each time)."
                    ),
                )
                services.request_finalize(request_id=group["request_id"])
                given_up += 1
                continue
        else:
            same_url = same_url.filter(queued_at__lt=cutoff)
        if same_url.update(status=ProductImage.Status.PENDING, queued_at=now):
            tasks.images_process.delay([group["first_id"]])
            requeued += 1
    return requeued, given_up


def _requests_finalise(cutoff: datetime) -> int:
    """Requests whose images have all ended but that no worker finalised (or finished)."""
    ProcessingRequest.objects.filter(
        status=ProcessingRequest.Status.PROCESSING, finalize_claimed_at__lt=cutoff
    ).update(finalize_claimed_at=None)
    ready = ProcessingRequest.objects.filter(
        status=ProcessingRequest.Status.PROCESSING,
        finalize_claimed_at__isnull=True,
        total_images=F("succeeded_images") + F("failed_images"),
    ).values_list("pk", flat=True)
    return sum(services.request_finalize(request_id=request_id) for request_id in ready)


def _webhooks_requeue(now: datetime) -> int:
    due = WebhookDelivery.objects.filter(
        state=WebhookDelivery.State.PENDING, next_attempt_at__lte=now
    ).values_list("request_id", flat=True)
    return _enqueue_each(tasks.webhook_send, due)


def _enqueue_each(task: Task[[str], None], request_ids: Iterable[uuid.UUID]) -> int:
    count = 0
    for request_id in request_ids:
        task.delay(str(request_id))
        count += 1
    return count
