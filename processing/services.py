"""Every write and state change of a request: create, start, process its images, finalise.
Views and tasks call these; these call `imaging`. (Webhooks: webhooks.py; the sweep that
re-queues lost work: sweep.py.)

Each step claims its work with a conditional UPDATE and checks how many rows changed, so
a task delivered twice, or two workers racing, change nothing the second time.
"""

import io
import itertools
import logging
import os
import random
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

from django.conf import settings
from django.core.files.base import ContentFile, File
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.db.models import F, Min, QuerySet
from django.utils import timezone

from config.logs import request_id_bound
from imaging.encode import CompressedImage, compress
from imaging.errors import ImagingError
from imaging.fetch import FetchPolicy, fetch, parse_networks
from processing import bulk, metrics, selectors, tasks, webhooks
from processing.csv_format import (
    CsvLimits,
    OutputRow,
    ParsedProduct,
    iter_products,
    validate_products,
    write_output_csv,
)
from processing.models import ProcessingRequest, Product, ProductImage

logger = logging.getLogger(__name__)

OUTPUT_FOLDER = "output_images"
INSERT_BATCH = 2000


@cache
def fetch_policy() -> FetchPolicy:
    return FetchPolicy(
        max_bytes=settings.IMAGE_FETCH_MAX_BYTES,
        connect_timeout=settings.IMAGE_FETCH_CONNECT_TIMEOUT,
        read_timeout=settings.IMAGE_FETCH_READ_TIMEOUT,
        total_timeout=settings.IMAGE_FETCH_TOTAL_TIMEOUT,
        allowed_networks=parse_networks(settings.IMAGE_FETCH_ALLOW_NETWORKS),
        allowed_ports=frozenset({80, 443, *settings.IMAGE_FETCH_ALLOW_PORTS}),
    )


def csv_limits() -> CsvLimits:
    return CsvLimits(max_rows=settings.CSV_MAX_ROWS, max_urls_per_row=settings.CSV_MAX_URLS_PER_ROW)


def request_create(
    *,
    csv_data: bytes,
    public_base_url: str,
    webhook_url: str = "",
    quality: int | None = None,
    quality_mode: str | None = None,
) -> ProcessingRequest:
    """Validate the whole CSV, store the request with its products and images, queue it.

    Raises CsvInvalid, with every problem, before anything is stored. The file is read
    twice: once to validate it, once to insert it in batches, so that memory does not
    grow with the number of rows.
    """
    limits = csv_limits()
    summary = validate_products(csv_data, limits)
    with transaction.atomic():
        request = ProcessingRequest.objects.create(
            public_base_url=public_base_url.rstrip("/"),
            webhook_url=webhook_url,
            quality=quality or settings.IMAGE_QUALITY,
            quality_mode=quality_mode or settings.IMAGE_QUALITY_MODE,
            total_products=summary.products,
            total_images=summary.images,
        )
        parsed = iter_products(csv_data, limits)
        insert = _products_copy if connection.vendor == "postgresql" else _products_bulk_create
        for first_position in range(0, summary.products, INSERT_BATCH):
            batch = list(itertools.islice(parsed, INSERT_BATCH))
            insert(request, batch, first_position)
        tasks.enqueue_after_commit(tasks.request_start, str(request.pk))
    logger.info(
        "request %s created: %d products, %d images",
        request.pk,
        summary.products,
        summary.images,
    )
    return request


def _products_bulk_create(
    request: ProcessingRequest, batch: list[ParsedProduct], first_position: int
) -> None:
    products = Product.objects.bulk_create(
        [
            Product(
                request=request,
                position=position,
                serial_number=product.serial_number,
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
    """Move a pending request to processing and queue its distinct image URLs in batches."""
    claimed = ProcessingRequest.objects.filter(
        pk=request_id, status=ProcessingRequest.Status.PENDING
    ).update(status=ProcessingRequest.Status.PROCESSING, updated_at=timezone.now())
    if not claimed:
        return
    # A URL repeated within a request is fetched and encoded once: its first image stands
    # for every image with that URL.
    images = ProductImage.objects.filter(request_id=request_id)
    images.update(queued_at=timezone.now())
    first_image_ids = (
        images.values("input_url")
        .annotate(first_id=Min("id"))
        .order_by("first_id")  # in the order of the CSV
        .values_list("first_id", flat=True)
    )
    batch: list[int] = []
    for image_id in first_image_ids.iterator(chunk_size=INSERT_BATCH):
        batch.append(image_id)
        if len(batch) == settings.IMAGE_BATCH_SIZE:
            tasks.images_process.delay(batch)
            batch = []
    if batch:
        tasks.images_process.delay(batch)


@dataclass
class _Work:
    image: ProductImage  # the first image with its URL in its request
    download: "Future[bytes]"
    data: bytes = b""
    compressed: CompressedImage | None = None
    output_name: str = ""
    error: ImagingError | None = None


def images_process(*, image_ids: list[int]) -> None:
    """Fetch, compress and store a batch of image URLs, each for every image with it.

    Downloads run in threads ahead of the encoding on this one, and the batch's results
    are recorded in one transaction per request.
    """
    # order_by(): the model's default order would join products for nothing.
    firsts = list(
        ProductImage.objects.select_related("request").filter(pk__in=image_ids).order_by()
    )
    if not firsts:
        logger.warning("images %s do not exist; task dropped", image_ids)
        return
    # Downloads start before the claim, so that its round trips to the database do not
    # leave the CPU waiting for the first image. One this batch does not win is dropped.
    threads = _io_threads()
    downloads = {
        image.pk: threads.submit(_fetch, image.input_url)
        for image in firsts
        if image.status == ProductImage.Status.PENDING
    }
    token = uuid.uuid4()
    claimed = _images_claim(firsts, token)
    for image_id in downloads.keys() - {image.pk for image in claimed}:
        downloads[image_id].cancel()
    work = [
        _Work(image, downloads.get(image.pk) or threads.submit(_fetch, image.input_url))
        for image in claimed
    ]
    if not work:
        return
    # A batch holds one request's images (request_start and the sweep batch by request).
    with request_id_bound(",".join(sorted({str(item.image.request_id) for item in work}))):
        _images_work(work, token, threads)


def _images_work(work: list[_Work], token: uuid.UUID, threads: ThreadPoolExecutor) -> None:
    stored: list[tuple[_Work, Future[None]]] = []
    for item in work:
        try:
            item.data = item.download.result()
            with metrics.STAGE_SECONDS.labels("encode").time():
                item.compressed = _compress(item.image.request, item.data)
        except Exception as error:
            item.error = _as_imaging_error(error, item.image)
        else:
            # Named after the image's row: a second run writes the same file again.
            item.output_name = (
                f"{OUTPUT_FOLDER}/{item.image.request_id}/{item.image.pk}"
                f".{item.compressed.extension}"
            )
            stored.append((item, threads.submit(_store, item.output_name, item.compressed.data)))
    for item, store in stored:
        try:
            store.result()
        except Exception:
            logger.exception("image %s: the output could not be stored", item.image.pk)
            item.compressed = None
            item.error = ImagingError(
                "storage_error", "The output could not be stored.", transient=True
            )
    for request_id in dict.fromkeys(item.image.request_id for item in work):
        _images_record(
            request_id, [item for item in work if item.image.request_id == request_id], token
        )
        _request_finalize_when_done(request_id)


# This process's download and storage threads, kept from batch to batch: starting new
# threads for every batch cost a worker 5% of its time. A forked child makes its own.
_io_pool: tuple[int, ThreadPoolExecutor] | None = None


def _io_threads() -> ThreadPoolExecutor:
    global _io_pool
    if _io_pool is None or _io_pool[0] != os.getpid():
        pool = ThreadPoolExecutor(settings.IMAGE_FETCH_THREADS, thread_name_prefix="image-io")
        _io_pool = (os.getpid(), pool)
    return _io_pool[1]


def _request_finalize_when_done(request_id: uuid.UUID) -> None:
    """Queue the request's finalisation, on the requests queue, once its images have all
    ended: writing a large output CSV must not hold up an image worker. Two batches that
    end together may both queue it; request_finalize runs once all the same."""
    done = ProcessingRequest.objects.filter(
        pk=request_id,
        status=ProcessingRequest.Status.PROCESSING,
        finalize_claimed_at__isnull=True,
        total_images=F("succeeded_images") + F("failed_images"),
    ).exists()
    if done:
        tasks.request_finalize.delay(str(request_id))


def _images_claim(firsts: list[ProductImage], token: uuid.UUID) -> list[ProductImage]:
    """Claim the pending URLs of firsts (and their repeats); the firsts this call owns."""
    mine: set[tuple[uuid.UUID, str]] = set()
    for request_id in dict.fromkeys(image.request_id for image in firsts):
        same_urls = ProductImage.objects.filter(
            request_id=request_id,
            input_url__in={image.input_url for image in firsts if image.request_id == request_id},
        )
        same_urls.filter(status=ProductImage.Status.PENDING).update(
            status=ProductImage.Status.PROCESSING,
            claim_token=token,
            claimed_at=timezone.now(),
            attempts=F("attempts") + 1,
        )
        claimed = same_urls.filter(status=ProductImage.Status.PROCESSING, claim_token=token)
        urls = claimed.order_by().values_list("input_url", flat=True)
        mine |= {(request_id, url) for url in urls}
    return [image for image in firsts if (image.request_id, image.input_url) in mine]


def _fetch(url: str) -> bytes:
    with metrics.STAGE_SECONDS.labels("fetch").time():
        return fetch(url, fetch_policy())


def _store(name: str, data: bytes) -> None:
    with metrics.STAGE_SECONDS.labels("store").time():
        default_storage.save(name, ContentFile(data))


def _compress(request: ProcessingRequest, data: bytes) -> CompressedImage:
    return compress(
        data,
        quality=request.quality,
        mode="relative" if request.quality_mode == "relative" else "fixed",
        max_pixels=settings.IMAGE_MAX_PIXELS,
        fast_jpeg=settings.IMAGE_FAST_JPEG,
    )


def _as_imaging_error(error: Exception, image: ProductImage) -> ImagingError:
    if isinstance(error, ImagingError):
        return error
    # A bug, or an image that trips the codec in a way no guard foresaw: this image fails,
    # the request goes on.
    logger.error("image %s failed unexpectedly", image.pk, exc_info=error)
    return ImagingError("internal_error", "The image could not be processed.")


def _images_record(request_id: uuid.UUID, work: list[_Work], token: uuid.UUID) -> None:
    """Write each URL's result to every image with it that this batch still holds, count
    them, and queue the retries: one UPDATE for the results, one for the retries if there
    are any, one for the request's counters."""
    now = timezone.now()
    results: list[dict[str, object]] = []
    retries: dict[str, tuple[_Work, float, dict[str, object]]] = {}
    for item in work:
        error = item.error
        if error is not None and error.transient:
            attempt = item.image.attempts + 1
            if attempt < settings.IMAGE_MAX_ATTEMPTS:
                delay = _retry_delay(attempt, error)
                retries[item.image.input_url] = (item, delay, _retry_row(item, attempt, delay, now))
                continue
        results.append(_result_row(item, now))
    ours = ProductImage.objects.filter(
        request_id=request_id, status=ProductImage.Status.PROCESSING, claim_token=token
    )
    with transaction.atomic():
        ended = Counter(
            bulk.update_from_rows(ours, key="input_url", fields=RESULT_FIELDS, rows=results)
        )
        retried = set(
            bulk.update_from_rows(
                ours,
                key="input_url",
                fields=RETRY_FIELDS,
                rows=[row for _, _, row in retries.values()],
            )
        )
        succeeded = sum(ended[item.image.input_url] for item in work if item.compressed)
        failed = ended.total() - succeeded
        if ended:
            ProcessingRequest.objects.filter(pk=request_id).update(
                succeeded_images=F("succeeded_images") + succeeded,
                failed_images=F("failed_images") + failed,
                updated_at=now,
            )
    for item in work:
        if ended[item.image.input_url]:
            _images_count(item, ended[item.image.input_url])
    for url in retried:
        item, delay, _ = retries[url]
        assert item.error is not None
        logger.info("image %s: retrying in %.1f s", item.image.pk, delay)
        metrics.IMAGE_RETRIES.labels(item.error.reason).inc()
        tasks.images_process.apply_async(([item.image.pk],), countdown=delay)


# What a result sets on every image with its URL; what a retry sets.
FACT_FIELDS = (
    "input_format",
    "output_format",
    "input_bytes",
    "output_bytes",
    "width",
    "height",
    "source_quality",
    "quality",
    "kept_original",
)
RESULT_FIELDS = (
    "status",
    "finished_at",
    "output_name",
    "error_code",
    "error_message",
    *FACT_FIELDS,
)
RETRY_FIELDS = ("status", "queued_at", "error_code", "error_message")
NO_FACTS = {
    field.name: field.get_default()
    for field in ProductImage._meta.concrete_fields
    if field.name in FACT_FIELDS
}


def _result_row(item: _Work, now: datetime) -> dict[str, object]:
    if item.compressed is not None:
        return {
            "input_url": item.image.input_url,
            "status": ProductImage.Status.SUCCEEDED,
            "finished_at": now,
            "output_name": item.output_name,
            "error_code": "",
            "error_message": "",
            **_image_facts(item.data, item.compressed),
        }
    error = item.error
    assert error is not None
    logger.info("image %s failed: %s %s", item.image.pk, error.reason, error.message)
    return {
        "input_url": item.image.input_url,
        "status": ProductImage.Status.FAILED,
        "finished_at": now,
        "output_name": "",
        "error_code": error.reason,
        "error_message": error.message,
        **NO_FACTS,
    }


def _retry_row(item: _Work, attempt: int, delay: float, now: datetime) -> dict[str, object]:
    error = item.error
    assert error is not None
    return {
        "input_url": item.image.input_url,
        "status": ProductImage.Status.PENDING,
        "queued_at": now + timedelta(seconds=delay),
        "error_code": error.reason,
        "error_message": f"{error.message} Retrying (attempt {attempt + 1}).",
    }


def _images_count(item: _Work, ended: int) -> None:
    if item.compressed is not None:
        metrics.IMAGES.labels("succeeded", "").inc(ended)
        # Bytes moved once per URL, however many images share it.
        metrics.BYTES_IN.inc(len(item.data))
        metrics.BYTES_OUT.inc(len(item.compressed.data))
    elif item.error is not None:
        metrics.IMAGES.labels("failed", item.error.reason).inc(ended)


def _retry_delay(attempt: int, error: ImagingError) -> float:
    """A wait that doubles with each attempt, or what the server's Retry-After asked for,
    up to a bound, with a little jitter."""
    backoff = settings.IMAGE_FETCH_RETRY_BACKOFF * 2 ** (attempt - 1)
    delay = min(settings.IMAGE_FETCH_RETRY_MAX_DELAY, max(backoff, error.retry_after or 0.0))
    return float(delay * (1 + random.uniform(0, 0.1)))  # noqa: S311  (jitter, not security)


def _image_facts(data: bytes, compressed: CompressedImage) -> dict[str, object]:
    return {
        "input_format": compressed.source_format[:8],
        "output_format": compressed.format,
        "input_bytes": len(data),
        "output_bytes": len(compressed.data),
        "width": compressed.width,
        "height": compressed.height,
        "source_quality": compressed.source_quality,
        "quality": compressed.quality,
        "kept_original": compressed.kept_original,
    }


def image_record(
    *, request_id: uuid.UUID, same_url: QuerySet[ProductImage], succeeded: bool, **fields: object
) -> None:
    """End the images in same_url that are still processing, and count them."""
    now = timezone.now()
    with transaction.atomic():
        changed = same_url.filter(status=ProductImage.Status.PROCESSING).update(
            finished_at=now, **fields
        )
        if not changed:
            return
        metrics.IMAGES.labels(
            "succeeded" if succeeded else "failed", str(fields.get("error_code", ""))
        ).inc(changed)
        counter = "succeeded_images" if succeeded else "failed_images"
        ProcessingRequest.objects.filter(pk=request_id).update(
            **{counter: F(counter) + changed}, updated_at=now
        )


def request_finalize(*, request_id: uuid.UUID) -> bool:
    """Finish a request whose images have all ended, exactly once; True if this call did."""
    claimed = ProcessingRequest.objects.filter(
        pk=request_id,
        status=ProcessingRequest.Status.PROCESSING,
        finalize_claimed_at__isnull=True,
        total_images=F("succeeded_images") + F("failed_images"),
    ).update(finalize_claimed_at=timezone.now())
    if not claimed:
        return False
    request = ProcessingRequest.objects.get(pk=request_id)
    try:
        _request_write_outputs(request)
    except Exception as error:
        logger.exception("request %s could not be finalised", request_id)
        metrics.REQUESTS_FINISHED.labels(ProcessingRequest.Status.FAILED).inc()
        with transaction.atomic():
            ProcessingRequest.objects.filter(pk=request_id).update(
                status=ProcessingRequest.Status.FAILED,
                error=f"The results could not be written: {error}",
                finished_at=timezone.now(),
                updated_at=timezone.now(),
            )
            webhooks.webhook_schedule(request=request)
    return True


def _request_write_outputs(request: ProcessingRequest) -> None:
    status = (
        ProcessingRequest.Status.COMPLETED
        if request.failed_images == 0
        else ProcessingRequest.Status.COMPLETED_WITH_ERRORS
    )
    csv_name = f"{OUTPUT_FOLDER}/{request.pk}/output.csv"
    with tempfile.TemporaryFile() as raw, transaction.atomic():
        text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        write_output_csv(_output_rows(request), text)
        text.flush()
        text.detach()  # the temporary file stays open for the storage to read
        raw.seek(0)
        default_storage.save(csv_name, File(raw))
        now = timezone.now()
        ProcessingRequest.objects.filter(pk=request.pk).update(
            status=status, output_csv_name=csv_name, finished_at=now, updated_at=now
        )
        # In the same transaction: whoever sees the final status sees the delivery too.
        webhooks.webhook_schedule(request=request)
    metrics.REQUESTS_FINISHED.labels(status).inc()
    metrics.REQUEST_SECONDS.observe((now - request.created_at).total_seconds())
    logger.info(
        "request %s %s: %d succeeded, %d failed",
        request.pk,
        status,
        request.succeeded_images,
        request.failed_images,
    )


def _output_rows(request: ProcessingRequest) -> Iterator[OutputRow]:
    """The output CSV's rows in input order; on the way, each product's output_image_urls
    is filled in, a batch at a time, so that memory does not grow with the request."""
    products = selectors.request_products(request_id=request.pk).iterator(chunk_size=INSERT_BATCH)
    while batch := list(itertools.islice(products, INSERT_BATCH)):
        for product in batch:
            images = list(product.images.all())
            output_urls = [
                selectors.media_url(base_url=request.public_base_url, name=image.output_name)
                if image.status == ProductImage.Status.SUCCEEDED
                else ""
                for image in images
            ]
            product.output_image_urls = ",".join(output_urls)
            yield OutputRow(
                serial_number=product.serial_number,
                product_name=product.product_name,
                input_urls=[image.input_url for image in images],
                output_urls=output_urls,
            )
        bulk.update_from_rows(
            Product.objects.filter(request_id=request.pk),
            key="product_id",
            fields=["output_image_urls"],
            rows=[{"product_id": p.pk, "output_image_urls": p.output_image_urls} for p in batch],
        )
