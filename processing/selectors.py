"""Reads for the API and the webhook. No writes here."""

import functools
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import connection
from django.db.models import Count, F, Field, Model, Prefetch, QuerySet, Sum
from django.db.models.expressions import Col
from django.urls import reverse

from accounts.models import Account
from imaging.encode import QualityMode
from processing.leases import database_now
from processing.models import (
    ProcessingRequest,
    Product,
    ProductImage,
    WebhookAttempt,
    WebhookDelivery,
)


def request_get(*, account: Account, request_id: str | uuid.UUID) -> ProcessingRequest | None:
    """The account's request with this id; None for an unknown or malformed id and for
    another account's request alike (every request route reads through here)."""
    try:
        key = uuid.UUID(str(request_id))
    except ValueError:
        return None
    meta = ProcessingRequest._meta
    params = [
        meta.pk.get_db_prep_value(key, connection),
        meta.get_field("account").get_db_prep_value(account.pk, connection),
    ]
    query = _request_query()
    with connection.cursor() as cursor:
        cursor.execute(query.sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    *values, delivery_pk = row
    for index, converter, column in query.converters:
        values[index] = converter(values[index], column, connection)
    found = ProcessingRequest.from_db(connection.alias, query.names, values)
    if delivery_pk is None:
        # Known to have none: the status body asks without another query.
        ProcessingRequest.webhook_delivery.related.set_cached_value(found, None)
    return found


@dataclass(frozen=True)
class _RequestQuery:
    """request_get's statement and how to read its row into a ProcessingRequest: the
    fields' names in the statement's order, and the converters (the database backend's,
    then the field's own: SQLite's text to datetimes and UUIDs, JSON) at their places."""

    sql: str
    names: list[str]
    converters: list[tuple[int, Callable[..., Any], Col]]


@functools.cache
def _request_query() -> _RequestQuery:
    """Made once per process from the models: the ORM compiled the statement anew on every
    call, 0.5 ms of a status poll's 1.7, and a raw queryset then spent 0.4 ms more working
    out how to read its one row (BENCHMARKS.md, "The status endpoint")."""
    fields = ProcessingRequest._meta.concrete_fields
    table = ProcessingRequest._meta.db_table
    converters = [
        (index, converter, column)
        for index, column in enumerate(field.get_col(table) for field in fields)
        for converter in connection.ops.get_db_converters(column)
        + column.get_db_converters(connection)
    ]
    return _RequestQuery(_request_sql(), [field.attname for field in fields], converters)


def _request_sql() -> str:
    """The request's columns, and its webhook delivery's id or NULL; a delivery that exists
    is loaded when read: only a request that has finished has one."""
    quote = connection.ops.quote_name

    def column(model: type[Model], name: str = "pk") -> str:
        field = model._meta.pk if name == "pk" else model._meta.get_field(name)
        assert isinstance(field, Field)
        assert field.column is not None
        return quote(field.column)

    request, delivery = ProcessingRequest, WebhookDelivery
    columns = ", ".join(
        f"r.{column(request, field.name)}" for field in request._meta.concrete_fields
    )
    # Only names from the models and placeholders go into the text.
    return (
        f"SELECT {columns}, d.{column(delivery)} AS webhook_delivery_pk "  # noqa: S608
        f"FROM {quote(request._meta.db_table)} r "
        f"LEFT JOIN {quote(delivery._meta.db_table)} d "
        f"ON d.{column(delivery, 'request')} = r.{column(request)} "
        f"WHERE r.{column(request)} = %s AND r.{column(request, 'account')} = %s"
    )


def request_expired(*, request_id: uuid.UUID) -> bool:
    """Whether the request has expired (or been deleted) by now, read afresh: for work that
    read the request before and must not outlive it."""
    return ProcessingRequest.objects.filter(pk=request_id, expired_at__isnull=False).exists()


def request_get_any(*, request_id: str | uuid.UUID) -> ProcessingRequest | None:
    """The request with this id whoever owns it: for operators' commands, never the API."""
    try:
        return ProcessingRequest.objects.filter(pk=uuid.UUID(str(request_id))).first()
    except ValueError:
        return None


# Newest first; the id breaks a tie, so that pages never skip or repeat a request.
REQUESTS_ORDER = ("-created_at", "-request_id")


def requests_list(*, account: Account, statuses: Sequence[str] = ()) -> QuerySet[ProcessingRequest]:
    """The account's requests, newest first: those in statuses, or all."""
    listed = ProcessingRequest.objects.filter(account=account)
    if statuses:
        listed = listed.filter(status__in=statuses)
    return listed.order_by(*REQUESTS_ORDER)


def request_listed_payload(request: ProcessingRequest) -> dict[str, Any]:
    """A request as the list of requests shows it: its status body without the webhook
    (one query for the whole page), with where to follow it. An expired request keeps its
    counts; its products and output CSV are gone, so no link points at them."""
    base_url = request.public_base_url
    expired_by = "account" if request.deleted_by_owner else "retention"
    payload = request_status_payload(request) | {
        "finished_at": timestamp(request.finished_at),
        "expired_at": timestamp(request.expired_at),
        "expired_by": expired_by if request.expired_at is not None else None,
        "status_url": api_url(base_url=base_url, view_name="request-status", request_id=request.pk),
        "page_url": api_url(base_url=base_url, view_name="request-page", request_id=request.pk),
    }
    if request.expired_at is not None:
        payload |= {"output_csv_url": None, "products_url": None}
    return payload


def account_pending_images(*, account: Account) -> int:
    """Images of the account's unfinished requests that have not ended yet."""
    pending = (
        ProcessingRequest.objects.filter(account=account)
        .exclude(status__in=ProcessingRequest.FINISHED_STATUSES)
        .aggregate(
            pending=Sum(
                F("total_images")
                - F("succeeded_images")
                - F("failed_images")
                - F("cancelled_images")
            )
        )
    )["pending"]
    return int(pending or 0)


def request_products(
    *, request_id: uuid.UUID, image_statuses: list[str] | None = None
) -> QuerySet[Product]:
    """The request's products in input order, each with its images in cell order; only
    those with an image in one of image_statuses, if given."""
    products = Product.objects.filter(request_id=request_id)
    if image_statuses:
        products = products.filter(
            pk__in=ProductImage.objects.filter(
                request_id=request_id, status__in=image_statuses
            ).values("product_id")
        )
    return products.order_by("position").prefetch_related(
        Prefetch("images", queryset=ProductImage.objects.order_by("position"))
    )


def media_url(*, base_url: str, name: str) -> str:
    """The absolute URL at which a stored output file is served: the object store's (public
    or presigned) when there is one, else this service's own /media/."""
    if settings.S3_BUCKET:
        return str(default_storage.url(name))
    return f"{base_url}{settings.MEDIA_URL}{name}"


def api_url(*, base_url: str, view_name: str, request_id: uuid.UUID) -> str:
    return base_url + reverse(view_name, kwargs={"request_id": request_id})


def output_csv_url(request: ProcessingRequest) -> str | None:
    if not request.is_finished or not request.output_csv_name:
        return None
    return api_url(
        base_url=request.public_base_url, view_name="request-output-csv", request_id=request.pk
    )


def request_status_payload(request: ProcessingRequest) -> dict[str, Any]:
    """What the status API answers and the webhook sends: one row, whatever the size."""
    payload: dict[str, Any] = {
        "request_id": str(request.pk),
        "status": request.status,
        "file_name": request.file_name,
        "created_at": timestamp(request.created_at),
        "updated_at": timestamp(request.updated_at),
        "progress": {
            "total": request.total_images,
            "succeeded": request.succeeded_images,
            "failed": request.failed_images,
            "cancelled": request.cancelled_images,
            "pending": request.pending_images,
        },
        # Beside progress, not in it: its counts add up to the total, and these two to its
        # succeeded.
        "outputs": {
            "compressed": request.succeeded_images - request.reused_images,
            "reused": request.reused_images,
        },
        "bytes": {"input": request.input_bytes, "output": request.output_bytes},
        "settings": {
            "quality": request.quality,
            "quality_mode": request.quality_mode,
            "target": request.quality_target or None,
            "target_score": request.target_score,
            "output_format": request.output_format,
            "metadata": request.metadata,
            "score": request.scored or request.quality_mode == QualityMode.PERCEPTUAL,
        },
        "score": {"p5": request.score_p5, "median": request.score_median},
        "output_csv_url": output_csv_url(request),
        "products_url": api_url(
            base_url=request.public_base_url,
            view_name="request-products",
            request_id=request.pk,
        ),
        "cancel_requested_at": timestamp(request.cancel_requested_at),
        "source_request_id": str(request.source_request_id) if request.source_request_id else None,
        "expires_at": timestamp(expires_at(request)),
    }
    if request.error:
        payload["error"] = request.error
    return payload


def expires_at(request: ProcessingRequest) -> datetime | None:
    """When a finished request's results will be deleted (RETENTION_DAYS after it
    finished); None while it runs, once they have been, or with no retention set."""
    if request.finished_at is None or request.expired_at is not None:
        return None
    if settings.RETENTION_DAYS is None:
        return None
    return request.finished_at + timedelta(days=settings.RETENTION_DAYS)


def webhook_state(request: ProcessingRequest) -> dict[str, Any] | None:
    """Where the request's webhook delivery is, for the status API."""
    delivery = getattr(request, "webhook_delivery", None)
    if delivery is None:
        return None
    return {
        "event_id": delivery.event_id,
        "state": delivery.state,
        "attempts": delivery.attempts,
        "last_attempt_at": timestamp(delivery.last_attempt_at),
        "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error or None,
        "next_attempt_at": timestamp(delivery.next_attempt_at)
        if delivery.state == delivery.State.PENDING
        else None,
    }


def webhook_attempts(request: ProcessingRequest) -> list[dict[str, Any]]:
    return [
        {
            "attempted_at": timestamp(attempt.attempted_at),
            "status_code": attempt.status_code,
            "error": attempt.error or None,
            "duration_ms": attempt.duration_ms,
        }
        for attempt in WebhookAttempt.objects.filter(delivery__request=request).order_by("id")
    ]


def timestamp(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def image_output_url(request: ProcessingRequest, image: ProductImage) -> str | None:
    if image.status != ProductImage.Status.SUCCEEDED or not image.output_name:
        return None
    return media_url(base_url=request.public_base_url, name=image.output_name)


@dataclass(frozen=True)
class Backlog:
    requests: int  # not finished yet
    images: int  # of those requests, not ended yet (read from the counters)
    # Of those images, the ones held by a worker that stopped renewing its hold for two of
    # its renewals (processing/leases.py): most likely lost with its host. The sweep takes
    # them back once WORK_LEASE_SECONDS has passed; until then nothing else showed them.
    images_unrenewed: int


def backlog() -> Backlog:
    unfinished = ProcessingRequest.objects.exclude(status__in=ProcessingRequest.FINISHED_STATUSES)
    totals = unfinished.aggregate(
        requests=Count("pk"),
        pending=Sum(
            F("total_images") - F("succeeded_images") - F("failed_images") - F("cancelled_images")
        ),
    )
    overdue = database_now() - timedelta(seconds=settings.WORK_LEASE_SECONDS * 2 / 3)
    unrenewed = ProductImage.objects.filter(
        request__in=unfinished.values("pk"),  # by (request, status): a few requests' rows
        status=ProductImage.Status.PROCESSING,
        claimed_at__lt=overdue,
    ).count()
    return Backlog(totals["requests"], totals["pending"] or 0, unrenewed)
