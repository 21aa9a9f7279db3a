"""Prometheus metrics, served at /metrics.

Web and worker processes are many (gunicorn workers, Celery's pool), so every process
writes its counters to files in PROMETHEUS_MULTIPROC_DIR (settings set it before this
module is imported) and /metrics adds up the files of its host. Queue depth and the work
still waiting are read from the broker and the database when scraped.
"""

import errno
import hmac
import logging
import threading
from collections.abc import Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from kombu.exceptions import ChannelError
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    make_wsgi_app,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from config.celery import app
from processing import selectors
from processing.exceptions import error_body
from processing.models import ReasonCode
from processing.queue import QUEUES

logger = logging.getLogger(__name__)

UPLOADS = Counter(
    "imgsvc_uploads", "CSV uploads by outcome: accepted, or the error code.", ["outcome"]
)
IMAGES = Counter(
    "imgsvc_images_processed",
    "Images that ended, by outcome (succeeded, failed, cancelled) and reason code.",
    ["outcome", "reason"],
)
IMAGES_REUSED = Counter(
    "imgsvc_images_reused",
    "Images whose source had not changed, given an earlier request's output: no encode.",
)
IMAGE_RETRIES = Counter(
    "imgsvc_image_retries", "Image downloads queued again after a transient error.", ["reason"]
)
BYTES_IN = Counter("imgsvc_image_input_bytes", "Bytes of images downloaded.")
BYTES_OUT = Counter("imgsvc_image_output_bytes", "Bytes of compressed images stored.")
STAGE_SECONDS = Histogram(
    "imgsvc_image_stage_seconds",
    "Time per image and stage: fetch (download), encode (decode and re-encode), store.",
    ["stage"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
REQUESTS_FINISHED = Counter(
    "imgsvc_requests_finished", "Requests that finished, by final status.", ["status"]
)
REQUEST_SECONDS = Histogram(
    "imgsvc_request_seconds",
    "Time from upload to finished, per request.",
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200),
)
WEBHOOK_ATTEMPTS = Counter(
    "imgsvc_webhook_attempts", "Webhook delivery attempts by outcome.", ["outcome"]
)

# Every reason is shown from the start, at 0, so that a rate over a reason that has not
# happened yet in this process is 0 rather than absent.
for _reason in ReasonCode:
    IMAGES.labels("failed", _reason.value)
IMAGES.labels("succeeded", "")


class BacklogCollector(Collector):
    """What is waiting, read when scraped: messages per queue, and unfinished work."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily(
            "imgsvc_queue_messages", "Messages waiting in each broker queue.", labels=["queue"]
        )
        try:
            with app.connection_for_read() as connection:
                channel: Any = connection.default_channel  # kombu's stubs lack queues
                for name in QUEUES:
                    depth.add_metric([name], _messages_waiting(channel, name))
        except Exception as error:
            # The broker being away is what /healthz reports; the rest still answers.
            logger.warning("queue depth unavailable: %r", error)
        yield depth

        try:
            backlog = selectors.backlog()
        except DatabaseError as error:
            # Likewise the database: the counters are what an outage needs seen most.
            logger.warning("backlog unavailable: %r", error)
            return
        yield GaugeMetricFamily(
            "imgsvc_requests_unfinished", "Requests not finished yet.", value=backlog.requests
        )
        yield GaugeMetricFamily(
            "imgsvc_images_pending",
            "Images of unfinished requests not ended yet.",
            value=backlog.images,
        )
        yield GaugeMetricFamily(
            "imgsvc_images_unrenewed",
            "Images whose worker stopped renewing its hold on them (most likely lost): taken "
            "back by the sweep once WORK_LEASE_SECONDS has passed.",
            value=backlog.images_unrenewed,
        )


def _messages_waiting(channel: Any, queue: str) -> int:
    """Messages in queue; 0 for one the broker does not know yet (on Redis, a queue is a
    key that exists only while it holds messages)."""
    try:
        return int(channel.queue_declare(queue=queue, passive=True).message_count)
    except ChannelError:
        return 0


def metrics_registry() -> CollectorRegistry:
    """Every process's metrics on this host, plus the backlog read now."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    registry.register(BacklogCollector())
    return registry


def metrics_authorised(authorization: str) -> bool:
    """With METRICS_TOKEN set, only `Authorization: Bearer <METRICS_TOKEN>` may scrape."""
    token = settings.METRICS_TOKEN
    if not token:
        return True
    return hmac.compare_digest(authorization.encode(), f"Bearer {token}".encode())


def metrics_view(request: HttpRequest) -> HttpResponse:
    if not metrics_authorised(request.META.get("HTTP_AUTHORIZATION", "")):
        refused = JsonResponse(
            error_body("Authentication required.", "not_authenticated"),
            status=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
        # A scraper without the token asks every few seconds: its refusal is in the access
        # log at DEBUG, as every probe's answer is, not Django's WARNING for each.
        refused._has_been_logged = True  # type: ignore[attr-defined]
        return refused
    return HttpResponse(generate_latest(metrics_registry()), content_type=CONTENT_TYPE_LATEST)


def metrics_serve(*, port: int) -> None:
    """Serve this host's metrics on port, from a thread (for worker-only hosts), under the
    same METRICS_TOKEN rule as /metrics."""
    exposition = make_wsgi_app(metrics_registry())

    def guarded(environ: dict[str, Any], start_response: Any) -> Any:
        if not metrics_authorised(environ.get("HTTP_AUTHORIZATION", "")):
            start_response("401 Unauthorized", [("WWW-Authenticate", "Bearer")])
            return [b"Authentication required.\n"]
        return exposition(environ, start_response)

    try:
        every_address = "0.0.0.0"  # noqa: S104  (scraped from other hosts)
        server = make_server(
            every_address, port, guarded, _ThreadingServer, handler_class=_QuietHandler
        )
    except OSError as error:
        if error.errno != errno.EADDRINUSE:
            raise
        # The Procfile's images and requests workers on one host, say: the one that has the
        # port serves the host's counts (one shared folder), this one's included.
        logger.warning("metrics: port %d is taken (another worker of this host?)", port)
        return
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    logger.info("metrics at http://0.0.0.0:%d/metrics", port)


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass
