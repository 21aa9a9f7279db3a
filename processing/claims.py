"""A batch's claim on its image URLs: a conditional UPDATE with the batch's token, so that
a task delivered twice, or a batch whose lease ran out, finds nothing left to claim or to
record; and what becomes of the URLs an earlier delivery of the same task held when its
process died.
"""

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.db.models.functions import Now
from django.utils import timezone

from processing import bulk, queue
from processing.models import ProcessingRequest, ProductImage
from processing.outcomes import ImageOutcome, lost_ending

logger = logging.getLogger(__name__)

# The namespace of claim tokens made from task ids (any fixed UUID would do).
_TASK_TOKENS = uuid.UUID("6f1d2c1e-9a51-4b1f-8f0e-3c7a5d2b9e40")


def claim_token(task_id: str | None, tries: int = 0) -> uuid.UUID:
    """The token a batch claims its images with: one try of a task, one token, whichever
    delivery of that try.

    A task whose process died (killed, out of memory, a crash in a codec) goes back to the
    queue at once (CELERY_TASK_REJECT_ON_WORKER_LOST), and its next delivery finds the
    images the dead one held (_images_held_by_the_dead), where the sweep would wait for
    their lease to run out. Two live deliveries of one task (a broker that gave it back
    while it ran) are taken for one dead and one alive: the second queues the first's
    images again, each is then worked twice (the first success recorded stands, as for any
    image claimed twice; the first delivery's failures are not recorded), and one at its
    last attempt is failed by the second while the first still works on it.

    tries: Celery's retries of the task so far. A try that failed on a database error ended
    alive, and Celery sent the next: that one takes its images over (earlier_tokens), where
    under the same token it took them for a dead delivery's and queued each again alone,
    or, in a cancelled request, ended them "the worker was lost".
    """
    if not task_id:
        return uuid.uuid4()
    return uuid.uuid5(_TASK_TOKENS, f"{task_id}/{tries}" if tries else task_id)


def earlier_tokens(task_id: str | None, tries: int) -> list[uuid.UUID]:
    """The tokens of the task's tries before this one: each ended by an error, alive."""
    return [claim_token(task_id, earlier) for earlier in range(tries)] if task_id else []


@dataclass
class Claim:
    owned: set[int]  # ids of the firsts this batch works on
    # By request, the URLs an earlier delivery of this task held when its process died, at
    # their last attempt or in a cancelled request: ended now, not tried again.
    given_up: dict[uuid.UUID, list[ImageOutcome]]


def images_claim(
    *, firsts: list[ProductImage], token: uuid.UUID, earlier: Sequence[uuid.UUID] = ()
) -> Claim:
    """Claim the pending URLs of firsts (and their repeats), and those the task's earlier
    tries still hold (earlier: their tokens, claim_token) below IMAGE_MAX_ATTEMPTS; deal
    with those an earlier delivery of this try held when its process died, and those of
    earlier tries at the limit, as the sweep would. A URL taken over from an earlier try
    counts an attempt, as one queued again would: an image that kills its process on
    every try is bounded by IMAGE_MAX_ATTEMPTS all the same."""
    claim = Claim(owned=set(), given_up={})
    claimable = Q(status=ProductImage.Status.PENDING)
    if earlier:
        # Below the limit only: one at it ends as a dead delivery's does (below), where a
        # database error that came back at every try worked it at each of Celery's ten.
        claimable |= Q(
            status=ProductImage.Status.PROCESSING,
            claim_token__in=earlier,
            attempts__lt=settings.IMAGE_MAX_ATTEMPTS,
        )
    for request_id in dict.fromkeys(image.request_id for image in firsts):
        mine = {image.input_url: image for image in firsts if image.request_id == request_id}
        same_urls = ProductImage.objects.filter(request_id=request_id, input_url__in=mine)
        claimed = {
            url
            for (url,) in bulk.update_returning(
                same_urls.filter(claimable),
                values={
                    "status": ProductImage.Status.PROCESSING,
                    "claim_token": token,
                    "claimed_at": Now(),  # the database's clock, as leases are judged by
                    "attempts": F("attempts") + 1,
                },
                returning=["input_url"],
            )
        }
        claim.owned |= {mine[url].pk for url in claimed}
        if len(claimed) < len(mine):  # else none is left held by a dead delivery: no query
            held = same_urls.filter(
                status=ProductImage.Status.PROCESSING, claim_token__in=[token, *earlier]
            ).exclude(input_url__in=claimed)  # held by this token now, as just claimed
            if given_up := _images_held_by_the_dead(mine, held):
                claim.given_up[request_id] = given_up
    return claim


def _images_held_by_the_dead(
    mine: dict[str, ProductImage], held: "QuerySet[ProductImage]"
) -> list[ImageOutcome]:
    """The URLs an earlier delivery of this task held when its process died: each queued
    again as a task of its own (new token), as the sweep would one lease later, so that
    an image that kills its process fails alone rather than its whole batch with it.
    Ended instead at their last attempt, or in a cancelled request, as the sweep ends
    them. What is to end, for the caller to record.

    Decided with the request's row held, as request_cancel holds it: a cancel comes
    before (and nothing is queued again) or after (and finds the images pending)."""
    request_id = next(iter(mine.values())).request_id
    found = dict(held.values_list("input_url", "attempts"))
    if not found:  # a URL ended already, or another's: the common case, no lock taken
        return []
    with transaction.atomic():
        cancelled = (
            ProcessingRequest.objects.select_for_update()
            .filter(pk=request_id)
            .values_list("cancel_requested_at", flat=True)
            .get()
            is not None
        )
        endings = {url: lost_ending(n, cancelled=cancelled) for url, n in found.items()}
        ending = {url: failure for url, failure in endings.items() if failure is not None}
        again = [
            url
            for (url,) in bulk.update_returning(
                held.filter(input_url__in=found.keys() - ending.keys()),
                # The host's clock, as the request's window counts what is in flight by.
                values={"status": ProductImage.Status.PENDING, "queued_at": timezone.now()},
                returning=["input_url"],
            )
        ]
        for url in dict.fromkeys(again):
            queue.enqueue_after_commit(queue.IMAGES_PROCESS, [mine[url].pk], str(request_id))
    if again:
        logger.info(
            "%d image URLs queued again, each alone: the process of their batch died",
            len(set(again)),
        )
    return [
        ImageOutcome(input_url=url, image_id=mine[url].pk, attempt=found[url], failure=failure)
        for url, failure in ending.items()
    ]
