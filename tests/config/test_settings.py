"""The embedded default's own files (config/settings.py): the folder it makes for its SQLite
file, broker and secret key is this user's alone, and processes starting together agree on
one key. Each start is a fresh Python process, as `make run`'s web and worker are."""

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness.service import alone_environment, procfile_commands
from tests.support import python_run

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
PRINT_KEY = "from django.conf import settings; print(settings.SECRET_KEY)"


def _started(var_dir: Path) -> subprocess.Popen[str]:
    environ = {
        name: value
        for name, value in os.environ.items()
        if name not in {"SECRET_KEY", "DATABASE_URL", "CELERY_BROKER_URL"}
    }
    environ |= {"VAR_DIR": str(var_dir), "DJANGO_SETTINGS_MODULE": "config.settings"}
    return subprocess.Popen(
        [sys.executable, "-c", PRINT_KEY], cwd=ROOT, env=environ, stdout=subprocess.PIPE, text=True
    )


def test_the_embedded_defaults_folder_and_key_are_readable_by_this_user_alone(
    tmp_path: Path,
) -> None:
    var_dir = tmp_path / "var"
    starts = [_started(var_dir) for _ in range(4)]
    keys = {start.communicate(timeout=60)[0].strip() for start in starts}
    assert all(start.returncode == 0 for start in starts)
    [key] = keys  # four processes, one key
    assert len(key) > 40
    assert stat.S_IMODE(var_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((var_dir / "secret_key").stat().st_mode) == 0o600
    assert [path.name for path in var_dir.glob(".secret_key.*")] == []


def test_counters_go_to_the_shared_folder_even_where_prometheus_client_came_first(
    tmp_path: Path,
) -> None:
    """The `celery` command imports prometheus_client (through Flower's plugin) before the
    settings name the folder: a worker's counts then stayed in its memory, and /metrics,
    which adds up the folder, showed none of them. The tests' own processes inherit the
    variable from pytest's, which hid it: here it is unset."""
    count = (
        "import prometheus_client, django; django.setup(); "
        "from processing import metrics; metrics.UPLOADS.labels('accepted').inc()"
    )
    environ = {
        name: value
        for name, value in os.environ.items()
        if name not in {"PROMETHEUS_MULTIPROC_DIR", "DATABASE_URL", "CELERY_BROKER_URL"}
    }
    environ |= {"VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "config.settings"}
    result = python_run(["-c", count], environ)
    assert result.returncode == 0, result.stderr
    assert list((tmp_path / "metrics").glob("counter_*.db"))


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "IMAGE_FETCH_ALLOW_NETWORKS",
            "127.0.0.1/33",
            "IMAGE_FETCH_ALLOW_NETWORKS: '127.0.0.1/33' is not a network in CIDR form",
        ),
        ("WEBHOOK_ALLOW_PORTS", "443,abc", "WEBHOOK_ALLOW_PORTS must be port numbers (1-65535)"),
        ("ACCOUNT_UPLOAD_RATE_LIMIT", "60/xyz", "ACCOUNT_UPLOAD_RATE_LIMIT must be a number per"),
        ("WEBHOOK_RETRY_SCHEDULE", "5,x", "WEBHOOK_RETRY_SCHEDULE must be numbers of seconds"),
        ("LOG_LEVEL", "verbose", "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR"),
        ("LOG_FORMAT", "xml", "LOG_FORMAT must be json or plain, not 'xml'."),
        # These four were taken: no batch was ever queued, the lease renewed itself without
        # pause, expiry deleted what had just finished, a webhook was retried at once.
        ("IMAGE_BATCH_SIZE", "0", "IMAGE_BATCH_SIZE must be more than 0, not '0'."),
        ("WORK_LEASE_SECONDS", "0", "WORK_LEASE_SECONDS must be more than 0, not '0'."),
        ("RETENTION_DAYS", "-1", "RETENTION_DAYS must be 0 or more, not '-1'."),
        ("WEBHOOK_RETRY_SCHEDULE", "5,-5", "WEBHOOK_RETRY_SCHEDULE must be numbers of seconds"),
        # Taken too: links relative to nothing, stored in each request's row; a port the
        # worker could not bind, said only in its log.
        ("PUBLIC_BASE_URL", "images.example.com", "PUBLIC_BASE_URL must be an absolute http(s)"),
        # Taken, and every delivery to it failed, said only in each delivery's attempts.
        ("WEBHOOK_URL", "hooks.example.com/images", "WEBHOOK_URL must be an absolute http(s)"),
        ("WORKER_METRICS_PORT", "99999", "WORKER_METRICS_PORT must be from 0 to 65535"),
        ("CELERY_DB_REUSE_MAX", "-3", "CELERY_DB_REUSE_MAX must be 0 or more, not '-3'."),
        # Taken, and a folder of each host's own used: limits counted per web host.
        ("CACHE_URL", "memcached://10.0.0.9:11211", "CACHE_URL must be a redis:// or rediss://"),
        (
            "CACHE_URL",
            "memcached://cache:hunter2@10.0.0.9:11211",
            "CACHE_URL must be a redis:// or rediss:// URL, not "
            "'memcached://cache:***@10.0.0.9:11211'.",
        ),
        # Taken as a host named "redis%2F%2Fh", retried a hundred times naming no setting.
        (
            "CELERY_BROKER_URL",
            "redis//:hunter2@h:6379/0",
            "CELERY_BROKER_URL must be a URL (redis://redis.example:6379/0), not "
            "'redis//:***@h:6379/0'.",
        ),
        # Taken, and the worker stopped on kombu's "KeyError: 'No such transport: redsi'"
        (
            "CELERY_BROKER_URL",
            "redsi://:hunter2@h:6379/0",
            "CELERY_BROKER_URL must name a broker kombu knows (redis://, rediss://, amqp://, "
            "filesystem://), not 'redsi'://.",
        ),
        # Taken, and the worker stopped on a bare "ValueError: Port could not be cast"
        (
            "CELERY_BROKER_URL",
            "redis://:hunter2@h:notaport/0",
            "CELERY_BROKER_URL has a port that is not a number from 0 to 65535: "
            "'redis://:***@h:notaport/0'.",
        ),
        # Taken: a signature overlap said as "-1 hours", retries at once whatever the
        # image's server asked, and every route but the probes answering 400.
        ("WEBHOOK_SECRET_OVERLAP", "-3600", "WEBHOOK_SECRET_OVERLAP must be 0 or more, not"),
        ("IMAGE_FETCH_RETRY_BACKOFF", "-5", "IMAGE_FETCH_RETRY_BACKOFF must be 0 or more, not"),
        ("ALLOWED_HOSTS", "", "ALLOWED_HOSTS must name the host names the web answers to"),
        # Without its "//", quoted whole, password and all
        (
            "DATABASE_URL",
            "postgres:hunter2@db/x",
            "DATABASE_URL must be a URL (postgres://user:password@db.example:5432/images), "
            "not 'postgres:***@db/x'.",
        ),
        (
            "CELERY_BROKER_URL",
            "redis:hunter2@h:6379/0",
            "CELERY_BROKER_URL must be a URL (redis://redis.example:6379/0), not "
            "'redis:***@h:6379/0'.",
        ),
        (
            "WEBHOOK_URL",
            "hooks:hunter2@example.com/images",
            "WEBHOOK_URL must be an absolute http(s) URL (https://hooks.example.com/images), "
            "not 'hooks:***@example.com/images'.",
        ),
        # dj-database-url's own error, naming no setting; its password never shown
        (
            "DATABASE_URL",
            "mysqlx://app:hunter2@db/images",
            "DATABASE_URL is not a database URL ('mysqlx://app:***@db/images'): Scheme ",
        ),
    ],
)
def test_a_setting_that_cannot_work_stops_the_start_naming_itself(
    tmp_path: Path, name: str, value: str, message: str
) -> None:
    """Read where they were used, these passed every check at start, then failed every
    image (the allow-list), every upload (the rate) or the first log line."""
    environ = {**os.environ, "VAR_DIR": str(tmp_path), name: value}
    result = python_run(["manage.py", "check"], environ)
    assert result.returncode != 0
    assert f"ImproperlyConfigured: {message}" in result.stderr
    assert "hunter2" not in result.stderr  # a password in a URL is never printed


@pytest.mark.parametrize("url", ["redis://h:6379/0", "REDISS://h:6380/0", "sqla+sqlite:///q.db"])
def test_a_broker_url_kombu_reads_is_taken(tmp_path: Path, url: str) -> None:
    """The scheme check refused kombu's transport+URL form (sqla+postgresql://)."""
    environ = {**os.environ, "VAR_DIR": str(tmp_path), "CELERY_BROKER_URL": url}
    result = python_run(["manage.py", "check"], environ)
    assert result.returncode == 0, result.stderr


def test_a_database_url_whose_password_holds_a_semicolon_is_taken(tmp_path: Path) -> None:
    """The port check split every URL as kombu splits a broker's failover list: the
    password's ";" made "postgres://user:pa" a URL whose port was "pa", and it was refused."""
    environ = {
        **os.environ,
        "VAR_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": "postgres://imgsvc:pa;ss@127.0.0.1:5432/imgsvc",
    }
    read = "import django; django.setup(); from django.conf import settings\n"
    read += "print(settings.DATABASES['default']['PASSWORD'])"
    result = python_run(["-c", read], environ)
    assert result.stdout.strip() == "pa;ss", result.stderr


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("S3_ENDPOINT_URL", "minio:9000", "must be an absolute http(s) URL"),
        ("S3_PUBLIC_BASE_URL", "cdn.example.com/images", "must be an absolute http(s) URL"),
        ("S3_ADDRESSING_STYLE", "pathh", "must be one of auto, path, virtual, not 'pathh'."),
    ],
)
def test_an_object_store_setting_that_cannot_work_stops_the_start(
    tmp_path: Path, name: str, value: str, message: str
) -> None:
    """Each was taken, and every output failed to store."""
    environ = {**os.environ, "VAR_DIR": str(tmp_path), "S3_BUCKET": "outputs", name: value}
    result = python_run(["manage.py", "check"], environ)
    assert result.returncode != 0
    assert f"ImproperlyConfigured: {name} {message}" in result.stderr


def test_a_database_that_takes_the_connection_and_never_answers_is_given_up_on(
    tmp_path: Path,
) -> None:
    # A listener that never answers: the kernel completes the handshake for its backlog
    silent = socket.create_server(("127.0.0.1", 0))
    port = silent.getsockname()[1]
    connect = (
        "import django; django.setup(); from django.db import connection\n"
        "try:\n    connection.ensure_connection()\n"
        "except Exception as error:\n    print(type(error).__name__)"
    )
    environ = {
        **os.environ,
        "VAR_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:{port}/nowhere",
        "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0",
        "DATABASE_CONNECT_TIMEOUT": "1",
    }
    try:
        # python_run's minute is the test's deadline: libpq's own default waits for ever.
        result = python_run(["-c", connect], environ)
    finally:
        silent.close()
    assert result.stdout.strip() == "OperationalError", result.stderr


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("WEB_THREADS", "four", "WEB_THREADS must be a whole number, not 'four'."),
        ("WEB_CONCURRENCY", "0", "WEB_CONCURRENCY must be more than 0, not '0'."),
        ("PORT", "http", "PORT must be a whole number, not 'http'."),
        ("WEB_HEADER_TIMEOUT", "10s", "WEB_HEADER_TIMEOUT must be a number, not '10s'."),
        ("WEB_BODY_TIMEOUT", "0", "WEB_BODY_TIMEOUT must be more than 0, not '0'."),
        # Taken (only `manage.py check` refused the first), and every POST of the page from
        # that origin failed as forged: the browser's Origin is the scheme and host alone.
        (
            "CSRF_TRUSTED_ORIGINS",
            "https://pages.example.com,images.example.com",
            "CSRF_TRUSTED_ORIGINS must be origins, a scheme and a host "
            "(https://images.example.com), not 'images.example.com'.",
        ),
        (
            "CSRF_TRUSTED_ORIGINS",
            "https://images.example.com/",
            "CSRF_TRUSTED_ORIGINS must be origins, a scheme and a host "
            "(https://images.example.com), not 'https://images.example.com/'.",
        ),
    ],
)
def test_a_web_server_setting_that_cannot_work_stops_its_start_naming_itself(
    tmp_path: Path, name: str, value: str, message: str
) -> None:
    """gunicorn's configuration read these with int() and float(): a ValueError about a
    literal, naming no variable. The origins were taken, unchecked, by the web's Django."""
    environ = {**os.environ, "VAR_DIR": str(tmp_path), name: value}
    arguments = ["-m", "gunicorn", "--check-config", "-c", "config/gunicorn.py", "config.wsgi"]
    result = python_run(arguments, environ)
    assert result.returncode != 0
    assert f"ImproperlyConfigured: {message}" in result.stderr
    good = python_run(arguments, {**os.environ, "VAR_DIR": str(tmp_path)})
    assert good.returncode == 0, good.stderr


@pytest.mark.parametrize("value", ["proxy.local", "10.0.0.1/24", "*,proxy.local"])
def test_a_proxy_that_is_no_address_stops_the_web_servers_start_naming_itself(
    tmp_path: Path, value: str
) -> None:
    """gunicorn reads FORWARDED_ALLOW_IPS itself, before config/gunicorn.py: the web
    stopped on "Error: 'proxy.local' does not appear to be an IPv4 or IPv6 network", naming
    no variable, where the workers named it (and took 10.0.0.1/24, which gunicorn refuses)."""
    # Given the web server started as the Procfile starts it, its proxy not an address
    environ = alone_environment(tmp_path, FORWARDED_ALLOW_IPS=value)
    web = f"exec {procfile_commands()['web']}"

    result = subprocess.run(
        ["/bin/sh", "-c", web], cwd=ROOT, env=environ,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip

    # Then it stops, naming the variable and the value, as a worker does
    assert result.returncode != 0
    [said] = result.stderr.splitlines()  # that line alone, as manage.py says it
    assert said.startswith(
        "ImproperlyConfigured: FORWARDED_ALLOW_IPS must be addresses "
        f"or networks (10.0.0.2, 10.0.0.0/24) or *, not {value.removeprefix('*,')!r}: "
    )
    worker = python_run(["manage.py", "check"], environ)
    assert said.split(": ", 1)[1] in worker.stderr
    # and a good value starts it, gunicorn's own options passed on
    good = {**environ, "FORWARDED_ALLOW_IPS": "10.0.0.0/24,10.1.2.3,*"}
    checked = subprocess.run(
        ["/bin/sh", "-c", f"{web} --check-config"], cwd=ROOT, env=good,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr


def test_no_limit_on_pending_images_is_zero_as_the_readme_says(tmp_path: Path) -> None:
    """Refused at start as "must be more than 0", where the README's table says 0 is no
    limit."""
    environ = {**os.environ, "VAR_DIR": str(tmp_path), "ACCOUNT_MAX_PENDING_IMAGES": "0"}
    result = python_run(["manage.py", "check"], environ)
    assert result.returncode == 0, result.stderr


LOGIN_BEHIND_TLS_PROXY = """
import django
django.setup()
from django.test import Client
page = Client(enforce_csrf_checks=True)
https = {"HTTP_HOST": "images.example.test", "HTTP_ORIGIN": "https://images.example.test"}
page.get("/login/", **https)
form = {"csrfmiddlewaretoken": page.cookies["csrftoken"].value, "username": "", "password": ""}
print(page.post("/login/", form, **https).status_code)
"""


PUBLIC_HOST_ANSWERED = """
import django
django.setup()
from django.conf import settings
from django.test import Client
answer = Client().get("/api/requests/", HTTP_HOST="images.example.test")
print(answer.status_code, settings.SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE)
"""


def test_the_public_address_is_answered_and_its_cookies_kept_to_https(tmp_path: Path) -> None:
    """The README's production example sets PUBLIC_BASE_URL and no ALLOWED_HOSTS: every
    route but the probes answered 400 while /healthz said 200; and its cookies went over
    plain HTTP too unless SECURE_COOKIES was set."""
    environ = {
        **{name: value for name, value in os.environ.items() if name != "ALLOWED_HOSTS"},
        "VAR_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "PUBLIC_BASE_URL": "https://images.example.test",
    }
    result = python_run(["-c", PUBLIC_HOST_ANSWERED], environ)
    # 401: the route's own answer to a call without a key, not 400 for the host
    assert result.stdout.split() == ["401", "True", "True"], result.stderr


@pytest.mark.parametrize(
    "public_base_url",
    [
        "https://images.example.test",
        # spelt otherwise than a browser writes the Origin: still the same origin
        "https://Images.Example.TEST:443/imgsvc/",
    ],
)
def test_the_login_form_posts_through_a_proxy_that_ends_tls(
    tmp_path: Path, public_base_url: str
) -> None:
    """The README's production settings put the service behind a proxy that ends TLS:
    the browser's Origin said https://, Django saw http://, and every POST of the page,
    the login first, failed with 403 until the operator found CSRF_TRUSTED_ORIGINS."""
    # Given the service configured as the README's production example, behind a proxy
    # that passes requests on over plain HTTP
    environ = {
        **os.environ,
        "VAR_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "PUBLIC_BASE_URL": public_base_url,
        "ALLOWED_HOSTS": "images.example.test",
    }
    # When a person posts the login form (empty: no account needed to pass the CSRF check)
    result = python_run(["-c", LOGIN_BEHIND_TLS_PROXY], environ)
    # Then it is answered (the form's own errors), not refused as forged
    assert result.stdout.split() == ["200"], result.stderr
