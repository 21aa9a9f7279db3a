"""The service as a team deploys it on several hosts: a web host, an image worker host and
a requests worker host that share nothing but PostgreSQL, Redis and the object store; and
the docker-compose.yml that starts the same processes, kept in step with the Procfile."""

import csv
import io
import json
import os
import re
import shutil
import subprocess
import tomllib
import uuid
from pathlib import Path

import pytest
import yaml
from PIL import Image

from tests.harness.object_store import ObjectStore
from tests.harness.origin import Origin
from tests.harness.redis import private_backends
from tests.harness.service import (
    BIN,
    ROOT,
    Service,
    procfile_commands,
    production_urls,
    service_account,
    service_env,
    service_migrate,
)
from tests.support import encoded, fetch_bytes, get_json, multipart_upload, photo, wait_for_finish


@pytest.mark.e2e
def test_web_and_workers_on_separate_hosts_share_only_database_broker_and_object_store(
    object_store: ObjectStore, origin: Origin, tmp_path: Path
) -> None:
    # Given three "hosts", each with its own folders, and one PostgreSQL, Redis and bucket
    production_urls()
    hosts: dict[str, Service] = {}
    try:
        with private_backends(tmp_path) as (database_url, redis):
            shared = {
                "DATABASE_URL": database_url,
                "CELERY_BROKER_URL": redis.url,
                **object_store.service_env(),
            }
            for name in ("web", "images", "requests"):
                env = service_env(tmp_path / name, shared, origin)
                hosts[name] = Service(
                    base_url=f"http://127.0.0.1:{env['PORT']}", env=env, workdir=tmp_path / name
                )
                (tmp_path / name).mkdir()
            service_migrate(hosts["web"].env)
            service_account(hosts["web"])
            commands = procfile_commands()
            hosts["web"].start("web", commands["web"])
            hosts["images"].start("images", commands["images"])
            hosts["requests"].start("requests", commands["requests"])
            hosts["requests"].start("beat", commands["beat"])
            hosts["web"].wait_ready(web="web", workers=[])
            hosts["images"].wait_ready(web=None, workers=["images"])
            hosts["requests"].wait_ready(web=None, workers=["requests"])
            web = hosts["web"]

            # When a shop uploads a CSV to the web host
            run = uuid.uuid4().hex[:8]
            sources = [encoded(photo(240 + 40 * n, 180, n), "JPEG", quality=90) for n in range(3)]
            urls = [origin.add(f"/hosts-{run}/{n}.jpg", body) for n, body in enumerate(sources)]
            csv_text = (
                "S. No.,Product Name,Input Image Urls\n"
                f'1,Lamp,"{urls[0]},{urls[1]}"\n2,Chair,"{urls[2]},{urls[0]}"\n'
            )
            uploaded = multipart_upload(web.base_url, csv_text)
            assert uploaded.status == 202, uploaded.data
            request_id = json.loads(uploaded.data)["request_id"]

            # Then the request completes
            status = wait_for_finish(web.base_url, request_id, timeout=60)
            assert status["status"] == "completed"

            # And every output URL is the object store's and serves the compressed image
            _, products = get_json(status["products_url"])
            images = [image for product in products["results"] for image in product["images"]]
            expected_sources = [sources[0], sources[1], sources[2], sources[0]]
            for image, source in zip(images, expected_sources, strict=True):
                assert image["output_url"].startswith(object_store.endpoint_url + "/")
                output = Image.open(io.BytesIO(fetch_bytes(image["output_url"])))
                assert output.format == "JPEG"
                assert output.size == Image.open(io.BytesIO(source)).size
            stored = object_store.keys(prefix=f"output_images/{request_id}/")
            outputs = {
                f"output_images/{request_id}/{name.rsplit('/', 1)[1].split('?')[0]}"
                for name in {image["output_url"].split("?")[0] for image in images}
            }
            # beside the output CSV, under a name no one guesses from an image's URL (a
            # public bucket served <the images' folder>/output.csv to anyone)
            [csv_key] = set(stored) - outputs
            assert re.fullmatch(rf"output_images/{request_id}/output-[\w-]{{22}}\.csv", csv_key)
            assert outputs <= set(stored)
            # And the web host serves the output CSV from the object store
            rows = list(csv.reader(io.StringIO(fetch_bytes(status["output_csv_url"]).decode())))
            assert [row[3].count(object_store.endpoint_url) for row in rows[1:]] == [2, 2]

            # And no host kept a file of its own, and each worker did only its own kind
            for host in hosts.values():
                folder = Path(host.env["STORAGE_DIR"])
                assert not folder.exists() or not any(p.is_file() for p in folder.rglob("*"))
            images_log = hosts["images"].log("images")
            requests_log = hosts["requests"].log("requests")
            assert "processing.images_process[" in images_log
            assert "processing.request_finalize[" not in images_log
            assert "processing.request_finalize[" in requests_log
            assert "processing.images_process[" not in requests_log
    finally:
        for host in hosts.values():
            host.stop()


# --- docker-compose.yml -------------------------------------------------------------------


def compose_command() -> list[str]:
    """`docker compose`, with Compose v2 from the dev dependencies as its plugin."""
    docker = shutil.which("docker")
    if docker is None:
        return [str(BIN / "docker-compose")]
    return [docker, "compose"]


def compose_config(tmp_path: Path, environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`docker compose config` of the project's file, in environ."""
    plugins = tmp_path / "cli-plugins"
    plugins.mkdir(exist_ok=True)
    if not (plugins / "docker-compose").exists():
        (plugins / "docker-compose").symlink_to(BIN / "docker-compose")
    return subprocess.run(
        [*compose_command(), "--file", str(ROOT / "docker-compose.yml"), "config", "--quiet"],
        cwd=ROOT,
        env={**environ, "DOCKER_CONFIG": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.e2e
def test_docker_compose_config_passes_and_needs_a_secret_key_of_its_own(tmp_path: Path) -> None:
    """It shipped a default key, which anyone reading the file knew: every deployment that
    left it signed its cookies with it."""
    environ = {name: value for name, value in os.environ.items() if name != "SECRET_KEY"}
    result = compose_config(tmp_path, {**environ, "SECRET_KEY": "a-long-random-string"})
    assert result.returncode == 0, result.stderr
    # (Compose 2.22 reports the missing variable and parses nothing, with exit code 0)
    refused = compose_config(tmp_path, environ)
    assert "required variable SECRET_KEY is missing a value: set SECRET_KEY" in refused.stderr


def test_docker_compose_runs_the_procfile_commands() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    procfile = procfile_commands()
    for name in ("web", "images", "requests", "webhooks", "beat"):
        assert compose["services"][name]["command"] == procfile[name], name
    # and given the time to finish what they hold when told to stop
    assert compose["x-app"]["stop_grace_period"] == "2m"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "requirements.lock" in dockerfile


def test_the_image_holds_every_package_the_service_runs() -> None:
    """Each package pyproject.toml ships but the command-line client is copied into the
    image: without accounts, no container could start (its settings name the app)."""
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"
    ]["find"]["include"]
    wanted = {package.rstrip("*") for package in packages} - {"client"}
    copied = set(re.findall(r"^COPY (\w+) \./\1$", (ROOT / "Dockerfile").read_text(), re.M))
    assert wanted <= copied, wanted - copied
