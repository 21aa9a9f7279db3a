"""gunicorn's settings, read from the environment like the rest (README's table)."""

import os

from config.logs import log_format, logging_config

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"  # noqa: S104
# gunicorn's own advice: two workers per core, plus one.
workers = int(os.environ.get("WEB_CONCURRENCY") or (os.cpu_count() or 1) * 2 + 1)
# Threads per worker for requests whose headers have all arrived (config/web_worker.py
# gathers headers without one, so slow clients hold none).
worker_class = "config.web_worker.HeadersFirstWorker"
threads = int(os.environ.get("WEB_THREADS") or 4)
timeout = int(os.environ.get("WEB_TIMEOUT", "60"))
# Requests are logged by Django (config.logs.AccessLogMiddleware), with the request id.
accesslog = None
if log_format() == "json":
    # gunicorn's own lines (start, worker boots, timeouts) as JSON too, through the same
    # configuration as Django's; gunicorn does not let gunicorn.error propagate.
    logconfig_dict = logging_config(level="INFO", fmt="json")
    logconfig_dict["loggers"]["gunicorn.error"] = {
        "level": "INFO",
        "handlers": ["console"],
        "propagate": False,
    }


def post_worker_init(worker: object) -> None:
    """Import every view as each worker starts, not during its first requests: Django
    loads its URL patterns lazily, and that cost each new worker about 100 ms of CPU
    (bench/run.py's CPU line showed gunicorn at 14% of a short run, 6% of a long one)."""
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018  (the property imports the views)
