"""Logs: one JSON object per line in production, each with the request id it is about."""

import json
import logging
import logging.config
import uuid
from pathlib import Path
from typing import Any

import pytest
import urllib3
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import OperationalError as DatabaseError
from django.http import HttpResponse
from django.test import Client, RequestFactory
from django.utils.log import configure_logging
from kombu import Producer
from kombu.exceptions import OperationalError
from rest_framework.test import APIClient

from accounts.models import Account
from config.logs import AccessLogMiddleware, logging_config, request_id_bound
from processing import selectors
from tests.harness.origin import Origin
from tests.harness.service import TEST_ACCOUNT, Service, alone_environment, procfile_process
from tests.support import (
    encoded,
    free_port,
    multipart_upload,
    photo,
    wait_for_finish,
    wait_until,
)


def configured_logger(tmp_path: Path, fmt: str, name: str = "given") -> tuple[logging.Logger, Path]:
    path = tmp_path / "out.log"
    config = logging_config(level="INFO", fmt=fmt)
    config["handlers"]["console"] = {
        **config["handlers"]["console"],
        "class": "logging.FileHandler",
        "filename": str(path),
    }
    config["root"] = {"handlers": [], "level": "WARNING"}
    config["loggers"] = {name: {"handlers": ["console"], "level": "INFO", "propagate": False}}
    logging.config.dictConfig(config)
    return logging.getLogger(name), path


def test_a_json_line_carries_the_bound_request_id_extra_fields_and_the_traceback(
    tmp_path: Path,
) -> None:
    logger, path = configured_logger(tmp_path, "json")
    with request_id_bound("5b0c"):
        try:
            raise ValueError("bad byte")
        except ValueError:
            logger.exception("image %d failed", 7, extra={"image_id": 7})
    logger.info("outside")

    first, second = (json.loads(line) for line in path.read_text().splitlines())
    assert first["message"] == "image 7 failed"
    assert first["level"] == "ERROR"
    assert first["logger"] == "given"
    assert first["request_id"] == "5b0c"
    assert first["image_id"] == 7
    assert "ValueError: bad byte" in first["exc_info"]
    assert first["time"].endswith("Z")
    assert second["message"] == "outside"
    assert "request_id" not in second


def test_a_plain_line_shows_the_request_id_in_brackets(tmp_path: Path) -> None:
    logger, path = configured_logger(tmp_path, "plain")
    with request_id_bound("5b0c"):
        logger.info("started")
    assert path.read_text().rstrip().endswith("INFO given [5b0c] started")


@pytest.mark.django_db
def test_a_host_the_service_does_not_serve_is_a_warning_naming_it_not_an_error(
    tmp_path: Path,
) -> None:
    _, path = configured_logger(tmp_path, "json", name="django.security")
    answer = Client().get("/api/requests/", HTTP_HOST="scanner.example")
    assert answer.status_code == 400
    [line] = [json.loads(line) for line in path.read_text().splitlines()]
    assert line["level"] == "WARNING"
    assert line["logger"] == "django.security.DisallowedHost"
    assert line["message"].startswith("Invalid HTTP_HOST header: 'scanner.example'.")
    assert "exc_info" not in line


@pytest.mark.django_db
def test_a_login_links_token_is_in_no_line_django_writes_about_it(tmp_path: Path) -> None:
    """The access log left it out, but Django's own lines of a refused or spent link
    carried it whole, in the message and in the request beside it."""
    _, path = configured_logger(tmp_path, "json", name="django")
    token = "Hlhmv8LiveOneTimeToken0123456789"
    # A POST without the CSRF cookie (403), then a link that does not exist (410)
    assert Client(enforce_csrf_checks=True).post(f"/login/link/{token}/").status_code == 403
    assert Client().get(f"/login/link/{token}/").status_code == 410
    text = path.read_text()
    lines = [json.loads(line) for line in text.splitlines()]
    # (django.request's "Gone: …" is not written: the access log's line says it)
    assert {line["logger"] for line in lines} == {"django.security.csrf"}
    assert all("/login/link/<token>/" in line["message"] for line in lines)
    assert token not in text


@pytest.mark.django_db
def test_an_api_error_line_names_its_code_and_the_account_that_asked(
    tmp_path: Path, api: APIClient, member_client: Client, account: Account
) -> None:
    """An operator asked why a shop's uploads failed found "POST /api/upload/ 400", and
    neither which shop nor which of the dozen reasons."""
    # Given a key's upload of a file that is no CSV, a person's look at a request that is
    # not there, and a call with no key at all
    _, path = configured_logger(tmp_path, "json", name="access")
    upload = SimpleUploadedFile("cat.png", b"\x89PNG\r\n\x1a\n", content_type="image/png")
    assert api.post("/api/upload/", {"file": upload}).status_code == 400
    missing = f"/api/status/{uuid.uuid4()}/"
    assert member_client.get(missing).status_code == 404
    assert Client().get("/api/requests/").status_code == 401

    # Then each line names the error's code, and the account where one asked
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(line["status"], line.get("code"), line.get("account")) for line in lines] == [
        (400, "invalid_csv", account.name),
        (404, "not_found", account.name),
        (401, "not_authenticated", None),
    ]
    assert lines[0]["message"] == f"POST /api/upload/ 400 invalid_csv account={account.name}"


def configured_root(tmp_path: Path) -> Path:
    """Every logger's lines, as the service writes them (after Django's own logging
    config), into the file returned. The loggers configured_logger gave a file of their
    own send to the root's again."""
    for logger in logging.root.manager.loggerDict.values():
        if isinstance(logger, logging.Logger) and (logger.handlers or not logger.propagate):
            logger.handlers.clear()
            logger.propagate = True
            logger.setLevel(logging.NOTSET)
    path = tmp_path / "all.log"
    config = logging_config(level="INFO", fmt="json")
    config["handlers"]["console"] |= {"class": "logging.FileHandler", "filename": str(path)}
    configure_logging("logging.config.dictConfig", config)
    return path


@pytest.mark.django_db
def test_a_refused_call_is_one_line_not_also_djangos(
    tmp_path: Path,
    api: APIClient,
    member_client: Client,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Django's django.request wrote a second line for every 4xx and 5xx ("Not Found:
    /api/status/…/"), without the request id, the code or the account: twice the lines,
    and a 503 for a database away an ERROR twice over."""
    path = configured_root(tmp_path)
    missing = f"/api/status/{uuid.uuid4()}/"

    # When calls are refused: a request not there, a bad parameter, no key, a page not
    # there, and the database away
    assert api.get(missing).status_code == 404
    assert api.get("/api/requests/?page_size=abc").status_code == 400
    assert Client().get("/api/requests/").status_code == 401
    assert member_client.get(f"/requests/{uuid.uuid4()}/").status_code == 404

    def away(**_: Any) -> None:
        raise DatabaseError("connection to server at 127.0.0.1, port 5432 failed")

    monkeypatch.setattr(selectors, "request_get", away)
    assert api.get(missing).status_code == 503

    # Then each is the access log's line alone, and the database's cause once
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(line["logger"], line["level"], line.get("status")) for line in lines] == [
        ("access", "INFO", 404),
        ("access", "INFO", 400),
        ("access", "INFO", 401),
        ("access", "INFO", 404),
        ("processing.exceptions", "ERROR", None),
        ("access", "INFO", 503),
    ]
    assert lines[0]["code"] == "not_found"


@pytest.mark.django_db
def test_a_pages_unexpected_error_keeps_djangos_line_with_its_traceback(
    tmp_path: Path, member_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a page whose code fails as nothing expected
    def broken(**_: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(selectors, "requests_list", broken)
    path = configured_root(tmp_path)
    member_client.raise_request_exception = False

    # When it is asked for, then the 500 is logged once with the traceback (the only
    # place it is), beside the access line
    assert member_client.get("/").status_code == 500
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(line["logger"], line["level"]) for line in lines] == [
        ("django.request", "ERROR"),
        ("access", "INFO"),
    ]
    assert "RuntimeError: a bug" in lines[0]["exc_info"]


@pytest.mark.django_db
def test_the_access_log_asks_the_database_nothing_to_name_the_account(
    tmp_path: Path, member: Any, django_assert_num_queries: Any
) -> None:
    """It read a person's membership where the view had not: a query more for every page,
    and with the database away, an error where the view had answered 503."""
    # Given a view that knew the person, not their account (Django's logout, the admin)
    _, path = configured_logger(tmp_path, "json", name="access")
    request = RequestFactory().get("/somewhere/")
    request.user = type(member).objects.get(pk=member.pk)  # membership not read

    # When its line is logged, then no query is made, and no account named
    with django_assert_num_queries(0):
        AccessLogMiddleware(lambda _: HttpResponse(status=204))(request)
    [line] = [json.loads(line) for line in path.read_text().splitlines()]
    assert (line["message"], line.get("account")) == ("GET /somewhere/ 204", None)


@pytest.mark.django_db(transaction=True)  # its commits queue, as the web's do
def test_a_request_the_broker_could_not_take_is_named_in_the_line_that_says_so(
    tmp_path: Path, api: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "could not queue …; the sweep will" named no request: the upload's transaction
    commits, and queues, before the view knows the id it made; a re-run's named the
    request it re-runs, the one its URL names."""

    # Given a broker that refuses every message, as Redis does while it is away
    def refused(*_: Any, **__: Any) -> None:
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(Producer, "publish", refused)
    _, path = configured_logger(tmp_path, "json", name="processing.queue")

    # When a CSV is uploaded, and then re-run
    csv_file = SimpleUploadedFile(
        "products.csv",
        b"S. No.,Product Name,Input Image Urls\n1,Lamp,https://shop.example/a.jpg\n",
        "text/csv",
    )
    uploaded = api.post("/api/upload/", {"file": csv_file}, format="multipart")
    source_id = uploaded.json()["request_id"]
    rerun = api.post(f"/api/requests/{source_id}/rerun/", {"quality": 40}, format="json")

    # Then both are accepted, and each line that says its start waits for the sweep
    # names the request it is about
    assert (uploaded.status_code, rerun.status_code) == (202, 202)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(line["message"], line.get("request_id")) for line in lines] == [
        (f"could not queue processing.request_start('{request_id}',); the sweep will", request_id)
        for request_id in (source_id, rerun.json()["request_id"])
    ]
    assert all("OperationalError: Error 111" in line["exc_info"] for line in lines)


@pytest.mark.e2e
def test_production_processes_log_json_lines_naming_the_request(
    production_service: Service, origin: Origin
) -> None:
    # Given an upload to the service as deployed (DATABASE_URL set: JSON logs by default)
    run = uuid.uuid4().hex[:8]
    url = origin.add(f"/logs-{run}.jpg", encoded(photo(120, 90), "JPEG"))
    uploaded = multipart_upload(
        production_service.base_url, f"S. No.,Product Name,Input Image Urls\n1,Lamp,{url}\n"
    )
    request_id = json.loads(uploaded.data)["request_id"]
    finished = wait_for_finish(production_service.base_url, request_id, timeout=60)
    assert finished["status"] == "completed"

    def records(name: str) -> list[dict[str, object]]:
        lines = production_service.log(name).splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    # Then the web logged the upload and its status calls as JSON, with the request id
    web = [r for r in records("web") if r.get("request_id") == request_id]
    assert {
        f"request {request_id} created: 1 products, 1 images",
        "upload accepted: 1 products, 1 images",
        f"POST /api/upload/ 202 account={TEST_ACCOUNT}",
    } <= {str(r["message"]) for r in web}
    assert any(r.get("path") == f"/api/status/{request_id}/" and r["status"] == 200 for r in web)
    # And the worker's lines about the request are JSON with its id
    wait_until(
        lambda: any(r.get("request_id") == request_id for r in records("worker")),
        timeout=10,
        what="the worker's lines about the request",
    )
    about = [line for line in production_service.log("worker").splitlines() if request_id in line]
    assert about
    assert all(json.loads(line)["request_id"] == request_id for line in about)
    # Celery's own lines of the image batches too (received, succeeded), which name image
    # ids, not the request
    batch_lines = [
        record
        for record in records("worker")
        if isinstance(data := record.get("data"), dict)
        and data.get("name") == "processing.images_process"
    ]
    assert all(record.get("request_id") for record in batch_lines)
    assert [record.get("request_id") for record in batch_lines].count(request_id) >= 2


def _livez(base_url: str) -> bool:
    try:
        return urllib3.request("GET", f"{base_url}/livez", timeout=2, retries=False).status == 200
    except urllib3.exceptions.HTTPError:
        return False


@pytest.mark.e2e
@pytest.mark.parametrize("fmt", ["plain", "json"])
def test_the_web_servers_own_lines_keep_to_log_level(tmp_path: Path, fmt: str) -> None:
    """gunicorn's own lines were at INFO whatever LOG_LEVEL said: at WARNING, "Starting
    gunicorn", "Listening at" and each "Booting worker" still came."""
    # Given the web server started as the Procfile starts it, LOG_LEVEL at WARNING
    base_url = f"http://127.0.0.1:{free_port()}"
    environ = alone_environment(
        tmp_path, PORT=base_url.rsplit(":", 1)[1], WEB_CONCURRENCY="1",
        LOG_LEVEL="WARNING", LOG_FORMAT=fmt,
    )  # fmt: skip
    log = tmp_path / "web.log"
    with procfile_process("web", environ, log):
        wait_until(lambda: _livez(base_url), timeout=60, what="gunicorn to answer")
        # When it is asked for a host it does not serve (a WARNING) and is stopped
        urllib3.request("GET", f"{base_url}/", headers={"Host": "elsewhere.example"})
        wait_until(
            lambda: "Invalid HTTP_HOST header" in log.read_text(),
            timeout=10,
            what="the warning",
        )
    # Then the warning is logged, and none of gunicorn's INFO lines
    said = log.read_text()
    assert "Invalid HTTP_HOST header: 'elsewhere.example'" in said
    for info in ("Starting gunicorn", "Listening at", "Booting worker", "Handling signal"):
        assert info not in said, said
