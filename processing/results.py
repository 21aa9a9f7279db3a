"""Recording what became of an image URL: the one way an image ends or is retried, used
by the pipeline's batches and by the sweep alike, so that counters and metrics agree.

An outcome is written to every image of its request with that URL which the caller still
holds (a queryset: the batch's claim, or the sweep's overdue images), counted on the
request in the same transaction, which also queues the request's next batch (window.py);
the request is queued for finalisation once its last image has ended.
"""

import dataclasses
import logging
import random
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from processing import bulk, metrics, queue
from processing.facts import OutputFacts
from processing.models import ProcessingRequest, ProductImage, ReasonCode
from processing.outcomes import ImageFailure, ImageOutcome
from processing.window import batch_size_next, batch_size_of, request_window_refill

logger = logging.getLogger(__name__)


# What a result sets on every image with its URL; what a retry sets.
FACT_FIELDS = tuple(field.name for field in dataclasses.fields(OutputFacts))
RESULT_FIELDS = (
    "status",
    "finished_at",
    "output_name",
    "error_code",
    "error_message",
    *FACT_FIELDS,
)
RETRY_FIELDS = ("status", "queued_at", "error_code", "error_message")
NOT_ENDED = (ProductImage.Status.PENDING, ProductImage.Status.PROCESSING)
NO_FACTS = {
    field.name: field.get_default()
    for field in ProductImage._meta.concrete_fields
    if field.name in FACT_FIELDS
}


def images_record(
    *, request_id: uuid.UUID, held: QuerySet[ProductImage], outcomes: list[ImageOutcome]
) -> None:
    """End or retry each outcome's images among `held`, count them, queue what follows.

    A success ends every image of its URL not ended yet, held or not: the first result
    made is never thrown away because the image was claimed again meanwhile (a copy of the
    task delivered twice, a lease that ran out). One UPDATE for the successes, one for the
    failures and one for the retries where there are any, one for the request's counters
    (the re-used among the succeeded too), in one transaction (the caller's, if any).
    """
    now = timezone.now()
    unfinished = ProductImage.objects.filter(request_id=request_id, status__in=NOT_ENDED)
    with transaction.atomic(savepoint=False):
        # A batch with an image to retry takes the request's row first, as request_cancel
        # does: a cancel waits for this record or this record sees it, and an image of a
        # cancelled request is not retried. Other batches take the row only with their
        # counters' UPDATE, late, so that the batches of a request record side by side.
        cancelled = any(map(_retry_due, outcomes)) and (
            ProcessingRequest.objects.select_for_update()
            .filter(pk=request_id)
            .values_list("cancel_requested_at", flat=True)
            .get()
            is not None
        )
        rows = _rows(outcomes, now, cancelled=cancelled)
        ended = Counter(
            bulk.update_from_rows(
                unfinished, key="input_url", fields=RESULT_FIELDS, rows=rows.successes
            )
        )
        ended_as: dict[str, int] = {"succeeded": sum(ended.values()), "failed": 0, "cancelled": 0}
        for status, rows_ending in (("failed", rows.failures), ("cancelled", rows.cancels)):
            count = Counter(
                bulk.update_from_rows(held, key="input_url", fields=RESULT_FIELDS, rows=rows_ending)
            )
            ended_as[status] = count.total()
            ended += count
        retried = set(
            bulk.update_from_rows(
                held,
                key="input_url",
                fields=RETRY_FIELDS,
                rows=[row for _, _, row in rows.retries.values()],
            )
        )
        if ended:
            # The counters, and what the request's row says of its batches as it counts.
            (counted,) = bulk.update_returning(
                ProcessingRequest.objects.filter(pk=request_id),
                values={
                    "succeeded_images": F("succeeded_images") + ended_as["succeeded"],
                    "failed_images": F("failed_images") + ended_as["failed"],
                    "cancelled_images": F("cancelled_images") + ended_as["cancelled"],
                    "reused_images": F("reused_images") + _reused(outcomes, ended),
                    "input_bytes": F("input_bytes") + _bytes(outcomes, ended, "input_bytes"),
                    "output_bytes": F("output_bytes") + _bytes(outcomes, ended, "output_bytes"),
                    "updated_at": now,
                },
                returning=["batch_size", "output_format", "quality_mode"],
            )
            stored_size, output_format, quality_mode = counted
            batch_size = batch_size_of(stored_size)
            learnt = batch_size_next(
                batch_size,
                [
                    item.downloaded_bytes
                    for item in outcomes
                    if ended[item.input_url] and item.facts
                ],
                output_format=output_format,
                quality_mode=quality_mode,
            )
            if learnt != stored_size:  # while it grows: a few batches a request
                ProcessingRequest.objects.filter(pk=request_id).update(batch_size=learnt)
            # What ended leaves room in the request's window: its next URLs take it.
            request_window_refill(request_id=request_id, batch_size=learnt)
            request_finalize_when_ready(request_id)
        for url in retried:
            outcome, delay, _ = rows.retries[url]
            queue.enqueue_after_commit(
                queue.IMAGES_PROCESS, [outcome.image_id], str(request_id), countdown=delay
            )
    cancelled_urls = {row["input_url"] for row in rows.cancels}
    for outcome in outcomes:
        if outcome.input_url in cancelled_urls:
            metrics.IMAGES.labels("cancelled", ReasonCode.CANCELLED).inc(ended[outcome.input_url])
        elif ended[outcome.input_url]:
            _images_count(outcome, ended[outcome.input_url])
    for url in retried:
        outcome, delay, _ = rows.retries[url]
        assert outcome.failure is not None
        logger.info("image %s: retrying in %.1f s", outcome.image_id, delay)
        metrics.IMAGE_RETRIES.labels(outcome.failure.reason).inc()


def _bytes(outcomes: list[ImageOutcome], ended: Counter[str], fact: str) -> int:
    """A fact's bytes over the images this batch's successes ended, each image counted."""
    return sum(
        ended[outcome.input_url] * getattr(outcome.facts, fact)
        for outcome in outcomes
        if outcome.facts is not None
    )


def _reused(outcomes: list[ImageOutcome], ended: Counter[str]) -> int:
    """The images this batch's successes ended with an earlier request's output."""
    return sum(
        ended[outcome.input_url]
        for outcome in outcomes
        if outcome.facts is not None and outcome.facts.reused
    )


@dataclass
class _Rows:
    """A batch's outcomes as the rows each UPDATE writes."""

    successes: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    failures: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    cancels: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    retries: dict[str, tuple[ImageOutcome, float, dict[str, Any]]] = dataclasses.field(
        default_factory=dict
    )


def _retry_due(outcome: ImageOutcome) -> bool:
    """A transient failure with attempts left (or one more, where once_more): queued again,
    unless the request is cancelled."""
    failure = outcome.failure
    return (
        outcome.facts is None
        and failure is not None
        and failure.transient
        # once_more: one attempt past the limit, never two
        and outcome.attempt < settings.IMAGE_MAX_ATTEMPTS + failure.once_more
    )


def _rows(outcomes: list[ImageOutcome], now: datetime, *, cancelled: bool) -> _Rows:
    rows = _Rows()
    for outcome in outcomes:
        failure = outcome.failure
        if outcome.facts is not None:
            rows.successes.append(_result_row(outcome, now))
        elif failure is None:
            continue
        elif failure.reason == ReasonCode.CANCELLED:  # the batch saw the cancel
            rows.cancels.append(
                _result_row(outcome, now) | {"status": ProductImage.Status.CANCELLED}
            )
        elif not _retry_due(outcome):
            _failure_log(outcome, failure)
            rows.failures.append(_result_row(outcome, now))
        elif cancelled:
            _failure_log(outcome, failure)
            rows.cancels.append(
                _result_row(outcome, now)
                | {
                    "status": ProductImage.Status.CANCELLED,
                    "error_code": ReasonCode.CANCELLED,
                    "error_message": f"{failure.message} Not retried: the request was cancelled.",
                }
            )
        else:
            delay = _retry_delay(outcome.attempt, failure)
            rows.retries[outcome.input_url] = (
                outcome,
                delay,
                _retry_row(outcome, failure, delay, now),
            )
    return rows


def request_finalize_when_ready(request_id: uuid.UUID) -> None:
    """Queue the request's finalisation, on the requests queue, once its images have all
    ended: writing a large output CSV must not hold up an image worker. Two batches that
    end together may both queue it; request_finalize runs once all the same."""
    if ProcessingRequest.objects.ready_to_finalize().filter(pk=request_id).exists():
        queue.enqueue_after_commit(queue.REQUEST_FINALIZE, str(request_id))


def _result_row(outcome: ImageOutcome, now: datetime) -> dict[str, Any]:
    if outcome.facts is not None:
        return {
            "input_url": outcome.input_url,
            "status": ProductImage.Status.SUCCEEDED,
            "finished_at": now,
            "output_name": outcome.output_name,
            "error_code": "",
            "error_message": "",
            **dataclasses.asdict(outcome.facts),
        }
    failure = outcome.failure
    assert failure is not None
    # A failure that was tried again says so: the tries were otherwise shown nowhere. (A
    # worker lost each time says it in its own words.)
    retried = (
        failure.transient and outcome.attempt > 1 and failure.reason != ReasonCode.INTERNAL_ERROR
    )
    tried = f" Tried {outcome.attempt} times." if retried else ""
    return {
        "input_url": outcome.input_url,
        "status": ProductImage.Status.FAILED,
        "finished_at": now,
        "output_name": "",
        "error_code": failure.reason,
        "error_message": failure.message + tried,
        **NO_FACTS,
    }


def _failure_log(outcome: ImageOutcome, failure: ImageFailure) -> None:
    logger.info("image %s failed: %s %s", outcome.image_id, failure.reason, failure.message)


def _retry_row(
    outcome: ImageOutcome, failure: ImageFailure, delay: float, now: datetime
) -> dict[str, Any]:
    return {
        "input_url": outcome.input_url,
        "status": ProductImage.Status.PENDING,
        "queued_at": now + timedelta(seconds=delay),
        "error_code": failure.reason,
        "error_message": f"{failure.message} Retrying (attempt {outcome.attempt + 1}).",
    }


def _images_count(outcome: ImageOutcome, ended: int) -> None:
    if outcome.facts is not None:
        metrics.IMAGES.labels("succeeded", "").inc(ended)
        # Bytes moved once per URL, however many images share it.
        metrics.BYTES_IN.inc(outcome.downloaded_bytes)
        metrics.BYTES_OUT.inc(outcome.facts.output_bytes)
        if outcome.facts.reused:
            metrics.IMAGES_REUSED.inc(ended)
    elif outcome.failure is not None:
        metrics.IMAGES.labels("failed", outcome.failure.reason).inc(ended)


def _retry_delay(attempt: int, failure: ImageFailure) -> float:
    """A wait that doubles with each attempt, or what the server's Retry-After asked for,
    up to a bound, with a little jitter."""
    backoff = settings.IMAGE_FETCH_RETRY_BACKOFF * 2 ** (attempt - 1)
    delay = min(settings.IMAGE_FETCH_RETRY_MAX_DELAY, max(backoff, failure.retry_after or 0.0))
    return float(delay * (1 + random.uniform(0, 0.1)))  # noqa: S311  (jitter, not security)
