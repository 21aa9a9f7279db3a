"""/healthz for load balancers (readiness): 200 when the database answers with every
migration of this release applied and the broker answers, else 503. /livez for restarts
(liveness): 200 whenever the process answers at all."""

from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, JsonResponse

from config.celery import app


def healthz(request: HttpRequest) -> JsonResponse:
    checks = {"database": _database(), "broker": _broker()}
    if checks["database"] == "ok":
        checks["database"] = _schema()
    healthy = all(result == "ok" for result in checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "unavailable", **checks}, status=200 if healthy else 503
    )


def livez(request: HttpRequest) -> JsonResponse:
    """Asks nothing of the database or the broker: a liveness probe on /healthz restarts
    every web process when Redis or PostgreSQL is away, which mends nothing and drops the
    status and download requests the web could still answer."""
    return JsonResponse({"status": "ok"})


def _database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as error:
        return f"error: {type(error).__name__}"
    return "ok"


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
        return f"error: {type(error).__name__}"
    return "ok"
