"""What the API's views share: the shapes of their answers for the OpenAPI schema, the
upload rate limit, and the request a route names, found for the asking account only."""

import logging
import math
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.db import transaction
from django.http import QueryDict
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView

import net
from accounts.authentication import request_account
from accounts.services import account_lock
from imaging.encode import OutputFormat, QualityMode
from imaging.metadata import MetadataMode
from imaging.quality import CLOSE_ENOUGH, QualityTarget
from processing import idempotency, policies, selectors
from processing.csv_format import url_problem
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
from processing.models import ProcessingRequest, ProductImage, ReasonCode
from processing.parsers import JsonObject
from processing.policies import webhook_policy

logger = logging.getLogger(__name__)


# --- What the API answers, for the OpenAPI schema (/api/schema/) ------------------------


class ErrorSerializer(serializers.Serializer[Any]):
    error = serializers.CharField()
    code = serializers.CharField()
    details = serializers.ListField(child=serializers.DictField(), required=False)


class ProgressSerializer(serializers.Serializer[Any]):
    total = serializers.IntegerField()
    succeeded = serializers.IntegerField()
    failed = serializers.IntegerField()
    cancelled = serializers.IntegerField()
    pending = serializers.IntegerField()


class WebhookStateSerializer(serializers.Serializer[Any]):
    event_id = serializers.CharField()
    state = serializers.ChoiceField(choices=["pending", "delivered", "failed"])
    attempts = serializers.IntegerField()
    last_attempt_at = serializers.DateTimeField(allow_null=True)
    last_status_code = serializers.IntegerField(allow_null=True)
    last_error = serializers.CharField(allow_null=True)
    next_attempt_at = serializers.DateTimeField(allow_null=True)


class WebhookAttemptSerializer(serializers.Serializer[Any]):
    attempted_at = serializers.DateTimeField()
    status_code = serializers.IntegerField(allow_null=True)
    error = serializers.CharField(allow_null=True)
    duration_ms = serializers.IntegerField()


class WebhookDetailSerializer(WebhookStateSerializer):
    attempt_log = WebhookAttemptSerializer(many=True)


class BytesSerializer(serializers.Serializer[Any]):
    input = serializers.IntegerField()
    output = serializers.IntegerField()


class RequestSettingsStateSerializer(serializers.Serializer[Any]):
    quality = serializers.IntegerField(
        help_text="The encoder's quality in fixed mode; the fallback in perceptual mode."
    )
    quality_mode = serializers.ChoiceField(choices=[mode.value for mode in QualityMode])
    target = serializers.ChoiceField(
        choices=[target.value for target in QualityTarget], allow_null=True
    )
    target_score = serializers.FloatField(
        allow_null=True, help_text="The SSIMULACRA2 score the target stands for."
    )
    output_format = serializers.ChoiceField(choices=[asked.value for asked in OutputFormat])
    metadata = serializers.ChoiceField(choices=[mode.value for mode in MetadataMode])
    score = serializers.BooleanField(
        help_text="Whether every output is scored (perceptual ones always are)."
    )


class ScoreSummarySerializer(serializers.Serializer[Any]):
    p5 = serializers.FloatField(
        allow_null=True, help_text="5th percentile of the succeeded images' scores."
    )
    median = serializers.FloatField(allow_null=True)


# A request's statuses, as the API gives them: named in the schema as StatusStatusEnum
# (settings.SPECTACULAR_SETTINGS), whichever serializers hold them.
REQUEST_STATUSES: list[str] = ProcessingRequest.Status.values
# An image's, which the products route filters by.
IMAGE_STATUSES: list[str] = ProductImage.Status.values


class RequestStateSerializer(serializers.Serializer[Any]):
    """A request's status body, as the status API and the list of requests share it."""

    request_id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=REQUEST_STATUSES)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    progress = ProgressSerializer()
    bytes = BytesSerializer(
        help_text="Bytes of the succeeded images so far: downloaded, and of their outputs."
    )
    settings = RequestSettingsStateSerializer()
    score = ScoreSummarySerializer(
        help_text="SSIMULACRA2 of the succeeded images' outputs against their sources "
        "(100: identical, 90: hard to tell, 70: high web quality); set when it finishes."
    )
    output_csv_url = serializers.URLField(allow_null=True)
    products_url = serializers.URLField()
    cancel_requested_at = serializers.DateTimeField(allow_null=True)
    source_request_id = serializers.UUIDField(allow_null=True)
    expires_at = serializers.DateTimeField(
        allow_null=True, help_text="When its results will be deleted, once it has finished."
    )
    error = serializers.CharField(required=False)


class StatusSerializer(RequestStateSerializer):
    webhook = WebhookStateSerializer(allow_null=True)


class ListedRequestSerializer(RequestStateSerializer):
    """The status body less its webhook (the status API has it: in the list it would cost
    a query a row), with where to follow the request."""

    products_url = serializers.URLField(
        allow_null=True, help_text="Null once the request has expired."
    )
    finished_at = serializers.DateTimeField(allow_null=True)
    expired_at = serializers.DateTimeField(
        allow_null=True,
        help_text="When its outputs, products and images were deleted; its links are then null.",
    )
    expired_by = serializers.ChoiceField(
        choices=["retention", "account"],
        allow_null=True,
        help_text="Why: the retention period, or its account deleting it.",
    )
    status_url = serializers.URLField()
    page_url = serializers.URLField(help_text="Its page, for a person logged in.")


class StrictSerializer(serializers.Serializer[Any]):
    """An input whose unknown fields, and fields given twice, are refused, named: a
    misspelt setting ("qualty") ignored would run the whole request at the default, and
    the user would find out from the outputs."""

    # What else a body may carry: the page's forms send Django's CSRF token.
    other_fields: frozenset[str] = frozenset({"csrfmiddlewaretoken"})
    # How the refusal names the fields it knows.
    fields_are: str = "fields"

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        known = {*self.fields, *self.other_fields}
        unknown = {
            name: [f"Unknown field. The {self.fields_are} are {', '.join(self.fields)}."]
            for name in (sorted(set(data) - known) if isinstance(data, Mapping) else [])
        }
        # A form's field given twice (quality=40&quality=80, two files): which one was
        # meant is anyone's guess, and the last would win without a word.
        if isinstance(data, QueryDict):
            unknown |= {
                name: [f"Given {len(data.getlist(name))} times; give it once."]
                for name in sorted(data)
                if len(data.getlist(name)) > 1
            }
        elif isinstance(data, JsonObject):  # {"quality": 20, "quality": 30}
            unknown |= {
                name: [f"Given {count} times; give it once."]
                for name, count in sorted(data.repeated.items())
            }
        try:
            value: dict[str, Any] = super().to_internal_value(data)
        except serializers.ValidationError as invalid:
            if unknown and isinstance(invalid.detail, dict):
                invalid.detail.update(unknown)
            raise
        if unknown:
            raise serializers.ValidationError(unknown)
        return value


def webhook_url_checked(value: str) -> str:
    """value, if it is a URL a webhook may be sent to; else the field's error."""
    problem = url_problem(value)
    if problem:
        raise serializers.ValidationError(problem)
    try:
        net.check_url(value, webhook_policy())
    except net.NetError as refused:
        raise serializers.ValidationError(refused.message) from None
    return value


class WebhookTestSerializer(StrictSerializer):
    """A test event's one field, from the API or the account page's form."""

    url = serializers.CharField(
        max_length=2048,
        trim_whitespace=True,
        help_text="The receiver's URL: absolute http(s), where webhooks may go.",
    )

    def validate_url(self, value: str) -> str:
        return webhook_url_checked(value)


class NamedChoiceField(serializers.ChoiceField):
    """A choice taken whatever its case ("JPEG" is jpeg), and refused naming the choices."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        listed = ", ".join(str(choice) for choice in self.choices)
        self.error_messages["invalid_choice"] = f'"{{input}}" is not one of {listed}.'

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, str) and data not in self.choice_strings_to_values:
            data = data.lower()
        return super().to_internal_value(data)


class RequestSettingsSerializer(StrictSerializer):
    """The settings an upload or a re-run may give."""

    fields_are = "settings"

    webhook_url = serializers.CharField(
        required=False, allow_blank=True, max_length=2048, trim_whitespace=True
    )
    quality = serializers.IntegerField(required=False, min_value=1, max_value=95)
    quality_mode = NamedChoiceField(
        required=False,
        choices=[mode.value for mode in QualityMode],
        help_text="fixed (default): at quality. relative: half the source's estimated "
        "quality. perceptual: per image, a low quality whose output reaches target (the "
        f"lowest, or one scoring within {CLOSE_ENOUGH:g} points of target).",
    )
    target = NamedChoiceField(
        required=False,
        choices=[target.value for target in QualityTarget],
        help_text="The perceptual mode's target: low, medium (default) or high, SSIMULACRA2 "
        "60, 70 or 80 unless the service's settings say otherwise. Given alone, it asks for "
        "quality_mode=perceptual.",
    )
    output_format = NamedChoiceField(
        required=False,
        choices=[asked.value for asked in OutputFormat],
        help_text="same (default): JPEG stays JPEG, WebP stays WebP, others JPEG, or WebP "
        "where transparent. jpeg, webp or avif: every output in that format.",
    )
    metadata = NamedChoiceField(
        required=False,
        choices=[mode.value for mode in MetadataMode],
        help_text="strip (default): outputs keep no metadata but their ICC profile. "
        "copyright: and the artist, copyright notice and credit line (EXIF, XMP, IPTC); "
        "never GPS.",
    )
    # Absent is None, not false: DRF reads a boolean missing from a form as an unticked
    # box, and uploads are forms. None leaves it to the service's IMAGE_SCORE_ALL_MODES
    # (an upload) or to the source request (a re-run).
    score = serializers.BooleanField(
        required=False,
        allow_null=True,
        default=None,
        help_text="true: score every output against its source (SSIMULACRA2), in fixed and "
        "relative mode too, at several times an encode's cost. Perceptual outputs always "
        "are. Default: the service's IMAGE_SCORE_ALL_MODES (false); a re-run, the source "
        "request's.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        mode = attrs.get("quality_mode")
        if "target" in attrs and mode not in {None, QualityMode.PERCEPTUAL}:
            raise serializers.ValidationError(
                {"target": [f"A target applies to quality_mode=perceptual, not {mode}."]}
            )
        return attrs

    def validate_webhook_url(self, value: str) -> str:
        return webhook_url_checked(value) if value else value


class AcceptedSerializer(serializers.Serializer[Any]):
    request_id = serializers.UUIDField()
    message = serializers.CharField()
    status_url = serializers.URLField()
    total_products = serializers.IntegerField()
    total_images = serializers.IntegerField()
    source_request_id = serializers.UUIDField(
        required=False, help_text="For a re-run: the request it re-runs."
    )


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


def errors(*statuses: int) -> dict[int, OpenApiResponse]:
    return {code: OpenApiResponse(ErrorSerializer) for code in statuses}


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


def uploads_throttled(wait: float | None) -> Throttled:
    """The refusal of an upload or a re-run over ACCOUNT_UPLOAD_RATE_LIMIT."""
    rate = settings.ACCOUNT_UPLOAD_RATE_LIMIT
    retry_after = max(1, math.ceil(wait or 1))
    return Throttled(
        f"Too many uploads: this account may upload {rate}. Try again in {retry_after} s.",
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
    return Response(
        accepted_body(earlier), status=status.HTTP_202_ACCEPTED, headers={REPLAYED: "true"}
    )


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
    return RequestExpired(
        f"The request's outputs, products and images were deleted on {expired}, {why}.",
        details=[{"expired_at": expired}],
    )


def status_body(found: ProcessingRequest) -> dict[str, Any]:
    """The status API's body: the request's status and progress, and its webhook."""
    return selectors.request_status_payload(found) | {"webhook": selectors.webhook_state(found)}


def query_checked(request: Request, known: frozenset[str]) -> None:
    """Refuse, named, a query parameter the route does not know: a misspelt filter ignored
    would list everything as if it had applied. DRF's own `format` is taken everywhere."""
    unknown = sorted(set(request.query_params) - known - {"format"})
    if unknown:
        takes = ", ".join(sorted(known))
        raise serializers.ValidationError(
            {name: [f"Not a parameter of this list, which takes {takes}."] for name in unknown}
        )


def statuses_asked(request: Request, choices: list[str]) -> list[str]:
    """The statuses asked for, as ?status=a,b or ?status=a&status=b; refused, named, if
    any is not one of choices, or if none is given where status is (?status= from a shell
    variable left unset listed everything, as a filter ignored would)."""
    given = request.query_params.getlist("status")
    asked = [name.strip() for value in given for name in value.split(",") if name.strip()]
    if given and not asked:
        raise serializers.ValidationError(
            {"status": [f"Empty. One or more of: {', '.join(choices)}; or no status at all."]}
        )
    wrong = [name for name in asked if name not in choices]
    if wrong:
        raise serializers.ValidationError(
            {"status": [f"Not a status: '{name}'. One of: {', '.join(choices)}." for name in wrong]}
        )
    return asked


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
