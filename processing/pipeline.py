"""An image batch: claim its URLs, download them (net), compress them (imaging), store the
outputs, and record each URL's outcome (results.py) for every image that shares it.

A batch holds distinct URLs of one request (intake.request_start and the sweep batch by
request). The claim is a conditional UPDATE with a token: a task delivered twice, or a
batch whose lease ran out, finds nothing left to claim or to record.
"""

import logging
import os
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db.models import F
from django.utils import timezone

import net
from config.logs import request_id_bound
from imaging.encode import CompressedImage, QualityMode, compress
from imaging.guard import time_limit
from processing import metrics
from processing.leases import leases
from processing.models import ProcessingRequest, ProductImage, ReasonCode
from processing.policies import IMAGE_REQUEST_HEADERS, fetch_policy, image_output_name
from processing.results import ImageFailure, ImageOutcome, images_record

logger = logging.getLogger(__name__)


@dataclass
class _Work:
    image: ProductImage  # the first image with its URL in its request
    download: "Future[bytes]"
    data: bytes = b""
    compressed: CompressedImage | None = None
    output_name: str = ""
    failure: ImageFailure | None = None

    def outcome(self) -> ImageOutcome:
        return ImageOutcome(
            input_url=self.image.input_url,
            image_id=self.image.pk,
            attempt=self.image.attempts + 1,  # attempts as loaded, before this batch's claim
            compressed=self.compressed,
            input_bytes=len(self.data),
            output_name=self.output_name,
            failure=self.failure,
        )


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
    leases.hold(token)
    try:
        _images_claimed_work(firsts, downloads, token, threads)
    finally:
        leases.release(token)


def _images_claimed_work(
    firsts: list[ProductImage],
    downloads: dict[int, "Future[bytes]"],
    token: uuid.UUID,
    threads: ThreadPoolExecutor,
) -> None:
    claimed = _images_claim(firsts, token)
    for image_id in downloads.keys() - {image.pk for image in claimed}:
        downloads[image_id].cancel()
    work = [
        _Work(image, downloads.get(image.pk) or threads.submit(_fetch, image.input_url))
        for image in claimed
    ]
    if not work:
        return
    with request_id_bound(",".join(sorted({str(item.image.request_id) for item in work}))):
        _images_work(work, threads)
        for request_id in dict.fromkeys(item.image.request_id for item in work):
            images_record(
                request_id=request_id,
                held=ProductImage.objects.filter(
                    request_id=request_id,
                    status=ProductImage.Status.PROCESSING,
                    claim_token=token,
                ),
                outcomes=[item.outcome() for item in work if item.image.request_id == request_id],
            )


def _images_work(work: list[_Work], threads: ThreadPoolExecutor) -> None:
    """Compress each download as it arrives; write the outputs on the I/O threads."""
    stored: list[tuple[_Work, Future[None]]] = []
    for item in work:
        try:
            item.data = item.download.result()
            with (
                metrics.STAGE_SECONDS.labels("encode").time(),
                time_limit(settings.IMAGE_MAX_SECONDS),
            ):
                item.compressed = _compress(item.image.request, item.data)
        except Exception as error:
            item.failure = ImageFailure.from_error(error, image_id=item.image.pk)
        else:
            item.output_name = image_output_name(
                request_id=item.image.request_id,
                image_id=item.image.pk,
                extension=item.compressed.extension,
            )
            stored.append((item, threads.submit(_store, item.output_name, item.compressed.data)))
    for item, store in stored:
        try:
            store.result()
        except Exception:
            logger.exception("image %s: the output could not be stored", item.image.pk)
            item.compressed = None
            item.failure = ImageFailure(
                ReasonCode.STORAGE_ERROR, "The output could not be stored.", transient=True
            )


# This process's download and storage threads, kept from batch to batch: starting new
# threads for every batch cost a worker 5% of its time. A forked child makes its own.
_io_pool: tuple[int, ThreadPoolExecutor] | None = None


def _io_threads() -> ThreadPoolExecutor:
    global _io_pool
    if _io_pool is None or _io_pool[0] != os.getpid():
        pool = ThreadPoolExecutor(settings.IMAGE_FETCH_THREADS, thread_name_prefix="image-io")
        _io_pool = (os.getpid(), pool)
    return _io_pool[1]


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
    # Through the net package's module attribute: the seam tests stub a download at.
    with metrics.STAGE_SECONDS.labels("fetch").time():
        return net.fetch(url, fetch_policy(), headers=IMAGE_REQUEST_HEADERS)


def _store(name: str, data: bytes) -> None:
    with metrics.STAGE_SECONDS.labels("store").time():
        default_storage.save(name, ContentFile(data))


def _compress(request: ProcessingRequest, data: bytes) -> CompressedImage:
    return compress(
        data,
        quality=request.quality,
        mode=QualityMode(request.quality_mode),
        max_pixels=settings.IMAGE_MAX_PIXELS,
        max_decode_bytes=settings.IMAGE_MAX_DECODE_BYTES,
        max_jpeg_scans=settings.IMAGE_MAX_JPEG_SCANS,
        fast_jpeg=settings.IMAGE_FAST_JPEG,
    )
