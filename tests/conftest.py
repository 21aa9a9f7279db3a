"""Fixtures. What they start lives in tests/harness/; each fixture stops what it started.

Tests that start a process (the service, a Redis of their own, moto, chromium, newman, a
CLI) are marked `e2e`, by hand or, for the fixtures below, automatically; `make unit`
runs the others, and fails any of them that tries to start a process.
"""

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from accounts import services
from accounts.models import Account
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


# --- In process: an account, its API key, a client with it, a person logged in -----------


@pytest.fixture(autouse=True)
def cache_of_its_own(settings: Any) -> None:
    """Each test's own empty cache: rate-limit counters never carry over between tests, nor
    from the developer's `make run` (whose cache is a folder under var/)."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": uuid.uuid4().hex,
        }
    }


@pytest.fixture
def account(db: None) -> Account:
    made, _ = services.account_get_or_create(name=f"shop-{uuid.uuid4().hex[:8]}")
    return made


@pytest.fixture
def api_key(account: Account) -> str:
    return services.api_key_create(account=account, label="tests")[1]


@pytest.fixture
def api(api_key: str) -> APIClient:
    """DRF's test client, sending the account's API key."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key}")
    return client


@pytest.fixture
def member(account: Account) -> Any:
    return services.user_create(
        account=account, username=f"user-{uuid.uuid4().hex[:8]}", password=None
    )


@pytest.fixture
def member_client(member: Any) -> Client:
    """Django's test client, logged in as a user of the account (CSRF checks on)."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(member)
    return client


# --- Processes ---------------------------------------------------------------------------


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
