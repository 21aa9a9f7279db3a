"""A redis-server of a test's own, on a spare port, that the test may stop and start."""

import contextlib
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.harness.origin import Origin
from tests.harness.service import Service, postgres_database, start_service
from tests.support import free_port, wait_until


@dataclass
class RedisServer:
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


@contextlib.contextmanager
def private_service(
    workdir: Path, origin: Origin, extra_env: dict[str, str] | None = None
) -> Iterator[tuple[Service, RedisServer, str]]:
    """The Procfile's service on private_backends (with extra_env), its Redis and its
    database's URL; stopped, and both backends gone, afterwards."""
    with private_backends(workdir) as (database_url, redis):
        service = start_service(
            workdir / "service",
            {"DATABASE_URL": database_url, "CELERY_BROKER_URL": redis.url, **(extra_env or {})},
            origin,
        )
        try:
            yield service, redis, database_url
        finally:
            service.stop()
