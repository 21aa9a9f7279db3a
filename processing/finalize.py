"""A request whose images have all ended: its output CSV, the products' output URLs, its
final status and its webhook event, exactly once."""

import io
import itertools
import logging
import math
import tempfile
import uuid
from typing import IO

from django.core.files.base import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models.functions import Now
from django.utils import timezone

from processing import bulk, metrics, selectors, webhooks
from processing.csv_format import CsvDialect, OutputCsvWriter, OutputRow
from processing.models import ProcessingRequest, Product, ProductImage
from processing.outcomes import storage_no_room
from processing.policies import csv_output_name

logger = logging.getLogger(__name__)

# Products read, written to the CSV and updated per round: memory stays flat however
# large the request.
PRODUCTS_PER_ROUND = 2000


def request_finalize(*, request_id: uuid.UUID) -> bool:
    """Finish a request whose images have all ended, exactly once; True if this call did."""
    claimed = (
        ProcessingRequest.objects.ready_to_finalize()
        .filter(pk=request_id)
        .update(finalize_claimed_at=Now())  # the database's clock, as the sweep reads it
    )
    if not claimed:
        return False
    request = ProcessingRequest.objects.get(pk=request_id)
    try:
        _request_write_outputs(request)
    except Exception as error:
        # The whole of it (the file's path too) for the operator; _cause's words for the
        # request's owner and receiver.
        logger.exception("request %s could not be finalised: %s", request_id, error)
        metrics.REQUESTS_FINISHED.labels(ProcessingRequest.Status.FAILED).inc()
        with transaction.atomic():
            ProcessingRequest.objects.filter(pk=request_id).update(
                status=ProcessingRequest.Status.FAILED,
                error=f"The results could not be written: {_cause(error)}",
                finished_at=timezone.now(),
                updated_at=timezone.now(),
            )
            webhooks.webhook_schedule(request=request)
    return True


def _cause(error: Exception) -> str:
    """An error writing the results, in words for the request's owner and its webhook's
    receiver: what the storage said (strerror), never the message, which names the
    server's folders and the output CSV's secret name ("[Errno 20] Not a directory:
    '/srv/…/output-<token>.csv'"); "[Errno 28] No space left on device" said nothing of
    what to do either."""
    if storage_no_room(error):
        return f"storage full ({error.strerror}). Retry the request once there is room."
    if isinstance(error, OSError) and error.strerror:
        said = f"the storage refused the file ({error.strerror})"
    else:
        said = f"an unexpected error ({type(error).__name__})"
    return f"{said}. An operator can see why in the service's log; retry the request."


def _request_write_outputs(request: ProcessingRequest) -> None:
    # Cancelled only if the cancel stopped something: a cancel that came as the last
    # images ended leaves the request's own outcome.
    if request.cancelled_images:
        status = ProcessingRequest.Status.CANCELLED
    elif request.failed_images == 0 and request.cancelled_images == 0:
        status = ProcessingRequest.Status.COMPLETED
    else:
        status = ProcessingRequest.Status.COMPLETED_WITH_ERRORS
    csv_name = csv_output_name(request_id=request.pk)
    with tempfile.TemporaryFile() as raw, transaction.atomic():
        _output_csv_write(request, raw)
        raw.seek(0)
        default_storage.save(csv_name, File(raw))
        now = timezone.now()
        score_p5, score_median = _score_percentiles(request)
        # Counted again from the rows: batches a worker older than the counter recorded
        # (a deploy's migrate ran first) added none, and their request said "compressed".
        request.reused_images = ProductImage.objects.filter(
            request=request, status=ProductImage.Status.SUCCEEDED, reused=True
        ).count()
        ProcessingRequest.objects.filter(pk=request.pk).update(
            status=status,
            output_csv_name=csv_name,
            finished_at=now,
            updated_at=now,
            score_p5=score_p5,
            score_median=score_median,
            reused_images=request.reused_images,
        )
        # In the same transaction: whoever sees the final status sees the delivery too.
        webhooks.webhook_schedule(request=request)
    metrics.REQUESTS_FINISHED.labels(status).inc()
    metrics.REQUEST_SECONDS.observe((now - request.created_at).total_seconds())
    logger.info(
        "request %s %s: %d succeeded (%d re-used), %d failed",
        request.pk,
        status,
        request.succeeded_images,
        request.reused_images,
        request.failed_images,
    )


class OutputCsvGone(Exception):
    """The request expired, or its account deleted it, while its output CSV was asked for."""


def output_csv_open(*, request: ProcessingRequest) -> IO[bytes]:
    """A finished request's output CSV from storage, written again from its rows where the
    storage has lost it (a bucket's lifecycle rule, a folder restored from an older
    backup): the download answered 500 for as long as the request lived. Not for a
    request being deleted meanwhile (OutputCsvGone): a CSV written again then outlived it,
    in a folder nothing would look at again."""
    name = request.output_csv_name
    if not default_storage.exists(name):
        if selectors.request_expired(request_id=request.pk):
            raise OutputCsvGone
        logger.warning(
            "request %s: output CSV %s gone from storage, written again", request.pk, name
        )
        with tempfile.TemporaryFile() as raw:
            _output_csv_write(request, raw)
            raw.seek(0)
            name = default_storage.save(name, File(raw))
        # The name another download wrote meanwhile, unless the request expired meanwhile.
        kept = ProcessingRequest.objects.filter(pk=request.pk, expired_at__isnull=True).update(
            output_csv_name=name
        )
        if not kept:
            default_storage.delete(name)
            raise OutputCsvGone
    try:
        opened: IO[bytes] = default_storage.open(name, "rb")
    except FileNotFoundError:
        if selectors.request_expired(request_id=request.pk):  # deleted between check and open
            raise OutputCsvGone from None
        raise
    return opened


def _score_percentiles(request: ProcessingRequest) -> tuple[float | None, float | None]:
    """The 5th percentile and the median of the scores of the request's succeeded images
    (nearest rank), read as two rows of the sorted scores."""
    scored = ProductImage.objects.filter(
        request=request, status=ProductImage.Status.SUCCEEDED, score__isnull=False
    ).order_by("score")
    count = scored.count()
    if not count:
        return None, None
    ranks = (math.ceil(0.05 * count) - 1, math.ceil(0.5 * count) - 1)
    p5, median = (scored.values_list("score", flat=True)[rank] for rank in ranks)
    return p5, median


def _output_csv_write(request: ProcessingRequest, raw: IO[bytes]) -> None:
    """Write the output CSV to raw and fill in each product's output_image_urls: a round of
    products at a time, its rows written, then its products updated."""
    text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
    dialect = CsvDialect(request.csv_delimiter, request.csv_bom, request.csv_separator_line)
    writer = OutputCsvWriter(text, dialect)
    products = selectors.request_products(request_id=request.pk).iterator(
        chunk_size=PRODUCTS_PER_ROUND
    )
    while round_ := list(itertools.islice(products, PRODUCTS_PER_ROUND)):
        rows = [_output_row(request, product) for product in round_]
        writer.write_rows(rows)
        bulk.update_from_rows(
            Product.objects.filter(request_id=request.pk),
            key="product_id",
            fields=["output_image_urls"],
            rows=[
                {"product_id": product.pk, "output_image_urls": ",".join(row.output_urls)}
                for product, row in zip(round_, rows, strict=True)
            ],
        )
    text.flush()
    text.detach()  # the file stays open for the storage to read


def _output_row(request: ProcessingRequest, product: Product) -> OutputRow:
    images = list(product.images.all())
    return OutputRow(
        serial_text=product.serial_as_written,
        product_name=product.product_name,
        input_urls=[image.input_url for image in images],
        output_urls=[
            selectors.media_url(base_url=request.public_base_url, name=image.output_name)
            if image.status == ProductImage.Status.SUCCEEDED
            else ""
            for image in images
        ],
    )
