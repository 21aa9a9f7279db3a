"""The limits and names the services read from settings, in one place: what the fetcher
may reach, what a CSV may hold, where outputs are stored."""

import secrets
import uuid
from functools import cache
from typing import Final

from django.conf import settings

from accounts.models import Account
from net import NetPolicy, parse_networks
from processing import selectors
from processing.csv_format import CsvLimits

OUTPUT_FOLDER: Final = "output_images"
# What an image download asks for; an origin that negotiates may answer with a format we read.
IMAGE_REQUEST_HEADERS: Final = {"Accept": "image/*, */*;q=0.5"}


@cache
def fetch_policy() -> NetPolicy:
    """Limits and reach of image downloads."""
    return NetPolicy(
        max_bytes=settings.IMAGE_FETCH_MAX_BYTES,
        connect_timeout=settings.IMAGE_FETCH_CONNECT_TIMEOUT,
        read_timeout=settings.IMAGE_FETCH_READ_TIMEOUT,
        total_timeout=settings.IMAGE_FETCH_TOTAL_TIMEOUT,
        allowed_networks=parse_networks(settings.IMAGE_FETCH_ALLOW_NETWORKS),
        allowed_ports=frozenset({80, 443, *settings.IMAGE_FETCH_ALLOW_PORTS}),
    )


@cache
def webhook_policy() -> NetPolicy:
    """Limits and reach of webhook POSTs: no redirects, WEBHOOK_TIMEOUT to connect and read,
    public addresses on ports 80 and 443 unless WEBHOOK_ALLOW_NETWORKS and _PORTS say more.
    Their own settings: an image host an operator lets the fetcher reach is no reason to
    let every user POST to it."""
    return NetPolicy(
        connect_timeout=settings.WEBHOOK_TIMEOUT,
        read_timeout=settings.WEBHOOK_TIMEOUT,
        total_timeout=settings.WEBHOOK_TIMEOUT * 2,
        max_redirects=0,
        allowed_networks=parse_networks(settings.WEBHOOK_ALLOW_NETWORKS),
        allowed_ports=frozenset({80, 443, *settings.WEBHOOK_ALLOW_PORTS}),
    )


# Room for the multipart framing and the small form fields beside an uploaded CSV.
MULTIPART_OVERHEAD: Final = 64 * 1024


def upload_body_limit() -> int:
    """The largest request body worth reading: the largest CSV and its form around it."""
    return int(settings.CSV_MAX_BYTES) + MULTIPART_OVERHEAD


def csv_limits() -> CsvLimits:
    return CsvLimits(max_rows=settings.CSV_MAX_ROWS, max_urls_per_row=settings.CSV_MAX_URLS_PER_ROW)


def image_output_name(*, request_id: uuid.UUID, image_id: int, extension: str) -> str:
    """Named after the image's row: a second run of its task writes the same file again."""
    return f"{OUTPUT_FOLDER}/{request_id}/{image_id}.{extension}"


def csv_output_name(*, request_id: uuid.UUID) -> str:
    """Beside the request's images, so that expiry deletes it with them, under a name no
    one can guess from theirs: with S3_PUBLIC_BASE_URL, anyone who saw an image's URL read
    the whole catalogue at <its folder>/output.csv. The owner's API route hands it out."""
    return f"{OUTPUT_FOLDER}/{request_id}/output-{secrets.token_urlsafe(16)}.csv"


class QuotaExceeded(Exception):
    """The account has more images waiting than ACCOUNT_MAX_PENDING_IMAGES allows."""

    def __init__(self, *, pending: int, adding: int, limit: int) -> None:
        super().__init__(f"{pending} images pending + {adding} > {limit}")
        self.pending = pending
        self.adding = adding
        self.limit = limit


def pending_quota_check(*, account: Account, adding: int) -> None:
    """Raise QuotaExceeded if `adding` more images would take the account's images not yet
    finished past ACCOUNT_MAX_PENDING_IMAGES (0: no limit). For uploads, re-runs, retries."""
    limit = settings.ACCOUNT_MAX_PENDING_IMAGES
    if not limit:
        return
    pending = selectors.account_pending_images(account=account)
    if pending + adding > limit:
        raise QuotaExceeded(pending=pending, adding=adding, limit=limit)
