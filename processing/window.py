"""Fair share of the workers: each request keeps at most a window of its image batches on
the queue or running (REQUEST_WINDOW_BATCHES), and each batch that ends tops it up
again. Batches of every request under way then take turns on the one `images` queue, so
a 10-image request is not queued behind a 50,000-image one.

A batch holds settings.IMAGE_BATCH_SIZE URLs until the request's first batches have
ended; from then on as many as come to about IMAGE_BATCH_BYTES of downloads at the size
its images turned out to have (batch_size_next), kept on the request. The window is
counted in batches of that size, so it grows with the batches, and topped up in whole
batches while others are in flight. A request that fits in its window whole starts in
REQUEST_START_BATCHES batches instead, so that every worker process takes a share of it;
so does what is left of one once nothing of it is in flight.

The database says what is queued: an image with no queued_at waits its turn here, one
with queued_at is on the queue, waiting a retry, or claimed. A fill locks the request's
row, so that batches of one request ending together do not queue the same images twice.
The sweep fills every request too: a lost message or a crashed worker never strands one.
"""

import math
import uuid

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from processing import queue
from processing.models import ProcessingRequest, ProductImage

IN_FLIGHT = (ProductImage.Status.PENDING, ProductImage.Status.PROCESSING)


def request_window_fill(*, request_id: uuid.UUID) -> int:
    """Queue the request's next distinct URLs, in CSV order, in batches, until its window is
    full; the number of URLs queued. For a request's start, a retry of it and the sweep."""
    with transaction.atomic():
        learnt = (
            ProcessingRequest.objects.select_for_update()
            .filter(pk=request_id, status=ProcessingRequest.Status.PROCESSING)
            .values_list("batch_size", flat=True)
            .first()
        )
        if learnt is None:
            return 0
        return request_window_refill(request_id=request_id, batch_size=batch_size_of(learnt))


def request_window_refill(*, request_id: uuid.UUID, batch_size: int) -> int:
    """Queue what the request's window has room for, in whole batches of batch_size while
    others are in flight; the number of URLs queued. For a batch's record, whose
    transaction already holds the request's row and has stored the batch size it learnt,
    and for request_window_fill once it holds it. A batch that ended queueing only as
    many URLs as it held kept the 8-URL batches of a request's start at 8 while the rest
    grew to 32, and 38 of a typical catalogue's 83 batches went that small
    (BENCHMARKS.md, "Whole batches").

    A URL waiting for a retry (queued_at ahead) is not counted: a retry is a task of one
    URL, and counted it would hold back a whole batch until its countdown ran out."""
    in_flight = (
        ProductImage.objects.filter(
            request_id=request_id,
            queued_at__isnull=False,
            queued_at__lte=timezone.now(),
            status__in=IN_FLIGHT,
        )
        .values("input_url")
        .distinct()
        .count()
    )
    room = settings.REQUEST_WINDOW_BATCHES * batch_size - in_flight
    if in_flight:
        # Wait for room for a whole batch: fewer, fuller messages. A request with nothing
        # in flight takes what is left, however little, so that it never waits for the
        # sweep, even when its batches shrink.
        room -= room % batch_size
    if room <= 0:
        return 0
    return _next_queue(request_id, room, batch_size, spread=not in_flight)


# Formats and modes whose encoding is nearly all an image costs (on product photos WebP 13
# and AVIF 8 images/s a core, the perceptual search's three or four encodes and scores
# about 22, JPEG 165: BENCHMARKS.md): a batch's fixed cost is nothing beside them, and a
# larger batch would only keep other requests waiting longer.
UNBATCHED_FORMATS = frozenset({"webp", "avif"})
UNBATCHED_MODES = frozenset({"perceptual"})


def batch_size_of(stored: int) -> int:
    """A request's batch size: as learnt, or IMAGE_BATCH_SIZE before anything is."""
    return stored or int(settings.IMAGE_BATCH_SIZE)


def batch_size_next(
    current: int,
    downloaded: list[int],
    *,
    output_format: str = "same",
    quality_mode: str = "fixed",
) -> int:
    """URLs per batch after a batch whose images downloaded these many bytes each (0 for a
    source that had not changed): as many as come to about IMAGE_BATCH_BYTES, halfway
    from the current size, so that one odd batch does not swing it. IMAGE_BATCH_SIZE for
    a request asked for in a slow format or mode."""
    if output_format in UNBATCHED_FORMATS or quality_mode in UNBATCHED_MODES:
        return int(settings.IMAGE_BATCH_SIZE)
    if not downloaded:
        return current
    average = max(1.0, sum(downloaded) / len(downloaded))
    wanted = (current + settings.IMAGE_BATCH_BYTES / average) / 2
    return max(settings.IMAGE_BATCH_SIZE, min(settings.IMAGE_BATCH_MAX_SIZE, round(wanted)))


def _next_queue(request_id: uuid.UUID, room: int, batch_size: int, *, spread: bool = False) -> int:
    """Queue up to room of the request's next distinct URLs in batches of batch_size; the
    number queued. spread: the request has nothing in flight (its start, a retry of it,
    the sweep, or a batch's end), and if all it has left fits, it goes in as many batches
    as REQUEST_START_BATCHES, so that the worker processes share it: a 10-image request
    took 8 images on one process and 2 on another, and waited for the 8."""
    images = ProductImage.objects.filter(request_id=request_id)
    waiting = images.filter(queued_at__isnull=True, status=ProductImage.Status.PENDING)
    waiting = waiting.order_by("id")
    # At most twice room rows are read: where URLs repeat more often, fewer than room
    # distinct ones come back, and more may be waiting.
    rows = list(waiting.values_list("id", "input_url")[: room * 2])
    firsts: dict[str, int] = {}
    for image_id, url in rows:
        firsts.setdefault(url, image_id)
        if len(firsts) == room:
            break
    everything = len(firsts) < room and len(rows) < room * 2
    if not firsts:
        return 0
    # Every image with a URL goes with it: a URL is fetched once per request.
    images.filter(input_url__in=firsts, queued_at__isnull=True).update(queued_at=timezone.now())
    ids = list(firsts.values())
    for batch in _batches(ids, batch_size, spread=spread and everything):
        queue.enqueue_after_commit(queue.IMAGES_PROCESS, batch, str(request_id))
    return len(ids)


def _batches(ids: list[int], batch_size: int, *, spread: bool) -> list[list[int]]:
    """ids in order, in batches of batch_size (the last may be smaller); spread, in
    REQUEST_START_BATCHES batches (fewer where there are fewer ids, more where a batch
    would exceed batch_size), of sizes one apart at most."""
    if not spread:
        return [ids[start : start + batch_size] for start in range(0, len(ids), batch_size)]
    count = max(math.ceil(len(ids) / batch_size), min(len(ids), settings.REQUEST_START_BATCHES))
    size, larger = divmod(len(ids), count)
    batches, start = [], 0
    for number in range(count):
        end = start + size + (number < larger)
        batches.append(ids[start:end])
        start = end
    return batches
