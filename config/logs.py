"""Logs: one JSON object per line in production, plain text in development, each line
with the id of the request (the upload) it is about.

The id travels in a context variable: the web's access log middleware takes it from the
URL, the upload view once it has made one, and workers while they work on a request.
"""

import contextlib
import contextvars
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponse

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_ATTRIBUTES = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


# LOG_LEVEL's values, read by settings and by gunicorn's configuration alike.
LOG_LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


def log_format() -> str:
    """LOG_FORMAT, or json when DATABASE_URL says this is a deployment, else plain."""
    chosen = os.environ.get("LOG_FORMAT", "").strip().lower()
    if chosen:
        return chosen
    return "json" if os.environ.get("DATABASE_URL") else "plain"


@contextlib.contextmanager
def request_id_bound(request_id: object) -> Iterator[None]:
    """Every line logged inside carries request_id."""
    token = request_id_var.set(str(request_id))
    try:
        yield
    finally:
        request_id_var.reset(token)


class RequestIdFilter(logging.Filter):
    """Puts the current request id on every record (`request_id`, and `request_tag` for
    the plain format), unless the call passed its own."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = (
            getattr(record, "request_id", "") or request_id_var.get() or _celery_request_id(record)
        )
        record.request_id = request_id
        record.request_tag = f" [{request_id}]" if request_id else ""
        return True


# Django's loggers of requests a client got wrong (SuspiciousOperation's subclasses
# raised on what a request holds), as against a suspicious file path, which may be ours.
CLIENT_FAULT_LOGGERS = frozenset(
    f"django.security.{name}"
    for name in (
        "DisallowedHost",
        "DisallowedRedirect",
        "RequestDataTooBig",
        "TooManyFieldsSent",
        "TooManyFilesSent",
        "SuspiciousMultipartForm",
    )
)


class ClientFaultFilter(logging.Filter):
    """Django logs what a client got wrong in a way it calls suspicious (a Host header not
    in ALLOWED_HOSTS, too many form fields) as an ERROR with a traceback: scanners send
    them by the thousand, and each buried the service's own errors. Here a WARNING, its
    message naming what was wrong, without the traceback, which only shows Django. (On the
    console handler: Django's own handlers, mail to ADMINS and DEBUG's console, see the
    record first, as Django made it.)"""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name in CLIENT_FAULT_LOGGERS and record.levelno == logging.ERROR:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info = record.exc_text = None
        return True


class ResponseLoggedFilter(logging.Filter):
    """Django's django.request line of every answer of 400 and above ("Not Found: /api/…")
    left out: the access log's line says the same with the request id, the error's code
    and the account, and the API's own errors log their cause (processing/exceptions.py),
    so each refused call was two lines, a 503 two ERRORs. Kept where Django caught an
    exception of a page's that became a 500: its traceback is there alone. (On the
    console handler, as ClientFaultFilter, so that mail to ADMINS is as Django sends it.)"""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != "django.request":
            return True
        return record.levelno >= logging.ERROR and record.exc_info is not None


# A one-time login link's token, in any line that names its path: Django's own lines
# ("Forbidden (CSRF cookie not set.): /login/link/…/", "Gone: …") and the request they
# carry. Whoever reads the logs may not use the link.
LOGIN_LINK_TOKEN = re.compile(r"(/login/link/)[^/\s'\"]+")


class SecretPathFilter(logging.Filter):
    """Takes the token out of every line that names a login link's path."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "/login/link/" in message:
            record.msg, record.args = LOGIN_LINK_TOKEN.sub(r"\1<token>", message), ()
        request = getattr(record, "request", None)
        if request is not None and "/login/link/" in str(request):
            record.request = LOGIN_LINK_TOKEN.sub(r"\1<token>", str(request))
        return True


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _celery_request_id(record: logging.LogRecord) -> str:
    """The request id of Celery's own task lines ("received", "succeeded"), which are
    logged outside the task: the one among the arguments of the tasks that take one."""
    data = getattr(record, "data", None)
    if not isinstance(data, dict) or data.get("name") not in REQUEST_TASKS:
        return ""
    found = _UUID.search(str(data.get("args", "")))
    return found.group() if found else ""


REQUEST_TASKS = {
    "processing.images_process",  # (image ids, request id)
    "processing.request_start",
    "processing.request_finalize",
    "processing.webhook_send",
}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key in _RECORD_ATTRIBUTES or key == "request_tag" or value in ("", None):
                continue
            entry[key] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def logging_config(*, level: str, fmt: str) -> dict[str, Any]:
    """The dictConfig for web and worker processes (settings.LOGGING)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "request_id": {"()": "config.logs.RequestIdFilter"},
            "client_fault": {"()": "config.logs.ClientFaultFilter"},
            "response_logged": {"()": "config.logs.ResponseLoggedFilter"},
            "secret_path": {"()": "config.logs.SecretPathFilter"},
        },
        "formatters": {
            "plain": {"format": "%(asctime)s %(levelname)s %(name)s%(request_tag)s %(message)s"},
            "json": {"()": "config.logs.JsonFormatter"},
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "json" if fmt == "json" else "plain",
                "filters": ["request_id", "client_fault", "response_logged", "secret_path"],
            }
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "django.db.backends": {"level": "INFO"},
            # billiard's, which says a pool process died ("exited with 'signal 9'"): it
            # propagates nowhere, and without a handler of its own the line was printed
            # bare by Python's last resort, outside the log's format.
            "multiprocessing": {"handlers": ["console"], "level": "WARNING", "propagate": False},
        },
    }


QUIET_PATHS = {"/healthz", "/livez", "/metrics"}


class AccessLogMiddleware:
    """One line per HTTP request (method, path, status, time), with the request id when
    the URL names one, an error's code and the account the request acted for; it replaces
    gunicorn's access log so that both formats agree."""

    logger = logging.getLogger("access")

    def __init__(self, get_response: Callable[["HttpRequest"], "HttpResponse"]) -> None:
        self.get_response = get_response

    def __call__(self, request: "HttpRequest") -> "HttpResponse":
        started = time.monotonic()
        token = request_id_var.set("")
        try:
            response = self.get_response(request)
            # Probes and scrapes come every few seconds; they are there at DEBUG, failing
            # too: a failing check is logged once with its reason (processing/health.py).
            quiet = request.path in QUIET_PATHS
            path = getattr(request, "logged_path", request.path)
            code, account = _error_code(response), _account_name(request)
            self.logger.log(
                logging.DEBUG if quiet else logging.INFO,
                "%s %s %d%s%s",
                request.method,
                path,
                response.status_code,
                f" {code}" if code else "",
                f" account={account}" if account else "",
                extra={
                    "method": request.method,
                    "path": path,
                    "status": response.status_code,
                    "code": code,
                    "account": account,
                    "duration_ms": round((time.monotonic() - started) * 1000, 1),
                },
            )
            return response
        finally:
            request_id_var.reset(token)

    def process_view(
        self,
        request: "HttpRequest",
        view: Callable[..., "HttpResponse"],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        if kwargs.get("request_id"):
            request_id_var.set(str(kwargs["request_id"]))
        if kwargs.get("token"):  # a one-time login link's: whoever reads the log may not use it
            request.logged_path = request.path.replace(kwargs["token"], "<token>")  # type: ignore[attr-defined]


def _error_code(response: "HttpResponse") -> str:
    """The code an API error answered with (its body's `code`: invalid_csv, not_found…)."""
    data = getattr(response, "data", None)
    if response.status_code >= 400 and isinstance(data, dict):
        code = data.get("code")
        return code if isinstance(code, str) else ""
    return ""


def _account_name(request: "HttpRequest") -> str:
    """The account the request acted for, as far as its view found out: an API key's, or
    a signed-in person's once the view read the session (never read here: a 503 for a
    database away would have to ask it)."""
    from django.utils.functional import SimpleLazyObject, empty

    from accounts.authentication import account_known  # the app registry is ready by now

    user = vars(request).get("user")
    if isinstance(user, SimpleLazyObject):
        # Django's lazy user: whether the session was read yet is known only from inside.
        wrapped = user._wrapped
        user = None if wrapped is empty else wrapped
    account = account_known(user)
    return account.name if account is not None else ""
