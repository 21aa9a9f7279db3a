"""The service as separate processes: the Procfile's own commands, on the embedded default
(SQLite, filesystem broker) or on PostgreSQL and Redis, each in a folder of its own."""

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import urllib3

from tests.harness.origin import Origin
from tests.support import API_KEYS, free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent.parent
BIN = Path(sys.executable).parent
# The account the tests' requests belong to, on every service they start.
TEST_ACCOUNT = "tests"


def procfile_commands() -> dict[str, str]:
    commands = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if ":" in line and not line.startswith("#"):
            name, command = line.split(":", 1)
            commands[name.strip()] = command.strip()
    return commands


def alone_environment(workdir: Path, **settings: str) -> dict[str, str]:
    """The environment of one of the Procfile's processes started on its own: the embedded
    default in workdir (not the machine's PostgreSQL, Redis or metrics folder), this
    Python's programs first on PATH, and settings."""
    leave_out = {"DATABASE_URL", "CELERY_BROKER_URL", "PROMETHEUS_MULTIPROC_DIR"}
    environ = {name: value for name, value in os.environ.items() if name not in leave_out}
    return environ | {
        "VAR_DIR": str(workdir / "var"),
        "STORAGE_DIR": str(workdir / "storage"),
        "SECRET_KEY": "tests-only-not-secret",
        "LOG_FORMAT": "plain",
        "PYTHONUNBUFFERED": "1",
        "PATH": f"{BIN}:{os.environ['PATH']}",
        **settings,
    }


@contextlib.contextmanager
def procfile_process(
    name: str, environ: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """One of the Procfile's processes as it starts it, its output in log; stopped (its
    whole process group) at the end."""
    with log.open("ab") as output:
        process = subprocess.Popen(
            ["/bin/sh", "-c", f"exec {procfile_commands()[name]}"],
            cwd=ROOT,
            env=environ,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)


@dataclass
class Service:
    base_url: str
    env: dict[str, str]
    workdir: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    # The test account's API key (sent by tests.support's calls) and webhook secret.
    api_key: str = ""
    webhook_secret: str = ""

    def manage(self, *args: str) -> str:
        """`python manage.py *args` on this service's settings; its standard output."""
        return manage(self.env, *args)

    def person(self, *, password: str | None = None, account: str = TEST_ACCOUNT) -> str:
        """A new user of the account, for the web page; their user name."""
        username = f"person-{uuid.uuid4().hex[:8]}"
        secret = ["--password", password] if password else ["--no-password"]
        self.manage("user", "create", "--account", account, "--username", username, *secret)
        return username

    def login_link(self, username: str) -> str:
        return self.manage("login-link", username, "--base-url", self.base_url).splitlines()[-1]

    def log(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text(errors="replace")

    def start(self, name: str, command: str) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("ab")
        process = subprocess.Popen(
            ["/bin/sh", "-c", f"exec {command}"],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes[name] = process
        return process

    @property
    def output_base(self) -> str:
        """Where output files are served from: the object store, or the web's /media/."""
        if self.env.get("S3_BUCKET"):
            return f"{self.env['S3_ENDPOINT_URL']}/{self.env['S3_BUCKET']}/"
        return f"{self.base_url}/media/"

    def wait_ready(self, web: str | None, workers: list[str]) -> None:
        if web is not None:
            wait_until(lambda: _answers(self.base_url), timeout=60, what="gunicorn to answer")
        for name in workers:
            wait_until(
                lambda name=name: " ready." in self.log(name),  # type: ignore[misc]
                timeout=60,
                what=f"{name} to be ready",
            )

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def service_env(workdir: Path, extra_env: dict[str, str], origin: Origin) -> dict[str, str]:
    """The environment of one host of the service: its own port, folders and settings."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "CELERY_BROKER_URL", "PUBLIC_BASE_URL", "WEBHOOK_URL"}
    }
    env.update(
        {
            "PATH": f"{BIN}:{env.get('PATH', '')}",
            "HOST": "127.0.0.1",
            "PORT": str(free_port()),
            "WEB_CONCURRENCY": "2",
            "CELERY_WORKER_CONCURRENCY": "2",
            "WEBHOOKS_WORKER_CONCURRENCY": "2",
            "SECRET_KEY": "tests-only-not-secret",
            "VAR_DIR": str(workdir / "var"),
            "STORAGE_DIR": str(workdir / "storage"),
            "BROKER_DIR": str(workdir / "broker"),
            # The origin runs on 127.0.0.1, which the fetcher refuses unless told.
            "IMAGE_FETCH_ALLOW_NETWORKS": "127.0.0.1/32",
            "IMAGE_FETCH_ALLOW_PORTS": str(origin.port),
            # Webhook receivers live on the origin too: allowed for webhooks, explicitly.
            "WEBHOOK_ALLOW_NETWORKS": "127.0.0.1/32",
            "WEBHOOK_ALLOW_PORTS": str(origin.port),
            # Tight limits so that misbehaving origins cost the tests seconds, not minutes.
            "IMAGE_FETCH_TOTAL_TIMEOUT": "2",
            "IMAGE_FETCH_READ_TIMEOUT": "1",
            "IMAGE_MAX_ATTEMPTS": "2",
            "IMAGE_FETCH_RETRY_BACKOFF": "0.2",
            # A cancel seen within a tenth of a second: well inside the 2 s a download has.
            "IMAGE_CANCEL_CHECK_SECONDS": "0.1",
            "SWEEP_INTERVAL": "1",
            # Every test client is 127.0.0.1: one shared upload budget would make tests
            # depend on each other. The limit itself is tested in test_upload_limits.py.
            "ACCOUNT_UPLOAD_RATE_LIMIT": "",
            # The worker serves its host's metrics too, as on a host without a web server.
            "WORKER_METRICS_PORT": str(free_port()),
            "WEBHOOK_RETRY_SCHEDULE": "0.2,0.2,0.2,0.2",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra_env)
    return env


def manage(env: dict[str, str], *args: str) -> str:
    """`python manage.py *args` with env; its standard output (the test fails if it does)."""
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def service_migrate(env: dict[str, str]) -> None:
    manage(env, "migrate", "--noinput")


def service_account(service: Service) -> None:
    """The test account's API key and webhook secret, made as an operator makes them, and
    the key registered for tests.support's calls to this service."""
    created = service.manage("apikey", "create", "--account", TEST_ACCOUNT, "--label", "tests")
    service.api_key = created.splitlines()[-1]
    service.webhook_secret = service.manage("account", "secret", TEST_ACCOUNT).splitlines()[-1]
    API_KEYS[service.base_url] = service.api_key


def start_service(workdir: Path, extra_env: dict[str, str], origin: Origin) -> Service:
    """Migrate, then start the Procfile's web, worker, webhooks and beat, as `make run`
    does; return once they answer."""
    env = service_env(workdir, extra_env, origin)
    service = Service(base_url=f"http://127.0.0.1:{env['PORT']}", env=env, workdir=workdir)
    service_migrate(env)
    service_account(service)
    commands = procfile_commands()
    try:
        for name in ("web", "worker", "webhooks", "beat"):
            service.start(name, commands[name])
        service.wait_ready(web="web", workers=["worker", "webhooks"])
    except BaseException:
        service.stop()
        print(service.log("web"), service.log("worker"), sep="\n")
        raise
    return service


@contextlib.contextmanager
def web_alone(
    service: Service, workdir: Path, *, limits: str = "", **settings: str
) -> Iterator[Service]:
    """service's web server alone, on a port of its own, one process, with settings
    changed, under the shell's limits (`ulimit -f 4096`) if given: the web server where
    the shared service's would not do. Its API calls take service's key."""
    env = {
        **service.env,
        "PORT": str(free_port()),
        "WEB_CONCURRENCY": "1",
        # A control socket of its own: in the service's VAR_DIR it took over the service's,
        # and removed it when it stopped.
        "GUNICORN_CMD_ARGS": f"--control-socket {workdir / 'gunicorn.ctl'}",
        **settings,
    }
    web = Service(base_url=f"http://127.0.0.1:{env['PORT']}", env=env, workdir=workdir)
    web.api_key = API_KEYS[web.base_url] = service.api_key
    command = procfile_commands()["web"]
    web.start("web", f"/bin/sh -c '{limits}; exec {command}'" if limits else command)
    try:
        web.wait_ready(web="web", workers=[])
        yield web
    finally:
        web.stop()


def _answers(base_url: str) -> bool:
    """Django answers (healthy or not: a test may have stopped the broker on purpose)."""
    try:
        response = urllib3.request("GET", f"{base_url}/healthz", timeout=2, retries=False)
    except urllib3.exceptions.HTTPError:
        return False
    return response.status in {200, 503}


def production_urls() -> tuple[str, str]:
    """DATABASE_URL and CELERY_BROKER_URL for PostgreSQL and Redis; CI must have them."""
    database_url = os.environ.get("DATABASE_URL", "")
    broker_url = os.environ.get("CELERY_BROKER_URL", "")
    if database_url.startswith("postgres") and broker_url.startswith("redis"):
        return database_url, broker_url
    message = "DATABASE_URL (postgres://) and CELERY_BROKER_URL (redis://) are not set"
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI must run against PostgreSQL and Redis")
    pytest.skip(message)


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database on the server DATABASE_URL names; dropped after."""
    import psycopg

    database_url, _ = production_urls()
    name = f"imgsvc_e2e_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(database_url)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(database_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
