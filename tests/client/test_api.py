"""The client's HTTP side without the service: which API key it sends, and what it makes
of the API's errors and of answers that are not the API's."""

import json
from pathlib import Path

import pytest
import urllib3

from client.api import ApiKey, api_key_for, error_text


@pytest.fixture
def var_dir(tmp_path: Path) -> Path:
    (tmp_path / "api_key").write_text("LocalKey.from-make-run\n")
    return tmp_path


def test_the_option_comes_first_then_the_environment(var_dir: Path) -> None:
    env = {"IMGSVC_API_KEY": "EnvKey.x"}
    assert api_key_for("http://127.0.0.1:8000", "Given.x", env, var_dir) == ApiKey(
        "Given.x", "--api-key"
    )
    assert api_key_for("http://127.0.0.1:8000", None, env, var_dir) == ApiKey(
        "EnvKey.x", "IMGSVC_API_KEY"
    )


def test_white_space_around_the_option_s_key_is_trimmed_as_the_environment_s(
    var_dir: Path,
) -> None:
    """The service trims it; refused here as a character no key has (exit 2), a key pasted
    between quotes with a space stopped a script that worked the day before."""
    assert api_key_for("http://127.0.0.1:8000", " Given.x\n", {}, var_dir) == ApiKey(
        "Given.x", "--api-key"
    )


@pytest.mark.parametrize(
    "server", ["http://127.0.0.1:8000", "http://localhost:9000", "http://[::1]:8000"]
)
def test_a_local_server_gets_the_key_make_run_wrote(server: str, var_dir: Path) -> None:
    assert api_key_for(server, None, {}, var_dir) == ApiKey(
        "LocalKey.from-make-run", str(var_dir / "api_key")
    )


def test_a_local_server_without_the_file_is_told_where_it_was_looked_for(tmp_path: Path) -> None:
    key = api_key_for("http://127.0.0.1:8000", None, {}, tmp_path)
    assert key.value == ""
    assert key.refused() == (
        "no API key was sent: give --api-key, or set IMGSVC_API_KEY "
        f"(nor is there {tmp_path / 'api_key'}, where `make run` writes one)"
    )


def test_a_remote_server_never_gets_the_local_key(var_dir: Path) -> None:
    assert api_key_for("https://images.example.com", None, {}, var_dir).value == ""


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


@pytest.mark.parametrize(
    ("body", "printed"),
    [
        ({"error": "Invalid CSV.", "details": None}, "HTTP 400: Invalid CSV."),
        (
            {"error": "Invalid CSV.", "details": ["row 2 is empty", None]},
            "HTTP 400: Invalid CSV.\n  row 2 is empty\n  None",
        ),
        (
            {"error": None, "code": "invalid_csv", "details": [{"row": 2, "message": None}]},
            "HTTP 400: invalid_csv\n  row 2, message None",
        ),
    ],
)
def test_an_error_with_null_or_odd_fields_is_printed_not_a_traceback(
    body: dict[str, object], printed: str
) -> None:
    """A broken or other server's error (none of these is the API's shape): "details": null
    was a TypeError's traceback, a detail that is not an object an AttributeError's."""
    response = urllib3.HTTPResponse(
        body=json.dumps(body).encode(), status=400, headers={"Content-Type": "application/json"}
    )
    assert error_text(response) == printed


GATEWAYS = (
    "a gateway's answer, not the service's: the service behind it may be down or restarting; "
    "try again in a minute"
)


@pytest.mark.parametrize(
    ("status", "printed"),
    [
        (502, f"HTTP 502: {GATEWAYS}"),
        (500, "HTTP 500: not the service's own answer: the server's log says why"),
        (404, "HTTP 404: not the API's answer (text/html): is the server's address right?"),
    ],
)
def test_an_error_page_that_is_not_the_apis_is_told_what_it_likely_means(
    status: int, printed: str
) -> None:
    """A gateway's or another server's HTML page was "HTTP 502" alone."""
    page = urllib3.HTTPResponse(
        body=b"<html>Bad Gateway</html>", status=status, headers={"Content-Type": "text/html"}
    )
    assert error_text(page) == printed


def test_a_blank_imgsvc_api_key_is_told_as_blank(var_dir: Path) -> None:
    """It was told "nor is there IMGSVC_API_KEY, where `make run` writes one"."""
    key = api_key_for("https://images.example", None, {"IMGSVC_API_KEY": " \n"}, var_dir)
    assert key.refused() == (
        "no API key was sent: IMGSVC_API_KEY is blank; set it, or give --api-key"
    )
