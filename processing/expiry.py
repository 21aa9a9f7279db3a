"""Old requests leave: RETENTION_DAYS after a request finished, its output files (in the
local folder or the bucket), products and images are deleted, and what the account's
cache offers for re-use from them with them. The request's row stays, as a tombstone that
answers 410 on every route, so that a link to it says what became of it."""

import contextlib
import logging
import os
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.core.files.storage import FileSystemStorage, default_storage
from django.db import transaction
from django.utils import timezone

from processing import reuse
from processing.models import ProcessingRequest, Product, ProductImage, WebhookDelivery
from processing.policies import OUTPUT_FOLDER

logger = logging.getLogger(__name__)

# What a webhook still to be delivered says when its request expires first.
EXPIRED_ERROR = "The request expired before its webhook was delivered; it is not sent."
DELETED_ERROR = "The request was deleted before its webhook was delivered; it is not sent."


def requests_expire(*, now: datetime | None = None) -> int:
    """Expire every request finished longer ago than the retention; how many. Also finish
    what a run stopped midway or a deletion's task left, and forget sources no request has
    used since."""
    expired = 0
    if settings.RETENTION_DAYS is not None:
        now = now or timezone.now()
        cutoff = now - timedelta(days=settings.RETENTION_DAYS)
        due = ProcessingRequest.objects.filter(
            status__in=ProcessingRequest.FINISHED_STATUSES,
            finished_at__lt=cutoff,
            expired_at__isnull=True,
        ).values_list("pk", flat=True)
        for request_id in list(due):
            if request_mark_expired(request_id=request_id, cutoff=cutoff):
                expired += 1
                logger.info("request %s expired: its outputs, products and images go", request_id)
        reuse.sources_forget(checked_before=cutoff)
    _halfway_finish()  # whatever the retention: an account's deletions need it too
    return expired


def request_mark_expired(
    *, request_id: uuid.UUID, cutoff: datetime | None, by_owner: bool = False
) -> bool:
    """Mark one request expired if it is still finished (before cutoff, where one is
    given); True if this call did. by_owner: its account asked, now (control.request_delete).

    A conditional UPDATE that a retry (which takes the same row) cannot cross: from then on
    every route answers 410, a retry or a re-run is refused, and re-use no longer offers
    its outputs. Its files and rows go after (results_delete)."""
    now = timezone.now()
    due = ProcessingRequest.objects.filter(
        pk=request_id, status__in=ProcessingRequest.FINISHED_STATUSES, expired_at__isnull=True
    )
    if cutoff is not None:
        due = due.filter(finished_at__lt=cutoff)
    with transaction.atomic():
        claimed = due.update(
            expired_at=now, deleted_by_owner=by_owner, output_csv_name="", updated_at=now
        )
        if not claimed:
            return False
        reuse.request_outputs_forget(request_id=request_id)
        # A webhook not delivered yet would tell its receiver of results that are gone.
        WebhookDelivery.objects.filter(
            request_id=request_id, state=WebhookDelivery.State.PENDING
        ).update(
            state=WebhookDelivery.State.FAILED,
            next_attempt_at=None,
            last_error=DELETED_ERROR if by_owner else EXPIRED_ERROR,
        )
    return True


def results_delete(*, request_id: uuid.UUID) -> None:
    """An expired request's files, then its products and images. Run again after a crash,
    it finishes the job (requests_expire finds requests still holding products)."""
    _files_delete(f"{OUTPUT_FOLDER}/{request_id}")
    with transaction.atomic():
        ProductImage.objects.filter(request_id=request_id).delete()
        Product.objects.filter(request_id=request_id).delete()


def _halfway_finish() -> None:
    """Delete the files and rows of every request marked expired that still has them: just
    marked by this pass, or left by a crash, a storage error or a lost deletion task. One
    that fails is logged and left for the next pass; the others go on (a request whose
    files the storage keeps refusing stopped every expiry after it). A webhook resent in
    the instant a request expired, and left pending, is failed."""
    halfway = ProcessingRequest.objects.filter(
        expired_at__isnull=False, pk__in=Product.objects.values("request_id")
    ).values_list("pk", flat=True)
    for request_id in list(halfway):
        try:
            results_delete(request_id=request_id)
        except Exception:
            logger.exception("request %s: its results could not all be deleted", request_id)
    for by_owner, error in ((False, EXPIRED_ERROR), (True, DELETED_ERROR)):
        WebhookDelivery.objects.filter(
            state=WebhookDelivery.State.PENDING,
            request__expired_at__isnull=False,
            request__deleted_by_owner=by_owner,
        ).update(state=WebhookDelivery.State.FAILED, next_attempt_at=None, last_error=error)


def _files_delete(folder: str) -> None:
    try:
        folders, files = default_storage.listdir(folder)
    except FileNotFoundError:
        return
    for name in files:
        default_storage.delete(f"{folder}/{name}")
    for inner in folders:
        _files_delete(f"{folder}/{inner}")
    if isinstance(default_storage, FileSystemStorage):
        # A local folder left empty goes too (an object store has no folders to remove).
        with contextlib.suppress(OSError):
            os.rmdir(default_storage.path(folder))
