"""A worker's hold on the images it is working on: their claimed_at renewed every third of
WORK_LEASE_SECONDS while it works, so that the sweep, which queues again what was claimed
longer ago than the lease, never takes an image from a worker that is alive. When the
process dies (killed, out of memory, past its task's time limit) the renewals stop with
it, and the sweep takes the image back one lease later.

Claims are written, and leases judged, by the database's clock (Now(), database_now):
every host's own differs a little, and a lease judged by another host's clock was taken
from a live worker, or left with a dead one, by the difference.
"""

import logging
import os
import threading
import time
import uuid
from datetime import datetime

from django.conf import settings
from django.db import connection
from django.db.models.functions import Now
from django.db.models.sql import Query

from processing.models import ProductImage

logger = logging.getLogger(__name__)


class LeaseKeeper:
    """The claim tokens this process's batches hold, renewed from a thread of its own."""

    def __init__(self) -> None:
        self._tokens: set[uuid.UUID] = set()
        self._lock = threading.Lock()
        self._pid = 0

    def hold(self, token: uuid.UUID) -> None:
        with self._lock:
            self._tokens.add(token)
            if self._pid != os.getpid():  # first use in this (forked) process
                self._pid = os.getpid()
                threading.Thread(target=self._renew_forever, name="leases", daemon=True).start()

    def release(self, token: uuid.UUID) -> None:
        with self._lock:
            self._tokens.discard(token)

    def _renew_forever(self) -> None:
        while True:
            time.sleep(settings.WORK_LEASE_SECONDS / 3)
            with self._lock:
                tokens = list(self._tokens)
            if not tokens:
                continue
            try:
                ProductImage.objects.filter(
                    claim_token__in=tokens, status=ProductImage.Status.PROCESSING
                ).update(claimed_at=Now())
            except Exception:
                # The database away: the next round tries again, on a new connection.
                logger.warning("could not renew the leases of %d batches", len(tokens))
                connection.close()


leases = LeaseKeeper()


def database_now() -> datetime:
    """The database's clock: what claims are written by (Now()) and leases judged against."""
    query = Query(None)
    query.add_annotation(Now(), "now")
    [(now,)] = query.get_compiler(using="default").results_iter()
    assert isinstance(now, datetime)
    return now
