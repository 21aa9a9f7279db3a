"""A worker process keeps the memory it frees (config.celery.keep_freed_memory), so that
the perceptual score's arrays of a few megabytes do not fault their pages in again on
every try. Measured in a fresh Python process each, whose allocator nothing else has set."""

import os
import subprocess
import sys

import pytest

# Eight arrays of 4 MB made, written and dropped, as a score's try does; the page faults of
# five more rounds once the first two have warmed the heap.
CHURN = """
import resource
import numpy as np
if {keep}:
    from config.celery import keep_freed_memory
    keep_freed_memory()
def churn():
    arrays = [np.ones(1_000_000, dtype=np.float32) for _ in range(8)]
    del arrays
churn(); churn()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    churn()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(*, keep: bool, environment: dict[str, str] | None = None) -> int:
    env = {name: value for name, value in os.environ.items() if not name.startswith("MALLOC_")}
    result = subprocess.run(
        [sys.executable, "-c", CHURN.format(keep=keep)],
        env={**env, **(environment or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return int(result.stdout.strip())


@pytest.mark.e2e
def test_a_worker_process_reuses_the_memory_it_frees() -> None:
    # 5 rounds x 8 arrays x 4 MB is about 40,000 pages: glibc's defaults fault most again
    assert _faults(keep=False) > 10_000
    assert _faults(keep=True) < 1_000


@pytest.mark.e2e
def test_glibc_settings_from_the_environment_are_left_as_they_are() -> None:
    # An operator's MALLOC_TRIM_THRESHOLD_ wins: here one that gives memory back at once.
    assert _faults(keep=True, environment={"MALLOC_TRIM_THRESHOLD_": "0"}) > 10_000
