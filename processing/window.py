"""Fair share of the workers: each request keeps at most a window of its image batches on
the queue or running (REQUEST_WINDOW_BATCHES), and each batch that ends queues the
request's next one. Batches of every request under way then take turns on the one
`images` queue, so a 10-image request is not queued behind a 50,000-image one.

The database says what is queued: an image with no queued_at waits its turn here, one
with queued_at is on the queue, waiting a retry, or claimed. A fill locks the request's
row, so that batches of one request ending together do not queue the same images twice.
The sweep fills every request too: a lost message or a crashed worker never strands one.
"""

import uuid

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from processing import queue
from processing.models import ProcessingRequest, ProductImage

IN_FLIGHT = (ProductImage.Status.PENDING, ProductImage.Status.PROCESSING)


def request_window_fill(*, request_id: uuid.UUID) -> int:
    """Queue the request's next distinct URLs, in CSV order, in batches, until its window is
    full; the number of URLs queued. For a request's start and the sweep: it counts what is
    in flight."""
    batch_size = settings.IMAGE_BATCH_SIZE
    with transaction.atomic():
        processing = (
            ProcessingRequest.objects.select_for_update()
            .filter(pk=request_id, status=ProcessingRequest.Status.PROCESSING)
            .values_list("pk", flat=True)
            .first()
        )
        if processing is None:
            return 0
        in_flight = (
            ProductImage.objects.filter(
                request_id=request_id, queued_at__isnull=False, status__in=IN_FLIGHT
            )
            .values("input_url")
            .distinct()
            .count()
        )
        room = settings.REQUEST_WINDOW_BATCHES * batch_size - in_flight
        # Wait for room for a whole batch: fewer, fuller messages. A request with nothing
        # in flight takes what is left, however little.
        if room <= 0 or (room < batch_size and in_flight):
            return 0
        return _next_queue(request_id, room)


def request_window_refill(*, request_id: uuid.UUID, ended: int) -> int:
    """Queue as many of the request's next URLs as `ended` URLs just left its window; the
    number queued. For a batch's record, whose transaction already holds the request's row
    (its counters' UPDATE), so that no count is needed."""
    return _next_queue(request_id, ended) if ended > 0 else 0


def _next_queue(request_id: uuid.UUID, room: int) -> int:
    images = ProductImage.objects.filter(request_id=request_id)
    waiting = images.filter(queued_at__isnull=True, status=ProductImage.Status.PENDING)
    waiting = waiting.order_by("id")
    firsts: dict[str, int] = {}
    for image_id, url in waiting.values_list("id", "input_url")[: room * 2]:
        firsts.setdefault(url, image_id)
        if len(firsts) == room:
            break
    if not firsts:
        return 0
    # Every image with a URL goes with it: a URL is fetched once per request.
    images.filter(input_url__in=firsts, queued_at__isnull=True).update(queued_at=timezone.now())
    ids = list(firsts.values())
    batch_size = settings.IMAGE_BATCH_SIZE
    for start in range(0, len(ids), batch_size):
        queue.enqueue_after_commit(queue.IMAGES_PROCESS, ids[start : start + batch_size])
    return len(ids)
