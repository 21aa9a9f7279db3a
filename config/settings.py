"""The one settings module. Every value comes from the environment (see README's table).

The defaults run a fresh checkout on one machine: SQLite, kombu's filesystem broker and a
local storage folder. Production sets DATABASE_URL, CELERY_BROKER_URL, SECRET_KEY and
PUBLIC_BASE_URL.
"""

import os
import secrets
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dj_database_url
import prometheus_client.values
from django.core.exceptions import ImproperlyConfigured
from kombu.transport import TRANSPORT_ALIASES

from config import checks  # noqa: F401  (registers the environment's system check)
from config.env import (
    env,
    env_base_url,
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_networks,
    env_origins,
    env_ports,
    env_proxies,
    env_rate,
    env_seconds,
    env_service_url,
    env_url,
    redacted,
)
from config.logs import LOG_LEVELS, log_format, logging_config
from imaging.encode import QualityMode
from imaging.metadata import MetadataMode
from imaging.quality import DEFAULT_MAX_TRIES, DEFAULT_TARGET_SCORES, QualityTarget

BASE_DIR = Path(__file__).resolve().parent.parent


# Where the embedded default keeps its SQLite file, broker folders and dev secret.
VAR_DIR = Path(env("VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", False)
EMBEDDED = not env("DATABASE_URL")


def _secret_key() -> str:
    key = env("SECRET_KEY")
    if key:
        return key
    if not EMBEDDED:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. A deployment with DATABASE_URL must set SECRET_KEY "
            "to a long random string shared by every web and worker process."
        )
    # One machine, no configuration: a random key kept beside the SQLite file, readable by
    # this user alone. Written aside and linked into place: the web and the worker start
    # together, and the one that loses the race reads the winner's key, never half of it.
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        _var_dir_make()
        aside = VAR_DIR / f".secret_key.{os.getpid()}"
        descriptor = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as written:
            written.write(secrets.token_urlsafe(50))
        try:
            os.link(aside, key_file)
        except FileExistsError:
            pass
        finally:
            aside.unlink()
    return key_file.read_text().strip()


def _var_dir_make() -> None:
    """VAR_DIR, readable by this user alone: it holds the SQLite file (every account's
    webhook secrets), the secret key and the broker's messages. Made so; the checkout's own
    var/, made open by earlier versions, is closed too (a VAR_DIR given is left as set)."""
    if not VAR_DIR.exists():
        VAR_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    elif not env("VAR_DIR") and VAR_DIR.stat().st_uid == os.getuid():
        VAR_DIR.chmod(0o700)


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
if not ALLOWED_HOSTS:
    # Set and empty: taken, and every route but the probes answered 400.
    raise ImproperlyConfigured(
        "ALLOWED_HOSTS must name the host names the web answers to (images.example.com), "
        "or be unset for localhost."
    )
CSRF_TRUSTED_ORIGINS = env_origins("CSRF_TRUSTED_ORIGINS")
# Proxies whose X-Forwarded-* headers are believed: gunicorn reads the same variable (and
# default) for the scheme, Django for the client's address (config/proxies.py), which
# counts wrong passwords per address: read as the proxy's, one person's ten wrong tries
# paused everyone's logins to that name.
FORWARDED_ALLOW_IPS = env_proxies("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.staticfiles",
    "django.contrib.messages",
    "django.contrib.sessions",
    "django.contrib.admin",
    "rest_framework",
    "rest_framework_api_key",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "accounts",
    "processing",
]

MIDDLEWARE = [
    "config.logs.AccessLogMiddleware",
    # Answers pass middleware bottom up: this one sees a 304 after every other has added
    # its length.
    "config.middleware.NotModifiedWithoutLengthMiddleware",
    "config.middleware.HeadWithoutBodyMiddleware",
    "config.middleware.PrivateAnswersMiddleware",
    "config.middleware.PageHeadersMiddleware",
    # Before the Host header is checked: probes call a process by its address.
    "config.middleware.ProbesAnyHostMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files (Swagger UI, the admin) from the installed apps, without collectstatic.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # Django's CommonMiddleware, but a missing trailing slash redirects with 308, keeping
    # the method: a POST to /api/upload arrives as one.
    "config.middleware.CommonKeepingMethodMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "config.middleware.DatabaseAwayPagesMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
WHITENOISE_USE_FINDERS = True

ROOT_URLCONF = "config.urls"
CSRF_FAILURE_VIEW = "processing.exceptions.csrf_failure_view"
LOGIN_URL = "login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": f"django.contrib.auth.password_validation.{name}"}
    for name in (
        "UserAttributeSimilarityValidator",
        "MinimumLengthValidator",
        "CommonPasswordValidator",
        "NumericPasswordValidator",
    )
]
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

# --- Database ----------------------------------------------------------------------------

_var_dir_make()
if EMBEDDED:
    if sqlite3.sqlite_version_info < (3, 35):
        # processing/bulk.py records a batch's results with UPDATE ... FROM ... RETURNING.
        raise ImproperlyConfigured(
            f"SQLite {sqlite3.sqlite_version} is too old: the embedded database needs 3.35 "
            "or newer (or set DATABASE_URL to a PostgreSQL database)."
        )
    DATABASES: dict[str, dict[str, Any]] = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(VAR_DIR / "db.sqlite3"),
            "OPTIONS": {
                # The web server and the worker write to one file: WAL lets readers go on
                # while a writer works, IMMEDIATE takes the write lock up front instead of
                # failing half way, and the timeout waits for it.
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
            },
            # A file, not memory, so that worker processes started by tests see it too.
            "TEST": {"NAME": str(VAR_DIR / "test-db.sqlite3")},
        }
    }
else:
    _database_url = env_service_url(
        "DATABASE_URL", "", example="postgres://user:password@db.example:5432/images"
    )
    try:
        _database = dj_database_url.parse(_database_url, conn_max_age=60, conn_health_checks=True)
    except ValueError as error:  # an unknown scheme, a port that is not a number
        raise ImproperlyConfigured(
            f"DATABASE_URL is not a database URL ({redacted(_database_url)!r}): {error}"
        ) from None
    DATABASES = {"default": dict(_database)}
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        # A server that takes the connection and never answers (overloaded, or a firewall
        # that drops packets) held /healthz and every request that asked for a connection
        # for as long as the client waited: libpq's own default is forever.
        DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = env_int(
            "DATABASE_CONNECT_TIMEOUT", 5, positive=True
        )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- HTTP --------------------------------------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_TZ = True
STATIC_URL = "/static/"

# Output files (images and CSVs) go to an S3-compatible object store when S3_BUCKET is
# set, so that web and workers on many hosts share them; otherwise to STORAGE_DIR (the
# seed's storage/ folder), served by the web server at MEDIA_URL.
MEDIA_ROOT = Path(env("STORAGE_DIR", str(BASE_DIR / "storage")))
MEDIA_URL = "/media/"
# /healthz answers 503 while STORAGE_DIR has less free than this: room for a few of the
# largest outputs (IMAGE_FETCH_MAX_BYTES each) that the workers write at once.
STORAGE_MIN_FREE_BYTES = env_int("STORAGE_MIN_FREE_BYTES", 100 * 1024 * 1024)
S3_BUCKET = env("S3_BUCKET")


# S3 signs a URL for a week at most.
S3_MAX_URL_EXPIRY = 7 * 24 * 3600


def _s3_url_expiry() -> int:
    """Seconds a private bucket's signed output URL holds."""
    seconds = env_int("S3_URL_EXPIRY", S3_MAX_URL_EXPIRY)
    if not 0 < seconds <= S3_MAX_URL_EXPIRY:
        raise ImproperlyConfigured(
            f"S3_URL_EXPIRY must be 1 to {S3_MAX_URL_EXPIRY} seconds (7 days), not {seconds}."
        )
    return seconds


def _s3_options() -> dict[str, object]:
    options: dict[str, object] = {
        "bucket_name": S3_BUCKET,
        "endpoint_url": env_url("S3_ENDPOINT_URL", example="https://s3.example.com") or None,
        "region_name": env("S3_REGION") or None,
        "access_key": env("S3_ACCESS_KEY_ID") or None,
        "secret_key": env("S3_SECRET_ACCESS_KEY") or None,
        "addressing_style": (
            env_choice("S3_ADDRESSING_STYLE", "auto", ["auto", "path", "virtual"])
            if env("S3_ADDRESSING_STYLE")
            else None  # boto3's own choice
        ),
        "signature_version": "s3v4",
        "file_overwrite": True,
        "default_acl": None,
        # Private bucket: every URL handed out is presigned, valid this long (SigV4 allows
        # up to 7 days). A public base URL (a CDN, or a public-read bucket) needs no signing.
        "querystring_auth": True,
        "querystring_expire": _s3_url_expiry(),
    }
    public = env_base_url("S3_PUBLIC_BASE_URL")
    if public:
        scheme, _, rest = public.partition("://")
        options.update(querystring_auth=False, custom_domain=rest, url_protocol=f"{scheme}:")
    return options


STORAGES: dict[str, dict[str, Any]] = {
    # Output names are derived from row ids, so a re-run of a task writes the same name;
    # OutputStorage replaces the file rather than truncating one another name may share.
    "default": {
        "BACKEND": "processing.storage.OutputStorage",
        "OPTIONS": {"allow_overwrite": True},
    },
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
if S3_BUCKET:
    STORAGES["default"] = {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": _s3_options()}

# Absolute base of every URL the service hands out (output images, CSV, status). Empty:
# the address the client used to upload, recorded with the request.
PUBLIC_BASE_URL = env_base_url("PUBLIC_BASE_URL")
# The page's POSTs carry an Origin that Django compares with the scheme it sees: behind a
# proxy that ends TLS, https:// against http://, and every login and form failed with 403.
# The service's own public address is trusted without being listed again.
if PUBLIC_BASE_URL:
    # As a browser writes it: the host in lower case, the scheme's own port left out.
    public = urlsplit(PUBLIC_BASE_URL)
    default_port = {"http": 80, "https": 443}[public.scheme]
    port = f":{public.port}" if public.port not in {None, default_port} else ""
    host = f"[{public.hostname}]" if ":" in str(public.hostname) else public.hostname
    CSRF_TRUSTED_ORIGINS.append(f"{public.scheme}://{host}{port}")
    # And its host answered: left out of ALLOWED_HOSTS, every route but the probes answered
    # 400 while /healthz said 200, and the load balancer sent it traffic.
    if public.hostname and public.hostname not in ALLOWED_HOSTS:
        ALLOWED_HOSTS.append(public.hostname)
# Behind HTTPS, send the session and CSRF cookies over HTTPS only: by default where the
# service's public address is https://.
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool(
    "SECURE_COOKIES", PUBLIC_BASE_URL.startswith("https://")
)

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "rest_framework.parsers.MultiPartParser",
        "rest_framework.parsers.FormParser",
        "processing.parsers.JSONParser",  # a field given twice refused, as in forms
    ],
    # Every API route acts for an account: an API key's, or a logged-in person's (whose
    # unsafe requests need Django's CSRF token). /healthz, the schema and its docs are open.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.ApiKeyAuthentication",
        "accounts.authentication.AccountSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "EXCEPTION_HANDLER": "processing.exceptions.api_exception_handler",
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "processing.parsers.ContentNegotiation",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

# Rate-limit counters must be shared by every web process: Redis in production (CACHE_URL,
# by default the broker's Redis), a folder beside the SQLite file otherwise.
_broker_url = env_service_url(
    "CELERY_BROKER_URL", "filesystem://", example="redis://redis.example:6379/0", failover=True
)
# kombu reads "transport+url" (sqla+postgresql://) by the part before the "+".
if (_broker_scheme := _broker_url.split("://")[0]).split("+")[0].lower() not in TRANSPORT_ALIASES:
    # Taken, and the worker stopped on kombu's KeyError, naming no setting.
    raise ImproperlyConfigured(
        f"CELERY_BROKER_URL must name a broker kombu knows (redis://, rediss://, amqp://, "
        f"filesystem://), not {_broker_scheme!r}://."
    )
CACHE_URL = env("CACHE_URL") or (_broker_url if _broker_url.startswith("redis") else "")
if CACHE_URL and not CACHE_URL.startswith(("redis://", "rediss://")):
    # memcached:// and the like were taken, and a folder of each host's own used instead:
    # the rate limits and the login pauses then counted each web host apart.
    raise ImproperlyConfigured(
        f"CACHE_URL must be a redis:// or rediss:// URL, not {redacted(CACHE_URL)!r}."
    )
# How long a call to Redis (the cache's, the broker's) waits for it: one that hangs
# (paused, or its host gone without a reset) held each web thread that asked it for good,
# and eight health probes held them all.
REDIS_SOCKET_TIMEOUTS = {"socket_timeout": 5, "socket_connect_timeout": 5}
if CACHE_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": CACHE_URL,
            "KEY_PREFIX": "imgsvc",
            "OPTIONS": dict(REDIS_SOCKET_TIMEOUTS),
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }

SPECTACULAR_SETTINGS = {
    "TITLE": "imgsvc",
    "DESCRIPTION": (
        "Upload a product CSV; every image is downloaded, re-encoded at quality 50 and "
        "stored; follow the request's status, read its products and its output CSV."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Request bodies as components of their own: the upload's file is then a binary part,
    # which Swagger UI offers a file picker for, not a URI typed into a text box.
    "COMPONENT_SPLIT_REQUEST": True,
    # 3.1, whose null is JSON Schema's: 3.0's `nullable` beside a reference (the status's
    # `webhook`, null on most requests) applied to nothing, and strict clients refused it.
    "OAS_VERSION": "3.1.0",
    # The request's statuses under one name: two serializers holding them made
    # drf-spectacular fall back to a hashed one ("Status468Enum") for both.
    "ENUM_NAME_OVERRIDES": {
        "StatusStatusEnum": "processing.serializers.REQUEST_STATUSES",
        # The setting (same, jpeg, …) and an image's file's format (JPEG, …): two sets
        # of one field's name, each under its own.
        "OutputFormatEnum": "processing.serializers.OUTPUT_FORMAT_SETTINGS",
        "ImageOutputFormatEnum": "processing.serializers.IMAGE_OUTPUT_FORMATS",
    },
    # Refusals before a view and the headers answers carry, on every operation.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "processing.openapi.refusals_documented",
        "processing.openapi.webhook_headers_documented",
    ],
    # What the service POSTs to receivers: the finished request's event and the test event,
    # with their signature headers (OpenAPI 3.1's `webhooks`).
    "WEBHOOKS": ["processing.openapi.REQUEST_FINISHED", "processing.openapi.TEST_EVENT"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Upload limits -----------------------------------------------------------------------

CSV_MAX_BYTES = env_int("CSV_MAX_BYTES", 10 * 1024 * 1024, positive=True)
CSV_MAX_ROWS = env_int("CSV_MAX_ROWS", 10_000, positive=True)
CSV_MAX_URLS_PER_ROW = env_int("CSV_MAX_URLS_PER_ROW", 50, positive=True)
# Uploads larger than this go to a temporary file instead of memory while they arrive.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
# Per account: uploads (N/second, /minute, /hour or /day; empty: no limit), and images not
# yet finished across its requests beyond which an upload is refused (0: no limit).
ACCOUNT_UPLOAD_RATE_LIMIT = env_rate("ACCOUNT_UPLOAD_RATE_LIMIT", "60/minute")
ACCOUNT_MAX_PENDING_IMAGES = env_int("ACCOUNT_MAX_PENDING_IMAGES", 200_000)  # 0: no limit
# How long an upload's Idempotency-Key gets its request back when sent again; after it,
# the key makes a new request (processing/idempotency.py).
IDEMPOTENCY_KEY_HOURS = env_float("IDEMPOTENCY_KEY_HOURS", 24.0, positive=True)
DATA_UPLOAD_MAX_MEMORY_SIZE = CSV_MAX_BYTES + 1024 * 1024

# --- Image processing --------------------------------------------------------------------

IMAGE_QUALITY = env_int("IMAGE_QUALITY", 50)
IMAGE_QUALITY_MODE = env("IMAGE_QUALITY_MODE", QualityMode.FIXED)
if IMAGE_QUALITY_MODE not in set(QualityMode):
    raise ImproperlyConfigured(
        f"IMAGE_QUALITY_MODE must be one of {', '.join(QualityMode)}, not {IMAGE_QUALITY_MODE!r}."
    )
if not 1 <= IMAGE_QUALITY <= 95:
    raise ImproperlyConfigured("IMAGE_QUALITY must be between 1 and 95.")
# The perceptual mode (imaging/quality.py): the SSIMULACRA2 score each target stands for,
# the target of a request that names none, and the encodes an image may take to reach it.
QUALITY_TARGET_SCORES = {
    target: env_float(f"QUALITY_TARGET_{target.upper()}", score)
    for target, score in DEFAULT_TARGET_SCORES.items()
}
for _target, _score in QUALITY_TARGET_SCORES.items():
    if not 0 < _score < 100:
        raise ImproperlyConfigured(
            f"QUALITY_TARGET_{_target.upper()} must be a score between 0 and 100, not {_score}."
        )
IMAGE_QUALITY_TARGET = env("IMAGE_QUALITY_TARGET", QualityTarget.MEDIUM)
if IMAGE_QUALITY_TARGET not in set(QualityTarget):
    raise ImproperlyConfigured(
        f"IMAGE_QUALITY_TARGET must be one of {', '.join(QualityTarget)}, "
        f"not {IMAGE_QUALITY_TARGET!r}."
    )
IMAGE_QUALITY_MAX_TRIES = env_int("IMAGE_QUALITY_MAX_TRIES", DEFAULT_MAX_TRIES, positive=True)
if not 2 <= IMAGE_QUALITY_MAX_TRIES <= 12:
    raise ImproperlyConfigured("IMAGE_QUALITY_MAX_TRIES must be between 2 and 12.")
# What outputs keep of their sources' metadata where a request does not say (imaging/
# metadata.py): strip (nothing but the ICC profile) or copyright (and their credits).
IMAGE_METADATA = env("IMAGE_METADATA", MetadataMode.STRIP)
if IMAGE_METADATA not in set(MetadataMode):
    raise ImproperlyConfigured(
        f"IMAGE_METADATA must be one of {', '.join(MetadataMode)}, not {IMAGE_METADATA!r}."
    )
# Score the outputs of fixed and relative requests too, not only perceptual ones, where a
# request does not say (its `score` field): two decodes and a comparison, 17-35 ms of CPU
# a product photo where its encode takes 5-10, which made the typical benchmark 5 times
# slower (BENCHMARKS.md, "Perceptual quality").
IMAGE_SCORE_ALL_MODES = env_bool("IMAGE_SCORE_ALL_MODES", False)
IMAGE_MAX_PIXELS = env_int("IMAGE_MAX_PIXELS", 50_000_000, positive=True)
# What one image may cost (imaging/guard.py): memory to decode and re-encode it, checked
# before decoding; scans of a JPEG (a photo has about ten; thousands make a 200 KB file
# take minutes); seconds of decode and encode.
IMAGE_MAX_DECODE_BYTES = env_int("IMAGE_MAX_DECODE_BYTES", 1024 * 1024 * 1024, positive=True)
IMAGE_MAX_JPEG_SCANS = env_int("IMAGE_MAX_JPEG_SCANS", 100, positive=True)
IMAGE_MAX_SECONDS = env_float("IMAGE_MAX_SECONDS", 30.0, positive=True)
# Upright YCbCr and grayscale JPEGs through libjpeg-turbo's YUV path (imaging/encode.py).
IMAGE_FAST_JPEG = env_bool("IMAGE_FAST_JPEG", True)
IMAGE_FETCH_MAX_BYTES = env_int("IMAGE_FETCH_MAX_BYTES", 25 * 1024 * 1024, positive=True)
IMAGE_FETCH_CONNECT_TIMEOUT = env_float("IMAGE_FETCH_CONNECT_TIMEOUT", 5.0, positive=True)
IMAGE_FETCH_READ_TIMEOUT = env_float("IMAGE_FETCH_READ_TIMEOUT", 15.0, positive=True)
IMAGE_FETCH_TOTAL_TIMEOUT = env_float("IMAGE_FETCH_TOTAL_TIMEOUT", 60.0, positive=True)
IMAGE_MAX_ATTEMPTS = env_int("IMAGE_MAX_ATTEMPTS", 3, positive=True)
# Distinct URLs per task (processing/window.py): a request's first batches take
# IMAGE_BATCH_SIZE; once its images' sizes are known, as many as come to about
# IMAGE_BATCH_BYTES of downloads, up to IMAGE_BATCH_MAX_SIZE. Small photos go in larger
# batches, so that a batch's fixed cost (its task, its claim and record) is shared by more.
IMAGE_BATCH_SIZE = env_int("IMAGE_BATCH_SIZE", 8, positive=True)
IMAGE_BATCH_MAX_SIZE = max(IMAGE_BATCH_SIZE, env_int("IMAGE_BATCH_MAX_SIZE", 32, positive=True))
IMAGE_BATCH_BYTES = env_int("IMAGE_BATCH_BYTES", 8 * 1024 * 1024, positive=True)
# Downloads one task runs at once while it encodes. A batch starts its next download only
# while fewer than twice this many are under way or waiting to be encoded: bodies held in
# memory stay bounded however many URLs a batch has.
IMAGE_FETCH_THREADS = env_int("IMAGE_FETCH_THREADS", 4, positive=True)
# A batch under way looks this often whether its request was cancelled, and then ends its
# images not processed yet as cancelled: 32 large photos are half a minute of encoding.
IMAGE_CANCEL_CHECK_SECONDS = env_float("IMAGE_CANCEL_CHECK_SECONDS", 0.5)
IMAGE_FETCH_RETRY_BACKOFF = env_float("IMAGE_FETCH_RETRY_BACKOFF", 2.0)
IMAGE_FETCH_RETRY_MAX_DELAY = env_float("IMAGE_FETCH_RETRY_MAX_DELAY", 60.0)
IMAGE_FETCH_ALLOW_NETWORKS = env_networks("IMAGE_FETCH_ALLOW_NETWORKS")
IMAGE_FETCH_ALLOW_PORTS = env_ports("IMAGE_FETCH_ALLOW_PORTS")

WEBHOOK_URL = env_url("WEBHOOK_URL", example="https://hooks.example.com/images")
# Where webhooks may go besides public addresses on ports 80 and 443: their own lists, not
# the image fetcher's.
WEBHOOK_ALLOW_NETWORKS = env_networks("WEBHOOK_ALLOW_NETWORKS")
WEBHOOK_ALLOW_PORTS = env_ports("WEBHOOK_ALLOW_PORTS")
WEBHOOK_TIMEOUT = env_float("WEBHOOK_TIMEOUT", 10.0, positive=True)
# Webhooks are signed with their account's secret. WEBHOOK_SECRET, if set when the
# accounts arrive (migration accounts 0002), becomes the secret of the account `default`
# that owns the requests made before, so that receivers keep verifying.
WEBHOOK_SECRET = env("WEBHOOK_SECRET")
# After `manage.py account rotate-secret`, the old secret also signs for this long.
WEBHOOK_SECRET_OVERLAP = env_float("WEBHOOK_SECRET_OVERLAP", 24 * 3600.0)
WEBHOOK_RETRY_SCHEDULE = env_seconds("WEBHOOK_RETRY_SCHEDULE", "5,300,1800,7200,18000,36000,36000")

# A batch of images may take this long before its process is killed and replaced: its
# largest batch's downloads at their deadline, IMAGE_FETCH_THREADS at a time, then each
# image its time, one after the other, and a minute more (25 minutes by default).
IMAGE_TASK_TIME_LIMIT = (
    int(
        -(-IMAGE_BATCH_MAX_SIZE // max(1, IMAGE_FETCH_THREADS)) * IMAGE_FETCH_TOTAL_TIMEOUT
        + IMAGE_BATCH_MAX_SIZE * IMAGE_MAX_SECONDS
    )
    + 60
)

# Days after a request finished that its outputs, products and images are deleted (beat,
# every EXPIRE_INTERVAL seconds; `manage.py expire` at once). Fractions allowed; empty
# keeps them for ever.
_retention = env("RETENTION_DAYS", "30")
try:
    RETENTION_DAYS: float | None = float(_retention) if _retention else None
except ValueError:
    raise ImproperlyConfigured(
        f"RETENTION_DAYS must be a number of days, not {_retention!r}."
    ) from None
if RETENTION_DAYS is not None and RETENTION_DAYS < 0:
    raise ImproperlyConfigured(f"RETENTION_DAYS must be 0 or more, not {_retention!r}.")
EXPIRE_INTERVAL = env_float("EXPIRE_INTERVAL", 3600.0, positive=True)

# Work claimed or queued longer ago than this is presumed lost (a killed worker, a broker
# that restarted empty) and queued again by the sweep, which runs every SWEEP_INTERVAL.
WORK_LEASE_SECONDS = env_float("WORK_LEASE_SECONDS", 300.0, positive=True)
SWEEP_INTERVAL = env_float("SWEEP_INTERVAL", 30.0, positive=True)

# --- Celery ------------------------------------------------------------------------------

CELERY_BROKER_URL = _broker_url
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = Path(env("BROKER_DIR", str(VAR_DIR / "broker")))
    for _folder in ("queue", "control"):
        (_broker_dir / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "control_folder": str(_broker_dir / "control"),
        "polling_interval": 0.1,
    }
    # kombu's filesystem transport, writing each message atomically (config/broker.py).
    CELERY_BROKER_TRANSPORT = "config.broker:Transport"
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {}
    if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
        CELERY_BROKER_TRANSPORT_OPTIONS.update(REDIS_SOCKET_TIMEOUTS)
    if CELERY_BROKER_URL.startswith("redis://"):
        # kombu's Redis transport, keeping the worker alive when Redis goes away.
        CELERY_BROKER_TRANSPORT = "config.broker:RedisTransport"
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
# A task is acknowledged after it ran, and given back to the queue if its worker died: the
# same message, its retries unchanged, which is how an image batch tells a delivery after
# its process died from a try after an error (processing/claims.py's tokens). Celery's
# task_retry_on_worker_lost, which would send a death on as a retry, must stay off.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Backstops behind the per-image limits: a task past its time limit has its process killed
# and replaced (processing/tasks.py gives each kind its own), and a process that has grown
# past this many KiB is replaced after its task (a decode budget keeps one image within
# IMAGE_MAX_DECODE_BYTES; this catches what no estimate foresaw).
CELERY_TASK_TIME_LIMIT = 600
CELERY_WORKER_MAX_MEMORY_PER_CHILD = env_int(
    "CELERY_WORKER_MAX_MEMORY_PER_CHILD", 2 * IMAGE_MAX_DECODE_BYTES // 1024
)
# One process more than there are cores: while a process waits on the database, the broker
# or its first download, another encodes (BENCHMARKS.md: about 8% faster end to end).
CELERY_WORKER_CONCURRENCY = env_int(
    "CELERY_WORKER_CONCURRENCY", (os.cpu_count() or 1) + 1, positive=True
)
# Batches of one request queued or running at once (processing/window.py): enough to keep
# every image worker process busy with one request, few enough that batches of requests
# under way take turns. Across hosts, twice the image worker processes of all of them.
REQUEST_WINDOW_BATCHES = env_int(
    "REQUEST_WINDOW_BATCHES", 2 * CELERY_WORKER_CONCURRENCY, positive=True
)
# Batches a request that fits in its window whole is cut into when it has nothing in
# flight (its start, a retry's or the sweep's fill): a 10-image request as 4, 3 and 3 URLs
# on three processes rather than 8 and 2. Across hosts, the image worker processes of all.
REQUEST_START_BATCHES = env_int("REQUEST_START_BATCHES", CELERY_WORKER_CONCURRENCY, positive=True)
# Celery's Django fixup closes the database connection after every task unless told to
# reuse it; reconnecting cost more than a small image's encoding.
CELERY_DB_REUSE_MAX = env_int("CELERY_DB_REUSE_MAX", 1000)
CELERY_TASK_ALWAYS_EAGER = False
# Queues by kind of work (images, requests, webhooks): processing/queue.py's table routes
# each task, and says why.
CELERY_TASK_DEFAULT_QUEUE = "requests"
CELERY_TASK_ROUTES = ["processing.queue.task_route"]
CELERY_BEAT_SCHEDULE = {
    "sweep": {"task": "processing.sweep", "schedule": SWEEP_INTERVAL},
    "expire": {"task": "processing.expire", "schedule": EXPIRE_INTERVAL},
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A task running when the broker connection drops runs on to its end, as it does by default
# until Celery 6.0: what it did is recorded in the database, not the broker, and a copy
# delivered again later finds its work claimed or done. Cancelled (6.0's default), a batch
# lost the encoding under way and held its URLs until WORK_LEASE_SECONDS. Celery 5 warns of
# 6.0's default at every broker loss while this is False: config/celery.py drops that one.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# --- Metrics -----------------------------------------------------------------------------

# When set, /metrics (and a worker's metrics port) answer only `Authorization: Bearer
# <METRICS_TOKEN>`; empty, they answer anyone (for a private network).
METRICS_TOKEN = env("METRICS_TOKEN")

# Every web and worker process writes its Prometheus counters here; /metrics adds up the
# folder. One folder per host, to be emptied before the host's processes start (make run does).
PROMETHEUS_MULTIPROC_DIR = env("PROMETHEUS_MULTIPROC_DIR", str(VAR_DIR / "metrics"))
os.environ["PROMETHEUS_MULTIPROC_DIR"] = PROMETHEUS_MULTIPROC_DIR  # read by prometheus_client
Path(PROMETHEUS_MULTIPROC_DIR).mkdir(parents=True, exist_ok=True)
# prometheus_client reads that variable once, when it is first imported, and the `celery`
# command imports it before these settings (Flower's plugin does): a worker then kept its
# counts in memory, where /metrics never saw them. Read again, for the counters made after.
prometheus_client.values.ValueClass = prometheus_client.values.get_value_class()  # type: ignore[no-untyped-call]
# A worker host has no /metrics of its own: with this port set, each Celery worker serves
# its host's metrics there (http://<host>:<port>/metrics).
WORKER_METRICS_PORT = env_int("WORKER_METRICS_PORT", 0, most=65535)  # 0: none

# --- Logging -----------------------------------------------------------------------------

LOG_LEVEL = env_choice("LOG_LEVEL", "INFO", LOG_LEVELS)
# json (one object per line) or plain; json by default where DATABASE_URL is set.
LOG_FORMAT = log_format()
if LOG_FORMAT not in {"json", "plain"}:
    raise ImproperlyConfigured(f"LOG_FORMAT must be json or plain, not {LOG_FORMAT!r}.")
LOGGING = logging_config(level=LOG_LEVEL, fmt=LOG_FORMAT)
