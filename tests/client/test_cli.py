"""The command-line client without a server: which API key it sends, and what it prints of
the API's errors and its own."""

import json
from pathlib import Path

import pytest
import urllib3

from client.cli import api_key_for, error_text, main


@pytest.fixture
def var_dir(tmp_path: Path) -> Path:
    (tmp_path / "api_key").write_text("LocalKey.from-make-run\n")
    return tmp_path


def test_the_option_comes_first_then_the_environment(var_dir: Path) -> None:
    env = {"IMGSVC_API_KEY": "EnvKey.x"}
    assert api_key_for("http://127.0.0.1:8000", "Given.x", env, var_dir) == "Given.x"
    assert api_key_for("http://127.0.0.1:8000", None, env, var_dir) == "EnvKey.x"


@pytest.mark.parametrize(
    "server", ["http://127.0.0.1:8000", "http://localhost:9000", "http://[::1]:8000"]
)
def test_a_local_server_gets_the_key_make_run_wrote(server: str, var_dir: Path) -> None:
    assert api_key_for(server, None, {}, var_dir) == "LocalKey.from-make-run"


def test_a_remote_server_never_gets_the_local_key(var_dir: Path) -> None:
    assert api_key_for("https://images.example.com", None, {}, var_dir) == ""


def test_a_csv_that_cannot_be_read_is_an_error_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # No server at this address: the file is read before anything is sent.
    missing = tmp_path / "missing.csv"
    assert main(["--server", "http://127.0.0.1:9", "submit", str(missing)]) == 2
    assert f"cannot read {missing}: No such file or directory" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("status", "body", "printed"),
    [
        (
            410,
            {"error": "Deleted on 2026-11-28.", "details": [{"expired_at": "x"}]},
            "HTTP 410: Deleted on 2026-11-28.\n  expired_at x",
        ),
        (
            429,
            {
                "error": "Too many uploads.",
                "code": "throttled",
                "details": [{"limit": "60/m", "retry_after_seconds": 7}],
            },
            "HTTP 429: Too many uploads.\n  limit 60/m, retry_after_seconds 7",
        ),
        (
            400,
            {
                "error": "Invalid CSV.",
                "code": "invalid_csv",
                "details": [{"row": 2, "column": "S. No.", "message": "Not a number."}],
            },
            "HTTP 400: Invalid CSV.\n  row 2, column S. No.: Not a number.",
        ),
    ],
)
def test_every_error_shape_the_api_gives_is_printed(
    status: int, body: dict[str, object], printed: str
) -> None:
    """The details of a 410 and a 429 carry facts, not messages: reading a message from
    them crashed the command with a KeyError (exit 1, which means "finished otherwise")."""
    response = urllib3.HTTPResponse(
        body=json.dumps(body).encode(), status=status, headers={"Content-Type": "application/json"}
    )
    assert error_text(response) == printed
