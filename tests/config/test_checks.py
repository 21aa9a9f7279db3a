"""The environment's system check (config/checks.py): a variable named like a setting that
no setting reads is said, with the setting nearest to it; others' variables are not."""

import os
import re
from pathlib import Path

import pytest

from config.checks import unread_variables_check
from tests.harness.service import alone_environment, procfile_process
from tests.support import ROOT, free_port, python_run, wait_until


@pytest.mark.e2e
def test_a_misspelt_setting_is_named_by_manage_py_check_with_the_one_meant(
    tmp_path: Path,
) -> None:
    """IMAGE_QUALTY=30 was ignored in silence, and every image went on at quality 50;
    METRIC_TOKEN=x too, with /metrics left open to anyone."""
    environ = {
        **os.environ,
        "VAR_DIR": str(tmp_path),
        "IMAGE_QUALTY": "30",
        "WEBHOOK_SECRETT": "whsec_x",
        "METRIC_TOKEN": "x",  # another first word, and nearly METRICS_TOKEN
        "PGHOST": "db.example",  # psql's, not ours
        "AWS_ACCESS_KEY_ID": "x",  # boto3's, however near S3_ACCESS_KEY_ID
        # Kubernetes' links to a Service named web, however near WEBHOOK_ settings
        "WEB_SERVICE_HOST": "10.0.0.1",
        "WEB_SERVICE_PORT": "8000",
        "WEB_PORT": "tcp://10.0.0.1:8000",
        "WEB_PORT_8000_TCP_ADDR": "10.0.0.1",
        "WORKER_PORT": "tcp://10.0.0.2:9100",
    }
    result = python_run(["manage.py", "check"], environ)
    assert result.returncode == 0, result.stderr  # a warning, not a stop
    warned = re.findall(r"\(config\.W001\) (.*)", result.stderr)
    assert warned == [
        "IMAGE_QUALTY is not a setting: did you mean IMAGE_QUALITY?",
        "METRIC_TOKEN is not a setting: did you mean METRICS_TOKEN?",
        "WEBHOOK_SECRETT is not a setting: did you mean WEBHOOK_SECRET?",
    ]


@pytest.mark.e2e
@pytest.mark.parametrize("process", ["web", "worker", "beat"])
def test_a_misspelt_setting_is_named_in_the_log_of_every_process_as_it_starts(
    tmp_path: Path, process: str
) -> None:
    """A host of workers alone, or a web server's, runs no management command: its
    misspelt setting was ignored in silence."""
    # Given a misspelt setting in a process's environment
    environ = alone_environment(
        tmp_path,
        HOST="127.0.0.1",
        PORT=str(free_port()),
        WEB_CONCURRENCY="2",
        IMAGE_QUALTY="30",
    )

    # When the process starts as the Procfile starts it
    log = tmp_path / f"{process}.log"
    said = "IMAGE_QUALTY is not a setting: did you mean IMAGE_QUALITY? (config.W001)"
    with procfile_process(process, environ, log) as started:
        # Then its log names it, with the setting meant, once, and the process runs on
        wait_until(
            lambda: started.poll() is not None or said in log.read_text(),
            timeout=60,
            what=f"the {process}'s warning",
        )
        assert started.poll() is None, log.read_text()
    assert log.read_text().count(said) == 1, log.read_text()


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
