"""What the API's views share besides their shapes (serializers.py): the 202 answer, the
upload rate limit and quota refusals, idempotency, query checks, ETags and 304s, and the
request a route names, found for the asking account only."""

import hashlib
import logging
import math
from typing import IO, Any

from django.conf import settings
from django.db import transaction
from django.http import HttpResponseNotModified
from django.utils.http import parse_etags
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers, status
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView

from accounts.authentication import request_account
from accounts.services import account_lock
from processing import idempotency, policies, selectors
from processing.exceptions import (
    ApiError,
    IdempotencyKeyReused,
    LengthRequired,
    QuotaExceeded,
    RequestExpired,
    RequestNotFound,
    Throttled,
)
from processing.idempotency import HEADER
from processing.models import ProcessingRequest, ReasonCode

logger = logging.getLogger(__name__)


def accepted_answer(created: ProcessingRequest, *, replayed: bool = False) -> Response:
    """202 for an upload or a re-run: its body, and Location naming the status of the
    request made (its status_url: under PUBLIC_BASE_URL, or the address asked)."""
    body = accepted_body(created)
    headers = {"Location": body["status_url"]} | ({REPLAYED: "true"} if replayed else {})
    return Response(body, status=status.HTTP_202_ACCEPTED, headers=headers)


def accepted_body(created: ProcessingRequest) -> dict[str, Any]:
    """What an upload or a re-run answers, 202."""
    body: dict[str, Any] = {
        "request_id": str(created.pk),
        "message": "CSV uploaded successfully. Processing started.",
        "status_url": selectors.api_url(
            base_url=created.public_base_url, view_name="request-status", request_id=created.pk
        ),
        "total_products": created.total_products,
        "total_images": created.total_images,
    }
    if created.source_request_id:
        body["message"] = "Re-run accepted. Processing started."
        body["source_request_id"] = str(created.source_request_id)
    return body


ERROR_CODE_HELP = (
    "Why the image failed, empty unless it did: http_<status> (the image's server answered "
    "that HTTP status) or one of " + ", ".join(ReasonCode.values) + "."
)

# The header of a 202 that answers a call sent again with its Idempotency-Key.
REPLAYED = "Idempotent-Replayed"

REQUEST_ID = OpenApiParameter(
    "request_id", OpenApiTypes.STR, OpenApiParameter.PATH, description="The request's UUID."
)


class AccountUploadThrottle(SimpleRateThrottle):
    """Uploads per account, at ACCOUNT_UPLOAD_RATE_LIMIT (e.g. "60/minute"; empty: none)."""

    scope = "upload"
    # Set by SimpleRateThrottle from the rate; its stubs do not declare them.
    num_requests: int
    duration: int

    def get_rate(self) -> str | None:
        return settings.ACCOUNT_UPLOAD_RATE_LIMIT or None

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        return self.cache_format % {"scope": self.scope, "ident": request_account(request).pk}

    def wait(self) -> float:
        """Seconds until the next upload is let through: until enough of the window's
        uploads have left it. DRF's own spreads what is left over the window, and past
        the limit (a limit lowered, uploads let through at once) says nothing, which was
        told as 1 s while uploads stayed refused for most of a minute."""
        enough_left = self.history[self.num_requests - 1] if self.num_requests else self.now
        return max(1.0, float(self.duration - (self.now - enough_left)))

    def allow_request(self, request: Request, view: APIView) -> bool:
        account = request_account(request)
        if idempotency.key_made_request(account=account, key=request.headers.get(HEADER)):
            # Sent again with its key: answered with the request it made (or refused, for
            # another upload's key), never a new one. Refused here, a client whose answer
            # was lost would take the 429 for "not made".
            return True
        try:
            # One upload of an account at a time through the check: DRF reads the window's
            # history, then writes it back, and uploads sent at once each read the same
            # history and all went through (20 sent together against 5/minute: 20).
            with transaction.atomic():
                account_lock(account_id=account.pk)
                return super().allow_request(request, view)
        except Exception:
            # The counters live in Redis: while it is away, uploads are not refused for it.
            logger.warning(
                "upload rate limit unavailable; letting the upload through", exc_info=True
            )
            return True


# What a refused upload over the pending-images quota is told to wait: the backlog is
# unknown in time, so about what a few thousand images take.
QUOTA_RETRY_AFTER_SECONDS = 60


# A throttle rate's period, by the first letter DRF reads it by ("60/min" is a minute's).
RATE_PERIODS = {"s": "second", "m": "minute", "h": "hour", "d": "day"}


def upload_rate_words(rate: str) -> str:
    """ACCOUNT_UPLOAD_RATE_LIMIT in words, saying what it counts, for the 429 and the upload
    page alike: "60 CSVs a minute (uploads and re-runs)"; they said "may upload 60/minute",
    and "1000/day"."""
    number, period = rate.split("/")
    count = int(number)
    return (
        f"{count:,} CSV{'' if count == 1 else 's'} a {RATE_PERIODS[period[0]]} "
        "(uploads and re-runs)"
    )


def uploads_throttled(wait: float | None) -> Throttled:
    """The refusal of an upload or a re-run over ACCOUNT_UPLOAD_RATE_LIMIT."""
    rate = settings.ACCOUNT_UPLOAD_RATE_LIMIT
    retry_after = max(1, math.ceil(wait or 1))
    return Throttled(
        f"Too many uploads: this account may send {upload_rate_words(rate)}. "
        f"Try again in {retry_after} s.",
        details=[{"limit": rate, "retry_after_seconds": retry_after}],
        headers={"Retry-After": str(retry_after)},
    )


def quota_refusal(over: policies.QuotaExceeded, *, what: str = "upload") -> QuotaExceeded:
    """The refusal of an upload (or a re-run) over ACCOUNT_MAX_PENDING_IMAGES."""
    return QuotaExceeded(
        f"The account has {over.pending:,} images waiting; with this {what}'s {over.adding:,} "
        f"that passes its limit of {over.limit:,}. Try again when some have finished.",
        details=[
            {"pending_images": over.pending, "upload_images": over.adding, "limit": over.limit}
        ],
        headers={"Retry-After": str(QUOTA_RETRY_AFTER_SECONDS)},
    )


IDEMPOTENCY_KEY = OpenApiParameter(
    idempotency.HEADER,
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="Optional: a key of the client's (a UUID, say). The same call sent again "
    "with it, within IDEMPOTENCY_KEY_HOURS, answers with the request the first made (202, "
    "header Idempotent-Replayed: true) instead of making another; with another file or "
    "other settings, 422 idempotency_key_reused.",
)


def replayed_answer(earlier: ProcessingRequest) -> Response:
    """202 for an upload or a re-run sent again with its key: the request it made."""
    logger.info("sent again with its %s: %s", idempotency.HEADER, earlier.pk)
    return accepted_answer(earlier, replayed=True)


def idempotency_asked(
    request: Request, content: bytes, given: dict[str, Any]
) -> idempotency.Idempotency | None:
    """The Idempotency-Key of an upload (content: its file) or a re-run (its source's id),
    if it sent one; 400 naming the header if it is not one."""
    key = request.headers.get(idempotency.HEADER)
    if key is None:
        return None
    try:
        return idempotency.Idempotency.of(key, content=content, given=given)
    except idempotency.KeyInvalid as invalid:
        raise ApiError(details=[{"field": idempotency.HEADER, "message": str(invalid)}]) from None


def key_reused_refusal(earlier: ProcessingRequest) -> IdempotencyKeyReused:
    """422 for a key sent again with another upload: it names the request the key made."""
    made = selectors.timestamp(earlier.created_at)
    return IdempotencyKeyReused(
        f"This {idempotency.HEADER} made request {earlier.pk} at {made}, from another "
        "file or other settings. Send each new upload or re-run with a new key.",
        details=[{"request_id": str(earlier.pk), "created_at": made}],
    )


def length_required(request: Request) -> None:
    """411 for a body sent without a Content-Length (chunked): Django reads a body by its
    Content-Length, would see none, and every field in it would be dropped unread."""
    if not request.META.get("CONTENT_LENGTH") and request.META.get("HTTP_TRANSFER_ENCODING"):
        raise LengthRequired()


def request_or_404(
    request: Request, request_id: str, *, expired_too: bool = False
) -> ProcessingRequest:
    """The asking account's request: another account's is not found, as an unknown one;
    an expired one answers 410, unless expired_too (its row is still there to show)."""
    found = selectors.request_get(account=request_account(request), request_id=request_id)
    if found is None:
        raise RequestNotFound()
    if found.expired_at is not None and not expired_too:
        raise expired_refusal(found)
    return found


def expired_refusal(found: ProcessingRequest) -> RequestExpired:
    """410 for an expired request, naming when (read again: it may have just expired)."""
    found.refresh_from_db(fields=["expired_at", "deleted_by_owner"])
    expired = selectors.timestamp(found.expired_at)
    why = "at the account's request" if found.deleted_by_owner else "after the retention period"
    # In words to the minute (the page shows the message as it is); to the microsecond in
    # its details, for a program.
    when = f"{found.expired_at:%Y-%m-%d %H:%M} UTC" if found.expired_at else "an unknown date"
    return RequestExpired(
        f"The request's outputs, products and images were deleted on {when}, {why}.",
        details=[{"expired_at": expired}],
    )


IF_NONE_MATCH = OpenApiParameter(
    "If-None-Match",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="Optional: the ETag of an earlier answer. While the answer is the same, "
    "304 Not Modified, without a body.",
)
NOT_MODIFIED = OpenApiResponse(
    description="Not Modified: the answer is the one the If-None-Match sent names (its "
    "ETag); no body."
)
FILE_CHUNK_BYTES = 1024 * 1024


def etag_of(content: bytes) -> str:
    """A weak ETag of an answer's body: another body, another tag."""
    return f'W/"{hashlib.blake2b(content, digest_size=16).hexdigest()}"'


def file_etag(opened: IO[bytes]) -> str:
    """etag_of a file's content, read through and put back at its start: 1.3 ms a
    megabyte (12 ms for a CSV of 100,000 rows, 9 MB), beside the download's own read. An
    object store's file is fetched once, into a local copy that the answer then reads."""
    digest = hashlib.blake2b(digest_size=16)
    while chunk := opened.read(FILE_CHUNK_BYTES):
        digest.update(chunk)
    opened.seek(0)
    return f'W/"{digest.hexdigest()}"'


def not_modified(request: Request, etag: str) -> HttpResponseNotModified | None:
    """304 with etag where the request's If-None-Match names it (compared weakly, as
    RFC 9110 has it for If-None-Match) or is `*`; None otherwise."""
    asked = parse_etags(request.headers.get("If-None-Match", ""))
    if "*" in asked or etag.removeprefix("W/") in {tag.removeprefix("W/") for tag in asked}:
        return HttpResponseNotModified(headers={"ETag": etag})
    return None


def status_body(found: ProcessingRequest) -> dict[str, Any]:
    """The status API's body: the request's status and progress, and its webhook."""
    return selectors.request_status_payload(found) | {"webhook": selectors.webhook_state(found)}


def status_etag(body: dict[str, Any]) -> str:
    """The status API's ETag of its body (status_body): the request's page holds the one
    it was shown from, and asks whether the answer is still the same."""
    return etag_of(JSONRenderer().render(body))


def query_checked(request: Request, known: frozenset[str]) -> None:
    """Refuse, named, a query parameter the route does not know (a misspelt filter ignored
    would list everything as if it had applied), or one given twice. DRF's own `format` is
    taken everywhere."""
    unknown = sorted(set(request.query_params) - known - {"format"})
    if unknown:
        takes = ", ".join(sorted(known))
        raise serializers.ValidationError(
            {name: [f"Not a parameter of this list, which takes {takes}."] for name in unknown}
        )
    # The last of two values won without a word (?page_size=1&page_size=3 listed 3); a
    # status may be given twice, as a list.
    twice = [
        name for name in sorted(known - {"status"}) if len(request.query_params.getlist(name)) > 1
    ]
    if twice:
        raise serializers.ValidationError({name: ["Given more than once."] for name in twice})


def query_none(request: Request) -> None:
    """Refuse, named, a query parameter on a call whose settings go in its body: one put in
    the URL (POST /api/upload/?quality=40) was ignored, and the request ran at the default."""
    sent = sorted(set(request.query_params) - {"format"})
    if sent:
        raise serializers.ValidationError(
            {
                name: ["Sent in the URL's query: send it in the body, as a form field."]
                for name in sent
            }
        )


def statuses_asked(request: Request, choices: list[str]) -> list[str]:
    """The statuses asked for, as ?status=a,b or ?status=a&status=b; refused, named, if
    any is not one of choices, or if none is given where status is (?status= from a shell
    variable left unset listed everything, as a filter ignored would)."""
    asked, problems = statuses_read(request.query_params.getlist("status"), choices)
    if problems:
        raise serializers.ValidationError({"status": problems})
    return asked


def statuses_read(given: list[str], choices: list[str]) -> tuple[list[str], list[str]]:
    """The statuses in a query's status values (each comma-separated), and what is wrong
    with them, in words: for the API's lists and the request's page alike."""
    asked = [name.strip() for value in given for name in value.split(",") if name.strip()]
    if given and not asked:
        return [], [f"Empty. One or more of: {', '.join(choices)}; or no status at all."]
    wrong = [name for name in asked if name not in choices]
    return asked, [f"Not a status: '{name}'. One of: {', '.join(choices)}." for name in wrong]


def page_size_checked(request: Request, name: str, largest: int) -> None:
    """A list's page size, if given, is a whole number from 1 to largest; DRF ignored
    anything else without a word."""
    asked = request.query_params.get(name)
    if asked is not None and not (positive_whole(asked) and int(asked) <= largest):
        raise serializers.ValidationError(
            {name: [f"Not a page size from 1 to {largest}: '{asked}'."]}
        )


def positive_whole(text: str) -> bool:
    # Short enough for int(): past 4,300 digits it raises, which was a 500.
    return text.isascii() and text.isdigit() and len(text) <= 18 and int(text) >= 1
