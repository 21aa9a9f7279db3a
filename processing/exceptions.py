"""API errors: one JSON shape, {"error": message, "code": stable code, "details": [...]}.

The codes are a closed set (README lists them); clients may switch on them.
"""

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import (
    DisallowedHost,
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.response import Response

from accounts.authentication import authorization_sent

logger = logging.getLogger(__name__)


class ApiError(Exception):
    status_code: int = status.HTTP_400_BAD_REQUEST
    code = "invalid_input"
    message = "Invalid input."

    def __init__(
        self,
        message: str | None = None,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message or self.message)
        self.message = message or self.message
        self.details = details
        self.headers = headers or {}


class NoFileUploaded(ApiError):
    code = "no_file"
    message = "No file uploaded: send the CSV as the form field 'file'."


class NotMultipart(ApiError):
    """An upload's body sent as the CSV itself (curl --data-binary, a client's raw body):
    DRF's "Unsupported media type" alone does not say what the upload takes."""

    status_code: int = status.HTTP_415_UNSUPPORTED_MEDIA_TYPE
    code = "unsupported_media_type"

    @classmethod
    def sent_as(cls, media_type: str) -> "NotMultipart":
        return cls(
            f"Unsupported media type {media_type!r}: send the CSV as a multipart/form-data "
            "upload, in the form field 'file' (with curl, -F file=@products.csv)."
        )


class InvalidCsv(ApiError):
    code = "invalid_csv"
    message = "Invalid CSV."


class FileTooLarge(ApiError):
    status_code: int = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    code = "file_too_large"

    @classmethod
    def over(cls, limit: int) -> "FileTooLarge":
        return cls(f"The file is larger than the limit of {limit:,} bytes.")


class LengthRequired(ApiError):
    status_code = status.HTTP_411_LENGTH_REQUIRED
    code = "length_required"
    message = "Send the body with a Content-Length header; chunked bodies are not accepted."


class BodyTooLarge(ApiError):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    code = "body_too_large"


class NoWebhook(ApiError):
    status_code = status.HTTP_409_CONFLICT
    code = "no_webhook"
    message = "The request has no webhook URL, and WEBHOOK_URL is not set."


class WebhookPending(ApiError):
    status_code = status.HTTP_409_CONFLICT
    code = "webhook_pending"
    message = (
        "The request's webhook is being delivered right now: send it again once this "
        "attempt has ended."
    )


class RequestNotFound(ApiError):
    status_code: int = status.HTTP_404_NOT_FOUND
    code = "not_found"
    message = "Request not found."


class Throttled(ApiError):
    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    code = "throttled"
    message = "Too many requests of this kind for this account; try again later."


class ServerBusy(ApiError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    code = "server_busy"
    message = "The service is busy; try again in a few seconds."


class QuotaExceeded(ApiError):
    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    code = "quota_exceeded"
    message = "The account has too many images waiting; try again when some have finished."


class IdempotencyKeyReused(ApiError):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    code = "idempotency_key_reused"


class RequestNotFinished(ApiError):
    status_code: int = status.HTTP_409_CONFLICT
    code = "not_finished"
    message = "The request has not finished yet; the output CSV is written when it does."


class AlreadyFinished(ApiError):
    status_code = status.HTTP_409_CONFLICT
    code = "already_finished"
    message = "The request has already finished; there is nothing left to cancel."


class NothingToRetry(ApiError):
    status_code = status.HTTP_409_CONFLICT
    code = "nothing_to_retry"
    message = "Every image of the request succeeded; there is nothing to retry."


class RequestExpired(ApiError):
    status_code = status.HTTP_410_GONE
    code = "expired"
    message = "The request's results were deleted after the retention period."


def error_body(
    message: str, code: str, details: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"error": message, "code": code}
    if details:
        body["details"] = details
    return body


DATABASE_UNAVAILABLE = "The database is unavailable; try again in a few seconds."
DATABASE_RETRY_AFTER_SECONDS = 5
KEY_REFUSED = "The API key is not valid: unknown, revoked or expired."
# Schemes named back to the client; any other word may be a key sent without one.
OTHER_SCHEMES = frozenset({"basic", "token", "digest", "apikey", "api-key", "key", "jwt"})
SEND_A_KEY = "send an API key as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"


def _how_to_authenticate(request: Any) -> str:
    """What a request with no key is told: how to send one, and where it sent another
    kind of credential (Basic, Token), its scheme, never the credential itself."""
    scheme = authorization_sent(request)[0] if request is not None else ""
    if scheme and scheme.lower() != "bearer":
        shown = scheme if scheme.lower() in OTHER_SCHEMES else "not Bearer"
        return (
            f"Authentication required: the Authorization header's scheme is {shown}; {SEND_A_KEY}."
        )
    return f"Authentication required: {SEND_A_KEY}."


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """DRF's exception handler: every error leaves the API in the one shape."""
    if isinstance(exc, ApiError):
        return Response(
            error_body(exc.message, exc.code, exc.details),
            status=exc.status_code,
            headers=exc.headers,
        )
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        # A key sent and refused says so, an unknown, revoked or expired one alike (which
        # of them would tell a guesser which prefixes exist); none sent says how to send it.
        headers = {"WWW-Authenticate": exc.auth_header} if hasattr(exc, "auth_header") else {}
        refused = isinstance(exc, exceptions.AuthenticationFailed)
        message = KEY_REFUSED if refused else _how_to_authenticate(context.get("request"))
        return Response(
            error_body(message, "not_authenticated"),
            status=status.HTTP_401_UNAUTHORIZED,
            headers=headers,
        )
    if isinstance(exc, exceptions.ValidationError):
        return Response(
            error_body("Invalid input.", "invalid_input", _field_details(exc.detail)),
            status=status.HTTP_400_BAD_REQUEST,
        )
    if isinstance(exc, Http404 | exceptions.NotFound):
        # DRF's own NotFound may say what was not found (a page of a list); Django's 404,
        # raised with any text, is told as plain "Not found."
        message = str(exc.detail) if isinstance(exc, exceptions.NotFound) else "Not found."
        return Response(error_body(message, "not_found"), status=status.HTTP_404_NOT_FOUND)
    if isinstance(exc, exceptions.APIException):
        code = exc.get_codes() if isinstance(exc.get_codes(), str) else exc.default_code
        headers = {}
        wait = getattr(exc, "wait", None)
        if wait is not None:
            headers["Retry-After"] = str(int(wait))
        return Response(
            error_body(str(exc.detail), str(code)), status=exc.status_code, headers=headers
        )
    if isinstance(exc, SuspiciousOperation):
        return _refused_body(exc)
    if isinstance(exc, OperationalError | InterfaceError):
        # The database away (refused, restarting, out of connections): a client retries
        # a 503, and the log line names the cause once, without Django's frames.
        database_unavailable_logged(exc)
        return Response(
            error_body(DATABASE_UNAVAILABLE, "database_unavailable"),
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
        )
    view = context.get("view")
    logger.exception("unhandled error in %s", type(view).__name__ if view else "the API")
    return Response(
        error_body("Internal server error.", "server_error"),
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )


def database_unavailable_logged(error: Exception) -> None:
    """The cause of a database away, in one line without Django's frames (the API's 503,
    the pages')."""
    logger.error("database unavailable: %s", " ".join(str(error).split()) or repr(error))


def wants_page(request: HttpRequest) -> bool:
    """Whether a browser asked for a page (not the API's JSON, not a stored file)."""
    asked = "text/html" in request.META.get("HTTP_ACCEPT", "")
    return asked and not request.path.startswith(("/api/", "/media/"))


def _refused_body(exc: SuspiciousOperation) -> Response:
    """Django's refusals of a body past its limits, which reached the client as 500s."""
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        error: ApiError = BodyTooLarge(
            f"The request's fields are larger than the limit of {limit:,} bytes."
        )
    elif isinstance(exc, TooManyFieldsSent):
        limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
        error = ApiError(f"The request has more than {limit:,} fields.")
    elif isinstance(exc, TooManyFilesSent):
        limit = settings.DATA_UPLOAD_MAX_NUMBER_FILES
        error = ApiError(f"The request has more than {limit:,} files; send the CSV alone.")
    else:
        error = ApiError("The request could not be read.")
    logger.info("request refused: %s", error.message)
    return Response(error_body(error.message, error.code), status=error.status_code)


def _field_details(detail: Any) -> list[dict[str, Any]]:
    if isinstance(detail, dict):
        return [
            {"field": field, "message": " ".join(str(message) for message in messages)}
            for field, messages in detail.items()
        ]
    return [{"message": str(message)} for message in detail]


def not_found_view(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """404 in the API's JSON shape, or as a page where a browser asked for a page (a
    mistyped or cut-short link to a request's page, say)."""
    if wants_page(request):
        return render(request, "processing/not_found.html", {"path": request.path}, status=404)
    return JsonResponse(error_body("Not found.", "not_found"), status=404)


def bad_request_view(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """400 for what Django refuses before any view (a Host not in ALLOWED_HOSTS, say): in
    the API's JSON shape on its paths, where it was an HTML page."""
    if request.path.startswith("/api/"):
        message = "Bad request: the request could not be accepted as sent"
        if isinstance(exception, DisallowedHost):
            message += " (its Host header is not one this service answers)"
        return JsonResponse(error_body(message + ".", "invalid_input"), status=400)
    return defaults.bad_request(request, exception or Exception())


def csrf_failure_view(request: HttpRequest, reason: str = "") -> HttpResponse:
    """403 for a page's form that Django's CSRF check refused (an API route answers its own
    JSON): the site's page, saying what to do. Django's own styled itself inline, which
    the pages' content policy refuses, and spoke to developers."""
    return render(request, "processing/csrf_failure.html", status=403)


# Written out, not rendered: whatever failed may fail again in a template.
SERVER_ERROR_PAGE = (
    '<!doctype html><html lang="en"><meta charset="utf-8"><title>Something went wrong</title>'
    "<h1>Something went wrong</h1><p>The page could not be shown: the error is logged on "
    'our side. Try again in a moment, or go back to <a href="/">your requests</a>.</p></html>'
)


def server_error_view(request: HttpRequest) -> HttpResponse:
    """500 in the API's JSON shape, or as a page where a browser asked for a page."""
    if wants_page(request):
        return HttpResponse(SERVER_ERROR_PAGE, status=500)
    return JsonResponse(error_body("Internal server error.", "server_error"), status=500)
