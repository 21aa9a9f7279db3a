"""Which API key the command-line client sends (no server needed: the choice alone)."""

from pathlib import Path

import pytest

from client.cli import api_key_for


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
