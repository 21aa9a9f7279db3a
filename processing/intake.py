"""An upload, from CSV to queued work: validate the whole file, store the request with its
products and one row per image, queue its start; then start it, queueing its images in
batches of distinct URLs. (What happens to each batch: pipeline.py.)"""

import itertools
import logging
import re
import uuid
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import Account
from accounts.services import account_lock
from imaging.encode import OutputFormat, QualityMode
from imaging.quality import QualityTarget
from processing import bulk, queue
from processing.csv_format import ParsedProduct, iter_products, validate_products
from processing.idempotency import Idempotency, earlier_request_check
from processing.models import (
    FILE_NAME_MAX_CHARACTERS,
    ProcessingRequest,
    Product,
    ProductImage,
)
from processing.policies import csv_limits, pending_quota_check
from processing.window import request_window_fill

logger = logging.getLogger(__name__)

INSERT_BATCH = 2000


class SourceExpired(Exception):
    """The request to re-run expired: its products and images are gone."""


def request_create(
    *,
    account: Account,
    csv_data: bytes,
    public_base_url: str,
    file_name: str = "",
    webhook_url: str = "",
    quality: int | None = None,
    quality_mode: str | None = None,
    target: str | None = None,
    output_format: str | None = None,
    metadata: str | None = None,
    score: bool | None = None,
    idempotency: Idempotency | None = None,
) -> ProcessingRequest:
    """Validate the whole CSV, store the request with its products and images, queue it.
    file_name is the upload's, as its client sent it (kept as upload_file_name gives it).

    Raises CsvInvalid, with every problem, before anything is stored; QuotaExceeded
    when the account's unfinished images and these would pass ACCOUNT_MAX_PENDING_IMAGES;
    Replayed or KeyReused when idempotency's key made a request already.
    The file is read twice: once to validate it, once to insert it in batches, so that
    memory does not grow with the number of rows.
    """
    limits = csv_limits()
    if idempotency is not None:
        # Before the file is read: a key that made a request answers for it (or refuses
        # another file) at the cost of a lookup. The rate limit lets such a key through
        # (AccountUploadThrottle), so validating first let one used key send any number
        # of files through the whole CSV check, unthrottled. Checked again under the lock.
        earlier_request_check(account=account, idempotency=idempotency)
    summary = validate_products(csv_data, limits)
    with transaction.atomic():
        # One upload of an account at a time past this point, so that two cannot both
        # fit under the quota that only one of them fits under.
        account_lock(account_id=account.pk)
        if idempotency is not None:
            earlier_request_check(account=account, idempotency=idempotency)
        pending_quota_check(account=account, adding=summary.images)
        request = ProcessingRequest.objects.create(
            account=account,
            idempotency_key=idempotency.key if idempotency else "",
            idempotency_digest=idempotency.digest if idempotency else "",
            file_name=upload_file_name(file_name),
            public_base_url=public_base_url.rstrip("/"),
            webhook_url=webhook_url,
            quality=quality or settings.IMAGE_QUALITY,
            **quality_target(quality_mode, target, default_mode=settings.IMAGE_QUALITY_MODE),
            output_format=output_format or OutputFormat.SAME,
            metadata=metadata or settings.IMAGE_METADATA,
            scored=settings.IMAGE_SCORE_ALL_MODES if score is None else score,
            csv_delimiter=summary.dialect.delimiter,
            csv_bom=summary.dialect.bom,
            csv_separator_line=summary.dialect.separator_line,
            total_products=summary.products,
            total_images=summary.images,
        )
        parsed = iter_products(csv_data, limits)
        insert = _products_copy if connection.vendor == "postgresql" else _products_bulk_create
        for first_position in range(0, summary.products, INSERT_BATCH):
            batch = list(itertools.islice(parsed, INSERT_BATCH))
            insert(request, batch, first_position)
        queue.enqueue_after_commit(queue.REQUEST_START, str(request.pk))
    logger.info(
        "request %s created: %d products, %d images",
        request.pk,
        summary.products,
        summary.images,
        extra={"request_id": str(request.pk)},
    )
    return request


# The longest ending kept when a long name is shortened: ".csv", ".txt", ".tsv".
EXTENSION_KEPT_CHARACTERS = 8


def upload_file_name(sent: str) -> str:
    """A file name as a person reads it in a list: its last path part (a client may send
    C:\\exports\\shop.csv), without control characters, at most
    FILE_NAME_MAX_CHARACTERS, a longer one cut short before its extension."""
    name = re.split(r"[\\/]", sent)[-1]
    name = "".join(character for character in name if character.isprintable()).strip()
    if len(name) <= FILE_NAME_MAX_CHARACTERS:
        return name
    stem, dot, extension = name.rpartition(".")
    ending = dot + extension if stem and len(extension) < EXTENSION_KEPT_CHARACTERS else ""
    return name[: FILE_NAME_MAX_CHARACTERS - len(ending) - 1] + "…" + ending


def request_rerun(
    *,
    source: ProcessingRequest,
    public_base_url: str,
    webhook_url: str | None = None,
    quality: int | None = None,
    quality_mode: str | None = None,
    target: str | None = None,
    output_format: str | None = None,
    metadata: str | None = None,
    score: bool | None = None,
    idempotency: Idempotency | None = None,
) -> ProcessingRequest:
    """A new request of the same account over the source's products and URLs, with the
    settings given and the source's for the rest; queued as an upload is. Raises
    QuotaExceeded, Replayed and KeyReused as request_create does."""
    account = source.account
    with transaction.atomic():
        account_lock(account_id=account.pk)
        if idempotency is not None:
            earlier_request_check(account=account, idempotency=idempotency)
        # Locked, so that it cannot expire (its products deleted) while they are copied.
        locked = ProcessingRequest.objects.select_for_update().get(pk=source.pk)
        if locked.expired_at is not None:
            raise SourceExpired
        pending_quota_check(account=account, adding=source.total_images)
        request = ProcessingRequest.objects.create(
            account=account,
            idempotency_key=idempotency.key if idempotency else "",
            idempotency_digest=idempotency.digest if idempotency else "",
            source_request=source,
            public_base_url=public_base_url.rstrip("/"),
            webhook_url=source.webhook_url if webhook_url is None else webhook_url,
            quality=quality or source.quality,
            **quality_target(
                quality_mode,
                target,
                default_mode=source.quality_mode,
                default_target=source.quality_target,
            ),
            output_format=output_format or source.output_format,
            metadata=metadata or source.metadata,
            scored=source.scored if score is None else score,
            csv_delimiter=source.csv_delimiter,
            csv_bom=source.csv_bom,
            csv_separator_line=source.csv_separator_line,
            total_products=source.total_products,
            total_images=source.total_images,
        )
        _products_copy_from(source, request)
        queue.enqueue_after_commit(queue.REQUEST_START, str(request.pk))
    logger.info(
        "request %s re-runs %s: %d images",
        request.pk,
        source.pk,
        request.total_images,
        extra={"request_id": str(request.pk)},
    )
    return request


def quality_target(
    quality_mode: str | None,
    target: str | None,
    *,
    default_mode: str,
    default_target: str = "",
) -> dict[str, Any]:
    """A request's mode and, in perceptual mode, its target with the score the settings
    give it now. A target asked for alone asks for the perceptual mode; the defaults (the
    settings', or a re-run's source's) fill in the rest, IMAGE_QUALITY_TARGET last."""
    if quality_mode is None:
        quality_mode = QualityMode.PERCEPTUAL if target else default_mode
    if quality_mode != QualityMode.PERCEPTUAL:
        return {"quality_mode": quality_mode, "quality_target": "", "target_score": None}
    target = target or default_target or settings.IMAGE_QUALITY_TARGET
    return {
        "quality_mode": quality_mode,
        "quality_target": target,
        "target_score": settings.QUALITY_TARGET_SCORES[QualityTarget(target)],
    }


def _products_copy_from(source: ProcessingRequest, request: ProcessingRequest) -> None:
    """The source's products and images, as rows of the new request: two statements."""
    key = ProcessingRequest._meta.pk
    assert key is not None
    new, old = (key.get_db_prep_value(rid, connection) for rid in (request.pk, source.pk))
    bulk.insert_from_select(
        Product,
        taken={
            "request_id": ("%s", [new]),
            **{
                name: (name, [])
                for name in ("position", "serial_number", "serial_text", "product_name")
            },
            "input_image_urls": ("input_image_urls", []),
        },
        from_sql="FROM products WHERE request_id = %s",
        params=[old],
    )
    bulk.insert_from_select(
        ProductImage,
        taken={
            "request_id": ("%s", [new]),
            "product_id": ("new_product.product_id", []),
            "position": ("image.position", []),
            "input_url": ("image.input_url", []),
        },
        from_sql=(
            "FROM product_images image "
            "JOIN products old_product ON old_product.product_id = image.product_id "
            "JOIN products new_product ON new_product.request_id = %s "
            "AND new_product.position = old_product.position "
            "WHERE image.request_id = %s"
        ),
        params=[new, old],
    )


def _products_bulk_create(
    request: ProcessingRequest, batch: list[ParsedProduct], first_position: int
) -> None:
    products = Product.objects.bulk_create(
        [
            Product(
                request=request,
                position=position,
                serial_number=product.serial_number,
                serial_text=product.serial_text,
                product_name=product.product_name,
                input_image_urls=",".join(product.image_urls),
            )
            for position, product in enumerate(batch, start=first_position)
        ]
    )
    ProductImage.objects.bulk_create(
        [
            ProductImage(request=request, product=product, position=position, input_url=url)
            for product, source in zip(products, batch, strict=True)
            for position, url in enumerate(source.image_urls)
        ],
        batch_size=INSERT_BATCH,
    )


def _products_copy(
    request: ProcessingRequest, batch: list[ParsedProduct], first_position: int
) -> None:
    """The same rows as _products_bulk_create, sent with PostgreSQL's COPY: building an
    INSERT through the ORM cost more than a second for 10,000 rows."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
            [Product._meta.db_table, Product._meta.pk.column, len(batch)],
        )
        product_ids = [row[0] for row in cursor.fetchall()]
        bulk.copy_rows(
            cursor,
            Product,
            (
                {
                    "product_id": product_id,
                    "request_id": request.pk,
                    "position": position,
                    "serial_number": product.serial_number,
                    "serial_text": product.serial_text,
                    "product_name": product.product_name,
                    "input_image_urls": ",".join(product.image_urls),
                }
                for position, (product_id, product) in enumerate(
                    zip(product_ids, batch, strict=True), start=first_position
                )
            ),
            primary_key=True,
        )
        bulk.copy_rows(
            cursor,
            ProductImage,
            (
                {
                    "request_id": request.pk,
                    "product_id": product_id,
                    "position": position,
                    "input_url": url,
                }
                for product_id, product in zip(product_ids, batch, strict=True)
                for position, url in enumerate(product.image_urls)
            ),
        )


def request_start(*, request_id: uuid.UUID) -> None:
    """Move a pending request to processing and queue its first batches of distinct URLs."""
    claimed = ProcessingRequest.objects.filter(
        pk=request_id, status=ProcessingRequest.Status.PENDING
    ).update(status=ProcessingRequest.Status.PROCESSING, updated_at=timezone.now())
    if not claimed:
        return
    # Its first batches; each batch that ends tops the window up again (window.py).
    request_window_fill(request_id=request_id)
