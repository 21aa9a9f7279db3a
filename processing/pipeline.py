"""An image batch: claim its URLs, download them (net), compress them (imaging), store the
outputs, and record each URL's outcome (results.py) for every image that shares it. A
source that has not changed since an earlier request of the account (a 304, or the same
bytes) gets that request's output copied instead (reuse.py).

A batch holds distinct URLs of one request (intake.request_start and the sweep batch by
request). It works only on the URLs it claims (claims.py).
"""

import contextvars
import logging
import math
import os
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import InterfaceError, OperationalError, transaction

import net
from config.logs import request_id_bound, request_id_var
from imaging.encode import EXTENSIONS, CompressedImage, OutputFormat, QualityMode, compress
from imaging.guard import time_limit
from imaging.metadata import MetadataMode
from processing import claims, metrics, reuse
from processing.facts import OutputFacts
from processing.leases import leases
from processing.models import ProcessingRequest, ProductImage, ReasonCode, SourceOutput
from processing.outcomes import (
    CANCELLED,
    ImageFailure,
    ImageOutcome,
    storage_failure,
    storage_no_room,
)
from processing.policies import IMAGE_REQUEST_HEADERS, fetch_policy, image_output_name
from processing.results import images_record
from processing.reuse import Known, Seen

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Download:
    fetched: net.Fetched
    digest: str  # SHA-256 of the body, taken on the download's thread; "" for a 304


@dataclass
class _Work:
    image: ProductImage  # the first image with its URL in its request
    known: Known | None  # what the account's cache knows of the URL
    stop: threading.Event  # set once its request is seen cancelled: the download ends
    download: "Future[_Download] | None" = None  # from its start until it is encoded
    started: bool = False
    downloaded: int = 0
    facts: OutputFacts | None = None
    output_name: str = ""
    failure: ImageFailure | None = None
    seen: Seen | None = None  # for the cache, once stored

    def outcome(self) -> ImageOutcome:
        return ImageOutcome(
            input_url=self.image.input_url,
            image_id=self.image.pk,
            attempt=self.image.attempts + 1,  # attempts as loaded, before this batch's claim
            facts=self.facts,
            output_name=self.output_name,
            downloaded_bytes=self.downloaded,
            failure=self.failure,
        )

    def download_start(self, threads: ThreadPoolExecutor) -> None:
        if not self.started:
            self.started = True
            # Bound to its request as the batch's own lines are: what the download logs (an
            # address refused, a connection failed) named no request.
            bound = contextvars.copy_context()
            bound.run(request_id_var.set, str(self.image.request_id))
            self.download = threads.submit(
                bound.run, _fetch, self.image.input_url, self.known, self.stop.is_set
            )

    def cancel(self) -> None:
        """Its request was cancelled before it was compressed: it ends so, its download
        dropped if it has not started (one under way stops at its next chunk, its request's
        stop being set)."""
        if self.download is not None:
            self.download.cancel()
            self.download = None
        self.started = True  # and none starts later
        self.failure = CANCELLED

    def download_take(self, cancels: "_CancelWatch") -> "_Download | None":
        """The download's result, no longer held here once taken; None if its request was
        cancelled while it was awaited: a slow source does not hold a cancelled batch."""
        assert self.download is not None
        wait = max(settings.IMAGE_CANCEL_CHECK_SECONDS, CANCEL_WAIT_LEAST)
        while not self.download.done():
            try:
                self.download.exception(timeout=wait)  # its error, if any, is raised below
            except TimeoutError:
                if self.image.request_id in cancels.seen():
                    return None
        download, self.download = self.download, None
        return download.result()


def images_process(*, image_ids: list[int], task_id: str | None = None, tries: int = 0) -> None:
    """Fetch, compress and store a batch of image URLs, each for every image with it.

    Downloads run in threads ahead of the encoding on this one, a few at a time, and the
    batch's results are recorded in one transaction per request. task_id, the Celery
    task's, is the same for every delivery of the batch, and tries its retries so far
    (claims.claim_token).
    """
    # order_by(): the model's default order would join products for nothing.
    firsts = list(
        ProductImage.objects.select_related("request").filter(pk__in=image_ids).order_by()
    )
    if not firsts:
        logger.warning("images %s do not exist; task dropped", image_ids)
        return
    # The first downloads start before the claim, so that its round trip to the database
    # does not leave the CPU waiting for the first image. One this batch does not win is
    # dropped.
    threads = _io_threads()
    known = _sources_known(firsts)
    cancels = _CancelWatch({image.request_id for image in firsts}, retried=tries > 0)
    work = {
        image.pk: _Work(image, known.get(image.pk), cancels.stops[image.request_id])
        for image in firsts
    }
    pending = [item for item in work.values() if item.image.status == ProductImage.Status.PENDING]
    for item in pending[: _read_ahead()]:
        item.download_start(threads)
    token = claims.claim_token(task_id, tries)
    leases.hold(token)
    try:
        _images_claimed_work(
            firsts, work, token, claims.earlier_tokens(task_id, tries), threads, cancels
        )
    finally:
        leases.release(token)


# What a database away raises: the task's (tasks.DATABASE_AWAY retries it), not an image's.
DATABASE_ERRORS = (OperationalError, InterfaceError)

# The least a batch waits for a download before it looks again for a cancel: with
# IMAGE_CANCEL_CHECK_SECONDS at 0 it would otherwise ask the database without a pause.
CANCEL_WAIT_LEAST = 0.05


def _read_ahead() -> int:
    """Downloads under way or waiting to be encoded, at most, per batch."""
    return 2 * settings.IMAGE_FETCH_THREADS


def _images_claimed_work(
    firsts: list[ProductImage],
    batch: dict[int, _Work],
    token: uuid.UUID,
    earlier: list[uuid.UUID],
    threads: ThreadPoolExecutor,
    cancels: "_CancelWatch",
) -> None:
    claim = claims.images_claim(firsts=firsts, token=token, earlier=earlier)
    for image_id, item in batch.items():
        if image_id not in claim.owned and item.download is not None:
            item.download.cancel()
    work = [item for image_id, item in batch.items() if image_id in claim.owned]
    if not work and not claim.given_up:
        return
    request_ids = list(dict.fromkeys([item.image.request_id for item in work] + [*claim.given_up]))
    with request_id_bound(",".join(sorted(map(str, request_ids)))):
        _images_work(work, threads, cancels)
        for request_id in request_ids:
            mine = [item for item in work if item.image.request_id == request_id]
            # One transaction: what the sources answered, the results, the counters and
            # the next batches. The sources first: the request's row, which every batch
            # of the request takes to count, is then held the shortest time.
            with transaction.atomic():
                if mine:
                    reuse.sources_remember(
                        request=mine[0].image.request,
                        seen=[item.seen for item in mine if item.seen is not None],
                    )
                images_record(
                    request_id=request_id,
                    # Its own, and those of earlier tries it gave up (claims.images_claim)
                    held=ProductImage.objects.filter(
                        request_id=request_id,
                        status=ProductImage.Status.PROCESSING,
                        claim_token__in=[token, *earlier],
                    ),
                    outcomes=[item.outcome() for item in mine] + claim.given_up.get(request_id, []),
                )


def _images_work(work: list[_Work], threads: ThreadPoolExecutor, cancels: "_CancelWatch") -> None:
    """Compress each download as it arrives, or copy the output of an unchanged source;
    write the outputs on the I/O threads."""
    stored: list[tuple[_Work, Future[None]]] = []
    ahead = _read_ahead()
    for index, item in enumerate(work):
        if item.image.request_id in cancels.seen():
            item.cancel()
            continue
        for later in work[index : index + ahead]:
            later.download_start(threads)
        try:
            download = item.download_take(cancels)
            # Asked again once it has come: the wait for it may have been long.
            if download is None or item.image.request_id in cancels.seen():
                item.cancel()
                continue
            fetched, digest = download.fetched, download.digest
            data = fetched.body or b""
            item.downloaded = len(data)
            output = item.known.output if item.known is not None else None
            if output is not None and (
                fetched.not_modified or digest == item.known.content_sha256  # type: ignore[union-attr]
            ):
                stored.append((item, _reuse(item, output, fetched, threads)))
                continue
            with (
                metrics.STAGE_SECONDS.labels("encode").time(),
                time_limit(settings.IMAGE_MAX_SECONDS),
            ):
                compressed = _compress(item.image.request, data)
        except DATABASE_ERRORS:
            # The database away as the batch looked for a cancel: not the image's fault,
            # yet it failed the image for good as internal_error. The task's next try
            # takes the batch's images over.
            raise
        except Exception as error:
            item.failure = ImageFailure.from_error(error, image_id=item.image.pk)
            continue
        item.facts = OutputFacts.of(compressed, input_bytes=len(data))
        item.output_name = _output_name(item, compressed.extension)
        item.seen = _seen(item, fetched, digest)
        stored.append(
            (
                item,
                threads.submit(
                    contextvars.copy_context().run, _store, item.output_name, compressed.data
                ),
            )
        )
    for item, store in stored:
        try:
            store.result()
        except Exception as error:
            reused = item.facts is not None and item.facts.reused and item.known is not None
            item.facts = item.seen = None
            if reused and isinstance(error, FileNotFoundError):
                # The earlier output is gone from storage (deleted by hand, or the storage
                # moved to a bucket): forgotten, so that the next attempt downloads and
                # encodes afresh. It failed the image, attempt after attempt; found at the
                # last attempt, it failed it for good.
                logger.warning("image %s: the output to re-use is gone", item.image.pk)
                assert item.known is not None
                reuse.output_forget(output=item.known.output)
                message = "The earlier output to re-use is gone from storage; made anew next time."
                item.failure = ImageFailure(
                    ReasonCode.STORAGE_ERROR, message, transient=True, once_more=True
                )
            else:
                if storage_no_room(error):
                    # One line, not a traceback an image: a full disk fails every image.
                    logger.error(
                        "image %s: the storage has no room for the output: %s",
                        item.image.pk,
                        error,
                    )
                else:
                    logger.exception("image %s: the output could not be stored", item.image.pk)
                item.failure = storage_failure(error)


class _CancelWatch:
    """The batch's requests that have been cancelled, read again at most every
    IMAGE_CANCEL_CHECK_SECONDS: a batch of small photos ends before it asks once. Each
    request's stop is set once it is seen cancelled: its downloads end at their next chunk."""

    def __init__(self, request_ids: set[uuid.UUID], *, retried: bool = False) -> None:
        # The claim, just after, finds them running; a retry's are asked at once: it takes
        # over what its earlier try held, and the request may have been cancelled since.
        self.asked_at = -math.inf if retried else time.monotonic()
        self.cancelled: set[uuid.UUID] = set()
        self.stops = {request_id: threading.Event() for request_id in request_ids}

    def seen(self) -> set[uuid.UUID]:
        if time.monotonic() - self.asked_at >= settings.IMAGE_CANCEL_CHECK_SECONDS:
            self.asked_at = time.monotonic()
            cancelled = set(
                ProcessingRequest.objects.filter(
                    pk__in=self.stops, cancel_requested_at__isnull=False
                ).values_list("pk", flat=True)
            )
            for request_id in cancelled - self.cancelled:
                self.stops[request_id].set()
                logger.info(
                    "request %s cancelled: the batch ends its images not processed yet", request_id
                )
            self.cancelled = cancelled
        return self.cancelled


def _reuse(
    item: _Work, output: SourceOutput, fetched: net.Fetched, threads: ThreadPoolExecutor
) -> "Future[None]":
    """The earlier output, copied under this image's name: its facts, marked reused."""
    extension = EXTENSIONS.get(output.output_format, "jpg")
    item.output_name = _output_name(item, extension)
    item.facts = OutputFacts.reused_from(output)
    assert item.known is not None
    item.seen = _seen(item, fetched, item.known.content_sha256)
    return threads.submit(
        contextvars.copy_context().run, reuse.output_copy, output=output, name=item.output_name
    )


def _output_name(item: _Work, extension: str) -> str:
    return image_output_name(
        request_id=item.image.request_id, image_id=item.image.pk, extension=extension
    )


def _seen(item: _Work, fetched: net.Fetched, digest: str) -> Seen:
    """The source as found, for the account's cache; a 304 may omit its validators."""
    facts = item.facts
    assert facts is not None
    known = item.known
    return Seen(
        url=item.image.input_url,
        etag=fetched.etag or (known.etag if known else ""),
        last_modified=fetched.last_modified or (known.last_modified if known else ""),
        content_sha256=digest,
        output_name=item.output_name,
        facts=facts,
        known=known,
    )


def _sources_known(firsts: list[ProductImage]) -> dict[int, Known]:
    """By first image id, what each request's account cache knows of its URLs."""
    known: dict[int, Known] = {}
    for request_id in dict.fromkeys(image.request_id for image in firsts):
        mine = [image for image in firsts if image.request_id == request_id]
        by_url = reuse.sources_known(request=mine[0].request, urls=[i.input_url for i in mine])
        known |= {image.pk: by_url[image.input_url] for image in mine if image.input_url in by_url}
    return known


# This process's download and storage threads, kept from batch to batch: starting new
# threads for every batch cost a worker 5% of its time. A forked child makes its own.
_io_pool: tuple[int, ThreadPoolExecutor] | None = None


def _io_threads() -> ThreadPoolExecutor:
    global _io_pool
    if _io_pool is None or _io_pool[0] != os.getpid():
        pool = ThreadPoolExecutor(settings.IMAGE_FETCH_THREADS, thread_name_prefix="image-io")
        _io_pool = (os.getpid(), pool)
    return _io_pool[1]


def _fetch(url: str, known: Known | None, stopped: Callable[[], bool]) -> _Download:
    """The source's bytes and their hash, or word that they have not changed since the copy
    whose output can be re-used; DownloadStopped once stopped answers true. Through the net
    package's attribute: the seam tests stub a download at."""
    asked = known if known is not None and known.output is not None else None
    with metrics.STAGE_SECONDS.labels("fetch").time():
        fetched = net.fetch_if_changed(
            url,
            fetch_policy(),
            etag=asked.etag if asked else "",
            headers=IMAGE_REQUEST_HEADERS,
            stopped=stopped,
        )
    return _Download(fetched, reuse.content_hash(fetched.body) if fetched.body else "")


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
        output_format=OutputFormat(request.output_format),
        target_score=request.target_score,
        max_tries=settings.IMAGE_QUALITY_MAX_TRIES,
        scored=request.scored,
        metadata=MetadataMode(request.metadata),
        max_seconds=settings.IMAGE_MAX_SECONDS,
    )
