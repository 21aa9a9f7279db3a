"""manage.py as an operator runs it: an ordinary mistake (a setting that cannot work, a
database that is down) said in a line or two, a bug with its traceback."""

import os
from pathlib import Path

import pytest

from tests.harness.service import postgres_database, production_urls
from tests.support import free_port, python_run

pytestmark = pytest.mark.e2e


def _environ(var_dir: Path, **settings: str) -> dict[str, str]:
    environ = {
        name: value
        for name, value in os.environ.items()
        if name not in {"SECRET_KEY", "DATABASE_URL", "CELERY_BROKER_URL"}
    }
    return {**environ, "VAR_DIR": str(var_dir), **settings}


def test_a_missing_secret_key_is_said_in_one_line_without_a_traceback(tmp_path: Path) -> None:
    """It came at the end of a 50-line traceback through Django's frames."""
    environ = _environ(tmp_path, DATABASE_URL="postgres://imgsvc:hunter2@127.0.0.1/imgsvc")

    result = python_run(["manage.py", "apikey", "list"], environ)

    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "ImproperlyConfigured: SECRET_KEY is not set. A deployment with DATABASE_URL must set "
        "SECRET_KEY to a long random string shared by every web and worker process."
    ]


def test_a_database_that_is_down_is_said_in_two_lines_without_a_traceback(
    tmp_path: Path,
) -> None:
    url = f"postgres://imgsvc:hunter2@127.0.0.1:{free_port()}/imgsvc"  # nothing listens
    environ = _environ(tmp_path, DATABASE_URL=url, SECRET_KEY="x" * 50)

    result = python_run(["manage.py", "account", "list"], environ)

    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0].startswith("OperationalError: connection failed: connection to server at")
    assert len(lines) <= 2
    assert "Traceback" not in result.stderr
    assert "hunter2" not in result.stderr


def test_a_database_not_migrated_yet_is_told_to_migrate(tmp_path: Path) -> None:
    """It said "OperationalError: no such table: accounts" and no more."""
    result = python_run(["manage.py", "account", "list"], _environ(tmp_path))

    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "OperationalError: no such table: accounts",
        "The database's tables are not made yet: python manage.py migrate",
    ]


def test_a_bug_keeps_its_traceback(tmp_path: Path) -> None:
    result = python_run(["manage.py", "shell", "-c", "raise KeyError('x')"], _environ(tmp_path))

    assert result.returncode == 1
    assert result.stderr.startswith("Traceback (most recent call last):")
    assert result.stderr.rstrip().endswith("KeyError: 'x'")


def test_traceback_shows_the_frames_of_a_settings_mistake_too(tmp_path: Path) -> None:
    environ = _environ(tmp_path, IMAGE_QUALITY="0")

    result = python_run(["manage.py", "check", "--traceback"], environ)

    assert result.returncode == 1
    assert "Traceback (most recent call last):" in result.stderr
    assert result.stderr.rstrip().endswith(
        "ImproperlyConfigured: IMAGE_QUALITY must be between 1 and 95."
    )


def test_a_postgresql_database_not_migrated_yet_is_told_to_migrate(tmp_path: Path) -> None:
    """PostgreSQL says it with a ProgrammingError (relation "…" does not exist), where
    SQLite says it with an OperationalError: 57 lines of traceback, the advice nowhere."""
    with postgres_database() as database_url:
        environ = _environ(tmp_path, DATABASE_URL=database_url, SECRET_KEY="x" * 50)

        result = python_run(["manage.py", "account", "list"], environ)

    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        'ProgrammingError: relation "accounts" does not exist',
        "The database's tables are not made yet: python manage.py migrate",
    ]


def test_a_postgresql_sql_bug_keeps_its_traceback(tmp_path: Path) -> None:
    """A ProgrammingError of another kind (here a syntax error) is a bug, not a database
    not migrated."""
    database_url, _ = production_urls()
    environ = _environ(tmp_path, DATABASE_URL=database_url, SECRET_KEY="x" * 50)
    bug = "from django.db import connection; connection.cursor().execute('SELEC 1')"

    result = python_run(["manage.py", "shell", "-c", bug], environ)

    assert result.returncode == 1
    assert result.stderr.startswith("Traceback (most recent call last):")
    assert 'ProgrammingError: syntax error at or near "SELEC"' in result.stderr
