"""/healthz for load balancers (readiness): 200 when the database answers with every
migration of this release applied, the broker answers and the output storage takes a
file, else 503. /livez for restarts (liveness): 200 whenever the process answers at all."""

import logging
import os
import shutil
import socket
import threading
from dataclasses import dataclass
from typing import Final

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, default_storage
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.recorder import MigrationRecorder
from django.http import HttpRequest, JsonResponse

from config.celery import app
from processing.outcomes import storage_no_room

logger = logging.getLogger(__name__)


def healthz(request: HttpRequest) -> JsonResponse:
    checks = {"database": _database(), "broker": _broker()}
    if isinstance(default_storage, FileSystemStorage):
        checks["storage"] = _storage(default_storage)
    if checks["database"] == OK:
        checks["database"] = _schema()
    for name, check in checks.items():
        _logged_if_changed(name, check)
    healthy = all(check == OK for check in checks.values())
    response = JsonResponse(
        {"status": "ok" if healthy else "unavailable"}
        | {name: check.answer for name, check in checks.items()},
        status=200 if healthy else 503,
    )
    # Not Django's "Service Unavailable: /healthz" at ERROR for every probe, naming no
    # reason: each check's failure is logged with its reason as it starts and ends.
    response._has_been_logged = True  # type: ignore[attr-defined]
    return response


def livez(request: HttpRequest) -> JsonResponse:
    """Asks nothing of the database or the broker: a liveness probe on /healthz restarts
    every web process when Redis or PostgreSQL is away, which mends nothing and drops the
    status and download requests the web could still answer."""
    return JsonResponse({"status": "ok"})


@dataclass(frozen=True)
class Check:
    answer: str  # the body's: "ok", or the error's kind (whoever can reach /healthz reads it)
    reason: str = ""  # the log's: what failed, which may name hosts and ports


OK: Final = Check("ok")


def _failed(error: Exception) -> Check:
    return Check(f"error: {type(error).__name__}", f"{type(error).__name__}: {error}")


# What each check of this process last answered: a failure is logged once as it starts
# (and again if its kind changes), and once as it ends, however often the probes come.
_last: dict[str, str] = {}


def _logged_if_changed(name: str, check: Check) -> None:
    before = _last.get(name, OK.answer)
    _last[name] = check.answer
    if check.answer != before and check != OK:
        logger.warning("healthz: the %s check fails: %s", name, check.reason)
    elif check.answer != before:
        logger.info("healthz: the %s check passes again", name)


def _database() -> Check:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as error:
        return _failed(error)
    return OK


# How many migrations the database had applied when this process last found none missing:
# while that count stays, one query answers (the full check reads every migration file).
_applied_when_current: int | None = None


def _schema() -> Check:
    """Whether the database holds every migration this code needs: a release started
    before `migrate` was ready while every query of its new columns failed with 500.
    Asked again when the count of applied migrations changes: a database restored from an
    older backup, or migrated back, was still told current by a process that had once
    found it so."""
    global _applied_when_current
    try:
        recorder = MigrationRecorder(connection)
        # (A database never migrated has no recorder's table to count: not asked then.)
        if _applied_when_current is not None:
            if recorder.migration_qs.count() == _applied_when_current:
                return OK
            _applied_when_current = None
        executor = MigrationExecutor(connection)
        missing = executor.migration_plan(executor.loader.graph.leaf_nodes())
        if not missing:
            _applied_when_current = recorder.migration_qs.count()
    except Exception as error:
        return _failed(error)
    if missing:
        answer = f"{len(missing)} migrations not applied (python manage.py migrate)"
        return Check(f"error: {answer}", answer)
    return OK


# A broker check waits this long for each answer: a Redis that hangs held the probe's web
# thread for good (a connection's timeout is not its reads').
BROKER_CHECK_SECONDS = 2


def _broker() -> Check:
    options = {
        **app.conf.broker_transport_options,
        "socket_timeout": BROKER_CHECK_SECONDS,
        "socket_connect_timeout": BROKER_CHECK_SECONDS,
    }
    try:
        with app.connection_for_write(transport_options=options) as broker:
            broker.ensure_connection(max_retries=1, timeout=BROKER_CHECK_SECONDS)
    except Exception as error:
        return _failed(error)
    return OK


def _storage(storage: FileSystemStorage) -> Check:
    """Whether STORAGE_DIR takes a file and has room: full or unwritable, the workers
    sharing it failed every image with storage_full or storage_error while /healthz
    answered 200. (A bucket is not asked: a request to it on every probe costs money, and
    a bucket is never full.)"""
    probe = f"probes/web-{socket.gethostname()}-{os.getpid()}-{threading.get_ident()}"
    try:
        storage.delete(storage.save(probe, ContentFile(b"probe")))
        free = shutil.disk_usage(storage.location).free
    except OSError as error:
        # Its words, not its path: whoever reaches /healthz reads the answer.
        kind = "full: " if storage_no_room(error) else ""
        return Check(
            f"error: {kind}{error.strerror or type(error).__name__}",
            f"{type(error).__name__}: {error}",
        )
    if free < settings.STORAGE_MIN_FREE_BYTES:
        # The count in the log alone: an answer that changed at every probe was logged so.
        return Check(
            "error: full: less than STORAGE_MIN_FREE_BYTES free",
            f"{free:,} bytes free in {storage.location}, less than STORAGE_MIN_FREE_BYTES "
            f"({settings.STORAGE_MIN_FREE_BYTES:,})",
        )
    return OK
