"""The embedded default's own files (config/settings.py): the folder it makes for its SQLite
file, broker and secret key is this user's alone, and processes starting together agree on
one key. Each start is a fresh Python process, as `make run`'s web and worker are."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

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
    subprocess.run([sys.executable, "-c", count], cwd=ROOT, env=environ, check=True, timeout=60)
    assert list((tmp_path / "metrics").glob("counter_*.db"))
