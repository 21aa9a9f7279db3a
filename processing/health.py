"""/healthz for load balancers (readiness): 200 when the database and the broker answer,
else 503. /livez for restarts (liveness): 200 whenever the process answers at all."""

from django.db import connection
from django.http import HttpRequest, JsonResponse

from config.celery import app


def healthz(request: HttpRequest) -> JsonResponse:
    checks = {"database": _database(), "broker": _broker()}
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


def _broker() -> str:
    try:
        with app.connection_for_write() as broker:
            broker.ensure_connection(max_retries=1, timeout=2)
    except Exception as error:
        return f"error: {type(error).__name__}"
    return "ok"
