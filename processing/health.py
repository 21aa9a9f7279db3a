"""/healthz for load balancers (readiness): 200 when the database answers with every
migration of this release applied and the broker answers, else 503. /livez for restarts
(liveness): 200 whenever the process answers at all."""

import logging

from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, JsonResponse

from config.celery import app

logger = logging.getLogger(__name__)


def healthz(request: HttpRequest) -> JsonResponse:
    checks = {"database": _database(), "broker": _broker()}
    if checks["database"] == "ok":
        checks["database"] = _schema()
    healthy = all(result == "ok" for result in checks.values())
    response = JsonResponse(
        {"status": "ok" if healthy else "unavailable", **checks}, status=200 if healthy else 503
    )
    # Not Django's "Service Unavailable: /healthz" at ERROR for every probe, naming no
    # reason: _failing logs a check's failure, with its reason, when it starts and ends.
    response._has_been_logged = True  # type: ignore[attr-defined]
    return response


def livez(request: HttpRequest) -> JsonResponse:
    """Asks nothing of the database or the broker: a liveness probe on /healthz restarts
    every web process when Redis or PostgreSQL is away, which mends nothing and drops the
    status and download requests the web could still answer."""
    return JsonResponse({"status": "ok"})


# What each check of this process last found failing, and why: logged once as it starts
# failing and once as it answers again, however often the probes come.
_failing: dict[str, str] = {}


def _checked(name: str, error: BaseException | None) -> str:
    """The check's answer: "ok", or the error's kind (the reason, which may name hosts
    and ports, goes to the log, not to whoever can reach /healthz)."""
    reason = f"{type(error).__name__}: {error}" if error else ""
    if reason and _failing.get(name) != reason:
        logger.warning("healthz: the %s is not answering: %s", name, reason)
    elif not reason and name in _failing:
        logger.info("healthz: the %s answers again", name)
    if reason:
        _failing[name] = reason
    else:
        _failing.pop(name, None)
    return f"error: {type(error).__name__}" if error else "ok"


def _database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as error:
        return _checked("database", error)
    return _checked("database", None)


# Once every migration has been seen applied, this process asks no more: they stay so.
_schema_current = False


def _schema() -> str:
    """Whether the database holds every migration this code needs: a release started
    before `migrate` was ready while every query of its new columns failed with 500."""
    global _schema_current
    if _schema_current:
        return "ok"
    try:
        executor = MigrationExecutor(connection)
        missing = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except Exception as error:
        return f"error: {type(error).__name__}"
    if missing:
        return f"error: {len(missing)} migrations not applied (python manage.py migrate)"
    _schema_current = True
    return "ok"


def _broker() -> str:
    try:
        with app.connection_for_write() as broker:
            broker.ensure_connection(max_retries=1, timeout=2)
    except Exception as error:
        return _checked("broker", error)
    return _checked("broker", None)
