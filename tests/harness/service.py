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
from tests.support import free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent.parent
BIN = Path(sys.executable).parent
WEBHOOK_SECRET = "whsec_dGVzdHMtb25seS13ZWJob29rLXNlY3JldC1rZXk="


def procfile_commands() -> dict[str, str]:
    commands = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if ":" in line and not line.startswith("#"):
            name, command = line.split(":", 1)
            commands[name.strip()] = command.strip()
    return commands


@dataclass
class Service:
    base_url: str
    env: dict[str, str]
    workdir: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

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
            "SECRET_KEY": "tests-only-not-secret",
            "VAR_DIR": str(workdir / "var"),
            "STORAGE_DIR": str(workdir / "storage"),
            "BROKER_DIR": str(workdir / "broker"),
            # The origin runs on 127.0.0.1, which the fetcher refuses unless told.
            "IMAGE_FETCH_ALLOW_NETWORKS": "127.0.0.1/32",
            "IMAGE_FETCH_ALLOW_PORTS": str(origin.port),
            # Tight limits so that misbehaving origins cost the tests seconds, not minutes.
            "IMAGE_FETCH_TOTAL_TIMEOUT": "2",
            "IMAGE_FETCH_READ_TIMEOUT": "1",
            "IMAGE_MAX_ATTEMPTS": "2",
            "IMAGE_FETCH_RETRY_BACKOFF": "0.2",
            "SWEEP_INTERVAL": "1",
            # Every test client is 127.0.0.1: one shared upload budget would make tests
            # depend on each other. The limit itself is tested in test_upload_limits.py.
            "UPLOAD_RATE_LIMIT": "",
            # The worker serves its host's metrics too, as on a host without a web server.
            "WORKER_METRICS_PORT": str(free_port()),
            "WEBHOOK_SECRET": WEBHOOK_SECRET,
            "WEBHOOK_RETRY_SCHEDULE": "0.2,0.2,0.2,0.2",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra_env)
    return env


def service_migrate(env: dict[str, str]) -> None:
    migrate = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr


def start_service(workdir: Path, extra_env: dict[str, str], origin: Origin) -> Service:
    """Migrate, then start the Procfile's web, worker and beat; return once they answer."""
    env = service_env(workdir, extra_env, origin)
    service = Service(base_url=f"http://127.0.0.1:{env['PORT']}", env=env, workdir=workdir)
    service_migrate(env)
    commands = procfile_commands()
    try:
        for name in ("web", "worker", "beat"):
            service.start(name, commands[name])
        service.wait_ready(web="web", workers=["worker"])
    except BaseException:
        service.stop()
        print(service.log("web"), service.log("worker"), sep="\n")
        raise
    return service


def _answers(base_url: str) -> bool:
    try:
        response = urllib3.request(
            "GET", f"{base_url}/api/status/{uuid.uuid4()}/", timeout=2, retries=False
        )
    except urllib3.exceptions.HTTPError:
        return False
    return response.status == 404


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
