"""The Celery application's own process set-up (config/celery.py): a worker process keeps
the memory it frees, so that the perceptual score's arrays of a few megabytes are not
faulted in again on every try (measured in a fresh Python process each, whose allocator
nothing else has set, with the signal a prefork pool sends each process it starts); a
worker that cannot write the output storage does not start, unless all it does is send
webhooks."""

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness.redis import RedisServer
from tests.harness.service import alone_environment, procfile_process
from tests.support import wait_until

ROOT = Path(__file__).resolve().parents[2]

# Eight arrays of 4 MB made, written and dropped, as a score's try does; the page faults
# of five more rounds once two have warmed the heap.
CHURN = """
import resource
import numpy as np
if {started_as_worker}:
    from celery import signals
    import config.celery
    signals.worker_process_init.send(sender=None)
def churn():
    arrays = [np.ones(1_000_000, dtype=np.float32) for _ in range(8)]
    del arrays
churn(); churn()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    churn()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's"),
]


def page_faults(*, started_as_worker: bool, environment: dict[str, str] | None = None) -> int:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("MALLOC_") and name != "GLIBC_TUNABLES"
    }
    result = subprocess.run(
        [sys.executable, "-c", CHURN.format(started_as_worker=started_as_worker)],
        env={**env, **(environment or {})},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return int(result.stdout.strip())


def test_a_worker_process_reuses_the_memory_it_frees() -> None:
    # Given 5 rounds of 8 arrays of 4 MB, about 40,000 pages: glibc's defaults fault most
    # of them in again
    assert page_faults(started_as_worker=False) > 10_000

    # When the process is started as the pool starts a worker's, then almost none
    assert page_faults(started_as_worker=True) < 1_000


@pytest.mark.parametrize(
    "environment",
    [
        {"MALLOC_TRIM_THRESHOLD_": "0"},
        {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"},
    ],
)
def test_an_operators_glibc_settings_win(environment: dict[str, str]) -> None:
    # Given an operator's environment telling glibc to give freed memory back at once
    # When a worker process starts, then that setting holds: the pages fault in again
    assert page_faults(started_as_worker=True, environment=environment) > 10_000


def unwritable_storage(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A worker's environment with a STORAGE_DIR under a file, which no one can make a
    folder in; that STORAGE_DIR."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    return alone_environment(tmp_path, STORAGE_DIR=str(blocker / "storage")), blocker / "storage"


@pytest.mark.e2e
@pytest.mark.parametrize("worker", ["worker", "images", "requests"])
def test_a_worker_that_cannot_write_the_output_storage_stops_at_its_start_saying_so(
    tmp_path: Path, worker: str
) -> None:
    """It started, looked healthy, and failed every image its queues gave it."""
    # Given a STORAGE_DIR no one can write
    environment, storage = unwritable_storage(tmp_path)

    # When a worker is started as the Procfile starts it
    log = tmp_path / "worker.log"
    with procfile_process(worker, environment, log) as started:
        started.wait(timeout=120)

    # Then it stops, naming what it could not write
    assert started.returncode != 0
    assert f"cannot write the output storage (STORAGE_DIR {storage})" in log.read_text()


@pytest.mark.e2e
def test_the_webhooks_worker_starts_whatever_the_output_storage(tmp_path: Path) -> None:
    """It writes nothing there, and stopped by a full disk it left every finished
    request's webhook unsent until there was room again."""
    # Given a STORAGE_DIR no one can write
    environment, _ = unwritable_storage(tmp_path)

    # When the webhooks worker is started as the Procfile starts it
    log = tmp_path / "webhooks.log"
    with procfile_process("webhooks", environment, log) as worker:
        # Then it comes up and takes its queue's tasks, saying nothing of the storage
        wait_until(
            lambda: worker.poll() is not None or " ready." in log.read_text(),
            timeout=60,
            what="the webhooks worker to be ready or to stop",
        )
        assert worker.poll() is None, log.read_text()
    assert "cannot write the output storage" not in log.read_text()


def test_a_worker_that_loses_its_broker_prints_no_deprecation_warning(
    tmp_path: Path, private_redis: RedisServer
) -> None:
    """Celery printed a CPendingDeprecationWarning of eight lines at every broker loss, until
    worker_cancel_long_running_tasks_on_connection_loss was set (config/settings.py)."""
    # Given a worker started as the Procfile starts it, on a Redis of its own
    environment = alone_environment(
        tmp_path, CELERY_BROKER_URL=private_redis.url, CELERY_WORKER_CONCURRENCY="1"
    )
    log_path = tmp_path / "worker.log"
    with procfile_process("worker", environment, log_path):
        wait_until(lambda: " ready." in log_path.read_text(), timeout=60, what="the worker")

        # When its Redis goes away
        private_redis.stop()
        wait_until(
            lambda: "Connection to broker lost" in log_path.read_text(),
            timeout=30,
            what="the worker to see its broker gone",
        )
        wait_until(
            lambda: "Trying again" in log_path.read_text(), timeout=30, what="a reconnection"
        )

    # Then it says so, and prints no warning of Celery's next version
    assert "PendingDeprecationWarning" not in log_path.read_text()
