"""The sweep: the database is the source of truth, the queue only a fast path.

Run every SWEEP_INTERVAL by Celery beat (and once by `manage.py sweep`), it finds work the
queue lost — a worker killed mid-image, a broker restarted empty, a finalisation cut off —
and queues it again. Every step is a conditional update, so a sweep that overlaps a live
worker changes nothing twice; and one sweep runs at a time (sweep_exclusive): a second
celery beat (two hosts each running one), or `manage.py sweep` during beat's, queued every
start and webhook send it found twice, and is now skipped, saying so at WARNING.
"""

import contextlib
import fcntl
import hashlib
import logging
import os
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import Max, Min, Q, QuerySet

from processing import queue
from processing.finalize import request_finalize
from processing.leases import database_now
from processing.models import ProcessingRequest, ProductImage, WebhookDelivery
from processing.outcomes import ImageFailure, ImageOutcome, lost_ending
from processing.results import images_record
from processing.window import request_window_fill

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepReport:
    requests_restarted: int = 0
    images_requeued: int = 0
    images_given_up: int = 0
    images_queued: int = 0  # waiting their turn, queued where a request's window had room
    requests_finalised: int = 0
    webhooks_requeued: int = 0
    # Who held the sweep's lock, when another sweep was under way and this one did nothing.
    skipped_for: str = field(default="", repr=False)


def sweep_run() -> SweepReport:
    """Queue again what is overdue; give up on images past IMAGE_MAX_ATTEMPTS. Nothing, if
    another sweep is under way (skipped_for says whose)."""
    with sweep_exclusive() as holder:
        if holder:
            logger.warning(
                "sweep: skipped, another sweep is under way (%s): two celery beats running "
                "(one per deployment is enough), or `manage.py sweep` during beat's",
                holder,
            )
            return SweepReport(skipped_for=holder)
        return _sweep()


def _sweep() -> SweepReport:
    now = database_now()  # the clock claims are written by, whichever host this is
    cutoff = now - timedelta(seconds=settings.WORK_LEASE_SECONDS)
    requests_restarted = _requests_restart(now)
    images_requeued, images_given_up = _images_requeue(now, cutoff)
    report = SweepReport(
        requests_restarted=requests_restarted,
        images_requeued=images_requeued,
        images_given_up=images_given_up,
        images_queued=_windows_fill(),
        requests_finalised=_requests_finalise(cutoff),
        webhooks_requeued=_webhooks_requeue(now, cutoff),
    )
    if report != SweepReport():
        logger.info("sweep: %s", report)
    return report


def _requests_restart(now: datetime) -> int:
    """Requests accepted and not started: their start was not queued (the broker away
    when they came) or was lost. Queued again two sweeps after the upload, or after the
    last time the sweep queued it, however late the sweeps run: no lease to wait for (a
    start queued twice starts once), and no copy at every sweep of a start waiting behind
    a long queue. updated_at says when it was last queued."""
    waited = now - timedelta(seconds=2 * settings.SWEEP_INTERVAL)
    stuck = list(
        ProcessingRequest.objects.filter(
            status=ProcessingRequest.Status.PENDING, updated_at__lt=waited
        ).values_list("pk", flat=True)
    )
    ProcessingRequest.objects.filter(pk__in=stuck, status=ProcessingRequest.Status.PENDING).update(
        updated_at=now
    )
    return _enqueue_each(queue.REQUEST_START, stuck)


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
    groups = overdue.values(
        "request_id", "input_url", "status", "request__cancel_requested_at"
    ).annotate(first_id=Min("id"), attempts=Max("attempts"))
    requeued: Counter[uuid.UUID] = Counter()
    given_up = 0
    for group in groups.iterator():
        same_url = ProductImage.objects.filter(
            request_id=group["request_id"], input_url=group["input_url"], status=group["status"]
        )
        if group["status"] == ProductImage.Status.PROCESSING:
            same_url = same_url.filter(claimed_at__lt=cutoff)
            cancelled = group["request__cancel_requested_at"] is not None
            if ending := lost_ending(group["attempts"], cancelled=cancelled):
                _image_give_up(group, same_url, ending)
                given_up += 1
                continue
        else:
            same_url = same_url.filter(queued_at__lt=cutoff)
        if same_url.update(status=ProductImage.Status.PENDING, queued_at=now):
            queue.enqueue_after_commit(
                queue.IMAGES_PROCESS, [group["first_id"]], str(group["request_id"])
            )
            requeued[group["request_id"]] += 1
    for request_id, urls in requeued.items():
        logger.info(
            "sweep: %d image URLs queued again, their worker or their message lost",
            urls,
            extra={"request_id": str(request_id)},
        )
    return requeued.total(), given_up


def _image_give_up(
    group: Mapping[str, Any], overdue: QuerySet[ProductImage], ending: ImageFailure
) -> None:
    """End a URL whose attempts were lost, recorded as any image's result is."""
    outcome = ImageOutcome(
        input_url=group["input_url"],
        image_id=group["first_id"],
        attempt=group["attempts"],
        failure=ending,
    )
    images_record(request_id=group["request_id"], held=overdue, outcomes=[outcome])


def _windows_fill() -> int:
    """Top up the window of every request under way that still has images waiting their
    turn: after a lost message or a crashed worker, no batch may be left to do it."""
    under_way = ProcessingRequest.objects.filter(
        status=ProcessingRequest.Status.PROCESSING, finalize_claimed_at__isnull=True
    ).values_list("pk", flat=True)
    return sum(request_window_fill(request_id=request_id) for request_id in under_way)


def _requests_finalise(cutoff: datetime) -> int:
    """Requests whose images have all ended but that no worker finalised (or finished)."""
    ProcessingRequest.objects.filter(
        status=ProcessingRequest.Status.PROCESSING, finalize_claimed_at__lt=cutoff
    ).update(finalize_claimed_at=None)
    ready = ProcessingRequest.objects.ready_to_finalize().values_list("pk", flat=True)
    return sum(request_finalize(request_id=request_id) for request_id in ready)


def _webhooks_requeue(now: datetime, cutoff: datetime) -> int:
    """Deliveries due and not queued since cutoff (by the sweep, or as a retry's countdown
    ending): their send was never queued (the broker away, a retry left to the sweep) or
    was lost. A send waiting behind slow receivers is not queued again at every sweep."""
    due = WebhookDelivery.objects.filter(
        Q(queued_at__isnull=True) | Q(queued_at__lt=cutoff),
        state=WebhookDelivery.State.PENDING,
        next_attempt_at__lte=now,
        request__expired_at__isnull=True,  # webhook_send would do nothing, every sweep
    )
    request_ids = list(due.values_list("request_id", flat=True))
    WebhookDelivery.objects.filter(request_id__in=request_ids).update(queued_at=now)
    return _enqueue_each(queue.WEBHOOK_SEND, request_ids)


def _enqueue_each(task_name: str, request_ids: Iterable[uuid.UUID]) -> int:
    count = 0
    for request_id in request_ids:
        queue.enqueue_after_commit(task_name, str(request_id))
        count += 1
    return count


@contextlib.contextmanager
def sweep_exclusive() -> Iterator[str]:
    """Hold the sweep's lock within, yielding ""; or, if another run holds it, yield who.

    On PostgreSQL a session advisory lock, so that sweeps on every host exclude each other
    and a run whose process or connection dies lets go at once (a lease in a row would
    have stopped the sweep, the service's recovery, until it ran out). On SQLite, whose
    service is one host's, a lock on a file in VAR_DIR, let go as well by a process dying.
    (A pooler in transaction mode, PgBouncer's, cannot keep a session's lock: point the
    workers past it.) Within a transaction, the transaction's lock instead, let go as it
    commits or rolls back, when others first see what the sweep changed: the session's
    outlived a sweep that failed there, its unlock refused by the aborted transaction, and
    every later sweep was skipped for as long as the connection lived."""
    if connection.vendor == "postgresql":
        key = _lock_key("sweep")
        in_transaction = connection.in_atomic_block
        with connection.cursor() as cursor:
            if in_transaction:
                cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [key])
            else:
                cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
            (taken,) = cursor.fetchone()
        if not taken:
            yield _advisory_holder(key)
            return
        if in_transaction:
            yield ""
            return
        try:
            yield ""
        finally:
            with contextlib.suppress(DatabaseError), connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
        return
    descriptor = os.open(settings.VAR_DIR / "sweep.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield f"process {os.pread(descriptor, 32, 0).decode(errors='replace').strip()}"
            return
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, str(os.getpid()).encode(), 0)
        yield ""
    finally:
        os.close(descriptor)  # which lets go of the lock


def _lock_key(name: str) -> int:
    """A signed 64-bit advisory lock key of this service's own for name."""
    digest = hashlib.sha256(f"imgsvc:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _advisory_holder(key: int) -> str:
    """The session holding advisory lock key, as an operator finds it: its backend's pid,
    client address and since when (PostgreSQL splits a 64-bit key in two 32-bit ids)."""
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT a.pid, a.client_addr, a.backend_start FROM pg_locks l"
            " JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted"
            " AND l.classid = %s AND l.objid = %s AND l.objsubid = 1",
            [unsigned >> 32, unsigned & 0xFFFFFFFF],
        )
        row = cursor.fetchone()
    if row is None:
        return "a session that has just let go"
    pid, address, since = row
    where = f" from {address}" if address else ""
    return f"PostgreSQL session {pid}{where}, connected {since:%Y-%m-%d %H:%M:%S %Z}"
