"""The environment's system check (config/checks.py): a variable named like a setting that
no setting reads is said, with the setting nearest to it; others' variables are not."""

import os
import re
from pathlib import Path

import pytest

from config.checks import unread_variables_check
from tests.support import ROOT, python_run


@pytest.mark.e2e
def test_a_misspelt_setting_is_named_by_manage_py_check_with_the_one_meant(
    tmp_path: Path,
) -> None:
    """IMAGE_QUALTY=30 was ignored in silence, and every image went on at quality 50."""
    environ = {
        **os.environ,
        "VAR_DIR": str(tmp_path),
        "IMAGE_QUALTY": "30",
        "WEBHOOK_SECRETT": "whsec_x",
        "PGHOST": "db.example",  # psql's, not ours
    }
    result = python_run(["manage.py", "check"], environ)
    assert result.returncode == 0, result.stderr  # a warning, not a stop
    warned = re.findall(r"\(config\.W001\) (.*)", result.stderr)
    assert warned == [
        "IMAGE_QUALTY is not a setting: did you mean IMAGE_QUALITY?",
        "WEBHOOK_SECRETT is not a setting: did you mean WEBHOOK_SECRET?",
    ]


def test_every_setting_in_the_readme_is_known_to_the_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Those read by gunicorn's configuration, or only with S3_BUCKET set, too."""
    table = (ROOT / "README.md").read_text().partition("\n## Settings\n")[2]
    names = re.findall(r"^\| `([A-Z0-9_]+)`", table, re.MULTILINE)
    assert {"IMAGE_QUALITY", "S3_REGION", "WEB_TIMEOUT"} <= set(names)
    for name in names:
        monkeypatch.setenv(name, "set")
    monkeypatch.setenv("CELERY_RDB_PORT", "6899")  # Celery's own

    assert [warning.msg for warning in unread_variables_check()] == []
