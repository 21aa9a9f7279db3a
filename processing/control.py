"""What an owner may do to a request under way or finished: cancel it, retry what failed,
delete it. (Re-running it with other settings makes a new request: intake.request_rerun.)"""

import logging
from collections.abc import Collection
from datetime import datetime

from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from accounts.services import account_lock
from processing import expiry, metrics, queue
from processing.models import ProcessingRequest, ProductImage, ReasonCode, WebhookDelivery
from processing.outcomes import CANCELLED
from processing.policies import pending_quota_check
from processing.results import NO_FACTS, request_finalize_when_ready
from processing.window import request_window_fill

logger = logging.getLogger(__name__)


class AlreadyFinished(Exception):
    """The request has finished: there is nothing left to cancel."""


class NotFinished(Exception):
    """The request is still under way: its failures are not final yet."""


class Finishing(Exception):
    """Every image has ended, and the request is being finalised (its output CSV written)."""


class NothingToRetry(Exception):
    """Every image of the request succeeded."""


class Expired(Exception):
    """The request expired: its products and images are gone."""


def request_cancel(*, request: ProcessingRequest) -> ProcessingRequest:
    """Cancel a request under way: its images not started end as cancelled at once, those
    in flight may finish, and the request ends as cancelled, with its output CSV and its
    webhook, once they have."""
    now = timezone.now()
    with transaction.atomic():
        # Locked against the batches' counters and window: no image starts after this.
        locked = ProcessingRequest.objects.select_for_update().get(pk=request.pk)
        # A request being finalised has had all its images end: as good as finished.
        if locked.is_finished or locked.finalize_claimed_at is not None:
            raise AlreadyFinished
        # A request not started yet is started here, to finish: request_start then finds
        # it no longer pending and does nothing.
        locked.status = ProcessingRequest.Status.PROCESSING
        locked.cancel_requested_at = locked.cancel_requested_at or now
        cancelled = ProductImage.objects.filter(
            request=locked, status=ProductImage.Status.PENDING
        ).update(
            status=ProductImage.Status.CANCELLED,
            error_code=ReasonCode.CANCELLED,
            error_message=CANCELLED.message,
            finished_at=now,
        )
        locked.cancelled_images += cancelled
        locked.save(
            update_fields=["status", "cancel_requested_at", "cancelled_images", "updated_at"]
        )
        request_finalize_when_ready(locked.pk)
    metrics.IMAGES.labels("cancelled", ReasonCode.CANCELLED).inc(cancelled)
    logger.info("request %s cancelled: %d images not started", locked.pk, cancelled)
    return locked


def request_retry(*, request: ProcessingRequest) -> ProcessingRequest:
    """Queue again a finished request's failed and cancelled images: those that succeeded
    keep their outputs. It finishes again, with a new output CSV and a new webhook event."""
    with transaction.atomic():
        # The account first, as an upload and a re-run lock it: its quota is checked below,
        # and retries of its requests at once each passed the check on the others' counts
        # (two of three let through, 40 images pending against a limit of 30).
        account_lock(account_id=request.account_id)
        locked = ProcessingRequest.objects.select_for_update().get(pk=request.pk)
        if locked.expired_at is not None:
            raise Expired
        if not locked.is_finished:
            raise NotFinished
        again = ProductImage.objects.filter(
            request=locked,
            status__in=[ProductImage.Status.FAILED, ProductImage.Status.CANCELLED],
        )
        failed = again.filter(status=ProductImage.Status.FAILED).count()
        cancelled = again.filter(status=ProductImage.Status.CANCELLED).count()
        # A request that failed as a whole (its outputs could not be written) is finished
        # again even with every image done.
        if not failed and not cancelled and locked.status != ProcessingRequest.Status.FAILED:
            raise NothingToRetry
        # Images queued again count against the account's quota as an upload's do.
        pending_quota_check(account=locked.account, adding=failed + cancelled)
        again.update(
            status=ProductImage.Status.PENDING,
            error_code="",
            error_message="",
            output_name="",
            attempts=0,
            queued_at=None,
            claimed_at=None,
            claim_token=None,
            finished_at=None,
            **NO_FACTS,
        )
        # The next finish writes the output CSV anew; the old one goes once this commits.
        old_csv, locked.output_csv_name = locked.output_csv_name, ""
        if old_csv:
            transaction.on_commit(lambda: default_storage.delete(old_csv))
        locked.status = ProcessingRequest.Status.PROCESSING
        locked.failed_images -= failed
        locked.cancelled_images -= cancelled
        locked.cancel_requested_at = None
        locked.finalize_claimed_at = None
        locked.finished_at = None
        locked.error = ""
        # Its scores' percentiles are its next finish's.
        locked.score_p5 = locked.score_median = None
        locked.save()
        # Its next finish sends a new event, with a new id: receivers tell them apart.
        WebhookDelivery.objects.filter(request=locked).delete()
        request_finalize_when_ready(locked.pk)
    logger.info("request %s retried: %d failed, %d cancelled", locked.pk, failed, cancelled)
    request_window_fill(request_id=locked.pk)
    return locked


def requests_failed_since(
    *, codes: Collection[str], since: datetime, whole: bool = False
) -> QuerySet[ProcessingRequest]:
    """Every account's requests finished since `since`, neither deleted nor cancelled by
    their owners (a retry would start what they stopped), with an image failed for one of
    `codes` (and, `whole`, those that failed as a whole): what an operator retries once
    what failed them is mended, a full storage freed. Oldest first."""
    failed = ProductImage.objects.filter(
        request=OuterRef("pk"), status=ProductImage.Status.FAILED, error_code__in=codes
    )
    matched = Q(Exists(failed))
    if whole:
        matched |= Q(status=ProcessingRequest.Status.FAILED)
    return (
        ProcessingRequest.objects.filter(
            matched,
            finished_at__gte=since,
            expired_at__isnull=True,
            cancel_requested_at__isnull=True,
        )
        .select_related("account")
        .order_by("finished_at")
    )


def request_delete(*, request: ProcessingRequest, by: str) -> None:
    """Delete a finished request's outputs, output CSV, products and images, as
    RETENTION_DAYS would later: marked expired here (every route answers 410 from now on,
    re-use forgets its outputs), its files and rows deleted by a task (a request of 10,000
    products in a bucket is minutes of calls, past a web request's time), and by the
    expiry's next pass if that task is lost. by: who asked, for the log."""
    if expiry.request_mark_expired(request_id=request.pk, cutoff=None, by_owner=True):
        queue.enqueue_after_commit(queue.RESULTS_DELETE, str(request.pk))
        logger.info("request %s deleted by %s: its results go", request.pk, by)
        return
    request.refresh_from_db(
        fields=["status", "expired_at", "finalize_claimed_at", "cancel_requested_at"]
    )
    if request.expired_at is not None:
        raise Expired
    if request.finalize_claimed_at is not None:
        raise Finishing
    raise NotFinished
