"""Old requests leave: RETENTION_DAYS after a request finished, its output files (in the
local folder or the bucket), products and images are deleted, and what the account's
cache offers for re-use from them with them. The request's row stays, as a tombstone that
answers 410 on every route, so that a link to it says what became of it."""

import logging
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from processing import reuse
from processing.models import ProcessingRequest, Product, ProductImage
from processing.policies import OUTPUT_FOLDER

logger = logging.getLogger(__name__)


def requests_expire(*, now: datetime | None = None) -> int:
    """Expire every request finished longer ago than the retention; how many."""
    if settings.RETENTION_DAYS is None:
        return 0
    now = now or timezone.now()
    due = ProcessingRequest.objects.filter(
        status__in=ProcessingRequest.FINISHED_STATUSES,
        finished_at__lt=now - timedelta(days=settings.RETENTION_DAYS),
        expired_at__isnull=True,
    ).values_list("pk", flat=True)
    return sum(request_expire(request_id=request_id) for request_id in list(due))


def request_expire(*, request_id: uuid.UUID) -> bool:
    """Delete one request's results. Files go first: a crash leaves a request whose files
    are partly gone but which is still listed as due, and the next run finishes it."""
    _files_delete(f"{OUTPUT_FOLDER}/{request_id}")
    with transaction.atomic():
        claimed = ProcessingRequest.objects.filter(pk=request_id, expired_at__isnull=True).update(
            expired_at=timezone.now(), output_csv_name="", updated_at=timezone.now()
        )
        if not claimed:
            return False
        reuse.request_outputs_forget(request_id=request_id)
        ProductImage.objects.filter(request_id=request_id).delete()
        Product.objects.filter(request_id=request_id).delete()
    logger.info("request %s expired: its outputs, products and images deleted", request_id)
    return True


def _files_delete(folder: str) -> None:
    try:
        folders, files = default_storage.listdir(folder)
    except FileNotFoundError:
        return
    for name in files:
        default_storage.delete(f"{folder}/{name}")
    for inner in folders:
        _files_delete(f"{folder}/{inner}")
