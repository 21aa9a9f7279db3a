"""System checks of the environment (`manage.py check`, every management command as it
starts, and the web server, a worker and beat in their logs as they start): a variable
named like a setting that no setting reads is, most likely, a setting misspelt.
IMAGE_QUALTY=30 was ignored in silence, and every image went on at quality 50."""

import difflib
import logging
import os
import re
from typing import Any

from django.core.checks import CheckMessage, register
from django.core.checks import Warning as CheckWarning

from config.env import NAMES_READ

logger = logging.getLogger(__name__)

# Settings read where the settings module is not loaded: gunicorn's configuration,
# config/logs.py (before it), the Procfile.
READ_ELSEWHERE = frozenset(
    {
        "WEB_CONCURRENCY",
        "WEB_THREADS",
        "WEB_TIMEOUT",
        "WEB_HEADER_TIMEOUT",
        "WEB_BODY_TIMEOUT",
        "LOG_FORMAT",
        "REQUESTS_WORKER_CONCURRENCY",
        "WEBHOOKS_WORKER_CONCURRENCY",
    }
)
# Read by the settings only where another setting asks for them: unread here, and still
# no misspelling.
READ_SOMETIMES = frozenset(
    {
        "DATABASE_CONNECT_TIMEOUT",  # with a PostgreSQL DATABASE_URL
        "BROKER_DIR",  # with the filesystem broker
        # with S3_BUCKET
        "S3_ENDPOINT_URL",
        "S3_REGION",
        "S3_ACCESS_KEY_ID",
        "S3_SECRET_ACCESS_KEY",
        "S3_ADDRESSING_STYLE",
        "S3_URL_EXPIRY",
        "S3_PUBLIC_BASE_URL",
    }
)
# Named like the settings, and read by the programs the service runs: set on purpose,
# never a misspelling (and no prefix of ours).
READ_BY_OTHERS = frozenset(
    {
        "REQUESTS_CA_BUNDLE",  # the requests library's
        # Celery's own
        "CELERY_BROKER_READ_URL",
        "CELERY_BROKER_WRITE_URL",
        "CELERY_CONFIG_MODULE",
        "CELERY_CUSTOM_WORKER_POOL",
        "CELERY_LOADER",
        "CELERY_LOG_FILE",
        "CELERY_LOG_LEVEL",
        "CELERY_LOG_REDIRECT",
        "CELERY_LOG_REDIRECT_LEVEL",
        "CELERY_RDB_HOST",
        "CELERY_RDB_PORT",
        "CELERY_RESULT_BACKEND",
        "CELERY_SKIP_CHECKS",
        "CELERY_TRACE_APP",
        # prometheus_client's own
        "PROMETHEUS_DISABLE_CREATED_SERIES",
        "PROMETHEUS_LEGACY_NAME_VALIDATION",
        # boto3's own, near our S3_ ones
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
    }
)
# Kubernetes' service links, in every pod unless the pod's enableServiceLinks is off: for
# a Service named web (as the Procfile names its processes) WEB_SERVICE_HOST,
# WEB_SERVICE_PORT, WEB_PORT=tcp://10.0.0.1:8000, WEB_PORT_8000_TCP_ADDR, ..., which every
# process's log took for misspelt WEBHOOK_ settings.
KUBERNETES_LINK = re.compile(
    r"[A-Z0-9_]+_(?:SERVICE_(?:HOST|PORT(?:_[A-Z0-9_]+)?)|PORT_[0-9]+_(?:TCP|UDP|SCTP)"
    r"(?:_(?:ADDR|PORT|PROTO))?)"
)
KUBERNETES_PORT_VALUE = re.compile(r"(?:tcp|udp|sctp)://")


def _kubernetes_link(name: str, value: str) -> bool:
    return KUBERNETES_LINK.fullmatch(name) is not None or (
        name.endswith("_PORT") and KUBERNETES_PORT_VALUE.match(value) is not None
    )


# How near a variable of another first word must be to a setting to be taken for it
# misspelt (difflib's ratio): METRIC_TOKEN 0.96 to METRICS_TOKEN, IMGAE_QUALITY 0.92, while
# PGHOST, REDIS_URL or SSL_CERT_FILE are near nothing.
NEAR_ENOUGH = 0.9


@register()
def unread_variables_check(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """A warning for each variable that starts as the settings do (IMAGE_, WEBHOOK_, …), or
    is nearly a setting's name, and that nothing reads, naming the setting nearest to it."""
    known = NAMES_READ | READ_ELSEWHERE | READ_SOMETIMES
    # The settings' first words, not a list of our own: PATH, HOME or PGHOST are not ours.
    prefixes = tuple({name.split("_")[0] + "_" for name in known if "_" in name})
    warnings: list[CheckMessage] = []
    for name in sorted(os.environ):
        if name in known or name in READ_BY_OTHERS or _kubernetes_link(name, os.environ[name]):
            continue
        if name.startswith(prefixes):
            nearest = difflib.get_close_matches(name, known, n=1)
        # Another first word only where it is nearly a setting's name: METRIC_TOKEN=x left
        # /metrics open to anyone, in silence.
        elif not (nearest := difflib.get_close_matches(name, known, n=1, cutoff=NEAR_ENOUGH)):
            continue
        guess = f": did you mean {nearest[0]}?" if nearest else ", and no setting is near it."
        warnings.append(
            CheckWarning(
                f"{name} is not a setting{guess}",
                hint="Every setting is listed in README.md's Settings table; this one is ignored.",
                id="config.W001",
            )
        )
    return warnings


def unread_variables_logged() -> None:
    """The check's warnings in the log, for the processes that run no management command
    (the web server, workers, beat): on a host of workers alone, a misspelt setting was
    ignored in silence, as `manage.py migrate` ran elsewhere."""
    for warning in unread_variables_check():
        logger.warning("%s (%s) %s", warning.msg, warning.id, warning.hint)
