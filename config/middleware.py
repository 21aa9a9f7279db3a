"""Django's CommonMiddleware, with a redirect that keeps the method; the probes answered
whatever the Host header; HEAD answered without a body, and a 304 without a length;
answers about an account kept out of caches; every page under the site's content policy;
a page asked for while the database is away, 503."""

from collections.abc import Callable

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, HttpResponsePermanentRedirect
from django.middleware.common import CommonMiddleware
from django.shortcuts import render
from django.utils.http import escape_leading_slashes

from processing.exceptions import DATABASE_RETRY_AFTER_SECONDS, database_unavailable_logged
from processing.health import healthz, livez
from processing.metrics import metrics_view

PROBES: dict[str, Callable[[HttpRequest], HttpResponse]] = {
    "/healthz": healthz,
    "/livez": livez,
    "/metrics": metrics_view,
}


class PermanentRedirectKeepingMethod(HttpResponsePermanentRedirect):
    """308: the client asks again with the same method and body (301 turns a POST into a
    GET, which an API route then answers 405, "Method GET not allowed")."""

    status_code = 308


class CommonKeepingMethodMiddleware(CommonMiddleware):
    """A URL without its trailing slash (POST /api/upload) is sent on to the one with it
    by a 308, for every method: Django's own sends a 301, and refuses a POST outright when
    DEBUG is on, since a 301 cannot carry it."""

    response_redirect_class = PermanentRedirectKeepingMethod

    def get_full_path_with_slash(self, request: HttpRequest) -> str:
        return escape_leading_slashes(request.get_full_path(force_append_slash=True))


class NotModifiedWithoutLengthMiddleware:
    """A 304 without Content-Length: CommonMiddleware (and HeadWithoutBodyMiddleware for a
    HEAD) gave it its empty body's, 0, where RFC 9110 (8.6) allows only the length of the
    200 it stands for. gunicorn frames a 304 without one as an answer without a body, and
    keeps the connection."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.status_code == 304:
            del response["Content-Length"]
        return response


class HeadWithoutBodyMiddleware:
    """A HEAD answered with the GET's headers and no body. Django writes the body anyway,
    leaving it to the server to drop: gunicorn does, with a warning in the log for each,
    and a file answer was read to be thrown away. Link checkers and CDNs send HEADs."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if request.method != "HEAD":
            return response
        if response.streaming:
            # A file's answer names its length already; the file is closed with the answer.
            response.streaming_content = []  # type: ignore[attr-defined]
        else:
            if not response.has_header("Content-Length"):
                response["Content-Length"] = str(len(response.content))
            response.content = b""
        return response


class ProbesAnyHostMiddleware:
    """/healthz, /livez and /metrics answered whatever the Host header, and over plain HTTP
    where SECURE_SSL_REDIRECT is on. Load balancers, Kubernetes' probes and Prometheus call
    a process by its address (Host: 10.0.3.7:8000), which ALLOWED_HOSTS rightly leaves out:
    CommonMiddleware answered them 400, and every process looked down. Their answers
    name no host, so no Host header can poison them; every other path is checked as
    before."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        probe = PROBES.get(request.path_info)
        if probe is not None and request.method in {"GET", "HEAD"}:
            return probe(request)
        return self.get_response(request)


class PrivateAnswersMiddleware:
    """Every answer that says no otherwise is `Cache-Control: private, no-store`: the API's
    and the page's answers name an account's products, and with S3 signed links to its
    outputs. Without it a browser kept them (its back button showed a catalogue after
    logout) and a proxy between may have. Output images and static files keep theirs:
    public, and named so that they never change."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        public = request.path_info.startswith((settings.MEDIA_URL, settings.STATIC_URL))
        if not public and not response.has_header("Cache-Control"):
            response["Cache-Control"] = "private, no-store"
        return response


# Scripts and styles only from this site; images from anywhere, since "before" thumbnails
# are the shop's own URLs.
PAGE_CONTENT_POLICY = (
    "default-src 'self'; img-src * data:; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
# Pages that keep Django's headers alone: Swagger UI starts from an inline script, and
# the admin's templates set inline styles.
PAGES_WITHOUT_POLICY = ("/api/docs/", "/admin/")


class PageHeadersMiddleware:
    """Every HTML page of ours is under PAGE_CONTENT_POLICY. Set page by page before, the
    login, one-time link and error pages had none. (`Referrer-Policy: same-origin` is
    Django's SecurityMiddleware's, on every answer.)"""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        page = response.get("Content-Type", "").startswith("text/html")
        # Django's error pages for developers (DEBUG on) style themselves inline.
        technical = settings.DEBUG and response.status_code >= 400
        if page and not technical and not request.path_info.startswith(PAGES_WITHOUT_POLICY):
            response.setdefault("Content-Security-Policy", PAGE_CONTENT_POLICY)
        return response


class DatabaseAwayPagesMiddleware:
    """A page asked for while the database is away (restarting, failing over): 503 with
    Retry-After, as the API answers, and a page that says so. It was a 500, in the API's
    JSON, and a traceback in the log for each."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        if request.path.startswith("/api/"):
            return None  # the API's own handler answers (processing/exceptions.py)
        database_unavailable_logged(exception)
        # Rendered as nobody's, and without the messages: either would ask the database.
        response = render(
            request,
            "processing/unavailable.html",
            {"user": AnonymousUser(), "messages": []},
            status=503,
        )
        response["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
        return response
