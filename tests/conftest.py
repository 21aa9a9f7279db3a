"""Fixtures. What they start lives in tests/harness/; each fixture stops what it started.

Tests that start a process (the service, a Redis of their own, moto, chromium, newman, a
CLI) are marked `e2e`, by hand or, for the fixtures below, automatically; `make unit`
runs the others, and fails any of them that tries to start a process.
"""

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.object_store import ObjectStore, object_store_serve
from tests.harness.origin import Origin, origin_serve
from tests.harness.redis import RedisServer, private_backends
from tests.harness.service import (
    Service,
    postgres_database,
    production_urls,
    start_service,
)
from tests.support import free_port

# Fixtures that start processes: a test that uses one is an end-to-end test.
PROCESS_FIXTURES = frozenset(
    {
        "service",
        "embedded_service",
        "production_service",
        "object_store_service",
        "object_store",
        "private_redis",
        "page",  # pytest-playwright's, in chromium
    }
)


# ctypes.util.find_library runs these once per process to find libturbojpeg: a lookup,
# not a process a test starts.
LIBRARY_LOOKUPS = frozenset({"ldconfig", "gcc", "cc", "objdump", "ld"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if PROCESS_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(autouse=True)
def processes_only_in_e2e(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast tests start no process: one that tries fails, naming the mark it needs."""
    if request.node.get_closest_marker("e2e") is not None:
        return
    real_init = subprocess.Popen.__init__

    def refuse(self: subprocess.Popen[Any], args: Any, *rest: Any, **options: Any) -> None:
        program = Path(str(args[0] if isinstance(args, list | tuple) else args).split()[0])
        if program.name not in LIBRARY_LOOKUPS:
            pytest.fail(f"{request.node.nodeid} starts a process ({args!r}): mark it e2e")
        real_init(self, args, *rest, **options)

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)


@pytest.fixture(scope="session")
def origin() -> Iterator[Origin]:
    state, server = origin_serve()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def embedded_service(tmp_path_factory: pytest.TempPathFactory, origin: Origin) -> Iterator[Service]:
    service = start_service(tmp_path_factory.mktemp("embedded"), {}, origin)
    yield service
    service.stop()


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


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(port=free_port(), workdir=tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def object_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectStore]:
    with object_store_serve(tmp_path_factory.mktemp("moto")) as store:
        yield store


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
