"""Fixtures that start real processes: an image origin, and the service itself.

The service fixtures run the Procfile's own `web` and `worker` commands as separate
processes, on the embedded default (SQLite, filesystem broker) and, where DATABASE_URL and
CELERY_BROKER_URL say so, on PostgreSQL and Redis. Each fixture stops what it started.
"""

import contextlib
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import urllib3

from tests.support import free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent
WEBHOOK_SECRET = "whsec_dGVzdHMtb25seS13ZWJob29rLXNlY3JldC1rZXk="
BIN = Path(sys.executable).parent


# --- The image origin --------------------------------------------------------------------


@dataclass
class Route:
    body: bytes
    content_type: str = "image/jpeg"
    status: int = 200
    # Writes the whole response itself, for servers that misbehave on purpose.
    serve: Callable[[BaseHTTPRequestHandler], None] | None = None


@dataclass
class Origin:
    """An HTTP server on 127.0.0.1 serving what tests put on it, and recording POSTs."""

    port: int
    routes: dict[str, Route] = field(default_factory=dict)
    posts: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    # Statuses to answer POSTs to a path with, in turn; 204 once they run out.
    post_statuses: dict[str, list[int]] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(
        self,
        path: str,
        body: bytes = b"",
        content_type: str = "image/jpeg",
        status: int = 200,
        serve: Callable[[BaseHTTPRequestHandler], None] | None = None,
    ) -> str:
        self.routes[path] = Route(body, content_type, status, serve)
        return self.base_url + path

    def posts_to(self, path: str) -> list[tuple[dict[str, str], bytes]]:
        return [(headers, body) for got, headers, body in list(self.posts) if got == path]


@pytest.fixture(scope="session")
def origin() -> Iterator[Origin]:
    state, server = origin_serve()
    yield state
    server.shutdown()
    server.server_close()


def origin_serve() -> tuple[Origin, ThreadingHTTPServer]:
    """Start an origin on a spare port of 127.0.0.1; the caller shuts the server down."""
    state = Origin(port=0)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.hits[self.path] = state.hits.get(self.path, 0) + 1
            route = state.routes.get(self.path)
            if route is None:
                self.send_error(404)
                return
            if route.serve is not None:
                # The client hangs up on a misbehaving server, as it should.
                with contextlib.suppress(OSError):
                    route.serve(self)
                return
            self.send_response(route.status)
            self.send_header("Content-Type", route.content_type)
            self.send_header("Content-Length", str(len(route.body)))
            self.end_headers()
            self.wfile.write(route.body)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            state.posts.append((self.path, dict(self.headers.items()), body))
            queued = state.post_statuses.get(self.path)
            status = queued.pop(0) if queued else 204
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return state, server


# --- The service as separate processes ---------------------------------------------------


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


@pytest.fixture(scope="session")
def embedded_service(tmp_path_factory: pytest.TempPathFactory, origin: Origin) -> Iterator[Service]:
    service = start_service(tmp_path_factory.mktemp("embedded"), {}, origin)
    yield service
    service.stop()


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


@pytest.fixture(scope="session")
def production_service(
    tmp_path_factory: pytest.TempPathFactory, origin: Origin
) -> Iterator[Service]:
    _, broker_url = production_urls()
    with postgres_database() as database_url:
        service = start_service(
            tmp_path_factory.mktemp("production"),
            {"DATABASE_URL": database_url, "CELERY_BROKER_URL": broker_url},
            origin,
        )
        yield service
        service.stop()


@dataclass
class RedisServer:
    """A redis-server of the test's own, on a spare port, that a test may stop and start."""

    port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(self.workdir),
        ]  # fmt: skip
        log = (self.workdir / "redis.log").open("ab")
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        wait_until(self._answers, timeout=20, what="redis-server to answer PING")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def _answers(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(port=self.port, socket_timeout=1).ping())
        except redis.RedisError:
            return False


@contextlib.contextmanager
def private_backends(workdir: Path) -> Iterator[tuple[str, RedisServer]]:
    """A new PostgreSQL database and a redis-server of its own, so that no other service's
    worker takes this one's tasks; both gone afterwards."""
    redis = RedisServer(port=free_port(), workdir=workdir)
    redis.start()
    try:
        with postgres_database() as database_url:
            yield database_url, redis
    finally:
        redis.stop()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(port=free_port(), workdir=tmp_path)
    server.start()
    yield server
    server.stop()


# --- An S3-compatible object store --------------------------------------------------------


@dataclass
class ObjectStore:
    """moto's standalone S3 server on a spare port of 127.0.0.1, with one bucket."""

    endpoint_url: str
    bucket: str = "imgsvc-outputs"

    def service_env(self) -> dict[str, str]:
        return {
            "S3_BUCKET": self.bucket,
            "S3_ENDPOINT_URL": self.endpoint_url,
            "S3_REGION": "us-east-1",
            "S3_ACCESS_KEY_ID": "tests-only",
            "S3_SECRET_ACCESS_KEY": "tests-only",
            "S3_ADDRESSING_STYLE": "path",
        }

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="tests-only",
            aws_secret_access_key="tests-only",
        )

    def keys(self, prefix: str = "") -> list[str]:
        listed = self.client().list_objects_v2(Bucket=self.bucket, Prefix=prefix)
        return [item["Key"] for item in listed.get("Contents", [])]


@pytest.fixture(scope="session")
def object_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectStore]:
    port = free_port()
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("ab")
    process = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    store = ObjectStore(endpoint_url=f"http://127.0.0.1:{port}")
    try:
        wait_until(lambda: _moto_answers(store), timeout=30, what="moto's S3 server to answer")
        store.client().create_bucket(Bucket=store.bucket)
        yield store
    finally:
        process.kill()
        process.wait(timeout=10)


def _moto_answers(store: ObjectStore) -> bool:
    try:
        return urllib3.request("GET", store.endpoint_url, timeout=2, retries=False).status == 200
    except urllib3.exceptions.HTTPError:
        return False


@pytest.fixture(scope="session")
def object_store_service(
    tmp_path_factory: pytest.TempPathFactory, origin: Origin, object_store: ObjectStore
) -> Iterator[Service]:
    """PostgreSQL, a Redis of its own (so that no other service's worker takes its tasks)
    and output files in the object store."""
    production_urls()
    with private_backends(tmp_path_factory.mktemp("object-store-redis")) as (database, redis):
        service = start_service(
            tmp_path_factory.mktemp("object-store"),
            {
                "DATABASE_URL": database,
                "CELERY_BROKER_URL": redis.url,
                **object_store.service_env(),
            },
            origin,
        )
        yield service
        service.stop()


@pytest.fixture(params=["embedded", "production", "object_store"])
def service(request: pytest.FixtureRequest) -> Service:
    """The service on each stack: the embedded default, PostgreSQL + Redis, and that with
    output files in an S3-compatible object store."""
    return request.getfixturevalue(f"{request.param}_service")  # type: ignore[no-any-return]
