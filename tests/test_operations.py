"""What the engineer on call and the integrating developer use: /healthz, the OpenAPI
schema and its Swagger UI (checked by schemathesis against the running service), and the
read-only admin."""

import contextlib
import csv
import errno
import fcntl
import json
import logging
import os
import re
import signal
import socket
import subprocess
import threading
import uuid
from datetime import timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema_rs
import pytest
import urllib3
from django.contrib.auth.models import User
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.db import connection
from django.db.migrations.recorder import MigrationRecorder
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

import net
from accounts import services
from accounts.models import Account
from config.celery import app
from processing import intake, metrics, webhooks
from processing.models import ProcessingRequest, ProductImage
from tests.harness.origin import Origin, image_answer
from tests.harness.proxy import AnswerLosingProxy
from tests.harness.redis import RedisServer
from tests.harness.service import BIN, Service, procfile_commands, web_alone
from tests.support import (
    encoded,
    free_port,
    get_json,
    multipart_upload,
    photo,
    python_run,
    wait_for_finish,
    wait_until,
)

HEADER = b"S. No.,Product Name,Input Image Urls\n"


@pytest.mark.django_db
def test_healthz_answers_ok_when_database_broker_and_storage_answer(client: Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok", "storage": "ok"}


@pytest.mark.django_db
def test_healthz_tells_a_storage_that_takes_no_file_and_livez_needs_no_restart(
    client: Client, settings: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The workers failed every image with storage_error behind a /healthz that answered
    200. Faked: the storage that takes no file, as a STORAGE_DIR under a file (a folder
    without write permission stops no test run as root)."""
    # Given a STORAGE_DIR nothing can be written in
    (tmp_path / "a-file").write_bytes(b"")
    settings.MEDIA_ROOT = tmp_path / "a-file" / "storage"

    # When the probes come, twice
    with caplog.at_level("INFO"):
        answers = [client.get("/healthz") for _ in range(2)]

    # Then each answers 503 naming the storage and why, without its path
    assert {answer.status_code for answer in answers} == {503}
    assert answers[0].json() == {
        "status": "unavailable",
        "database": "ok",
        "broker": "ok",
        "storage": "error: Not a directory",
    }
    # the log says where, once
    [warning] = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert warning.getMessage().startswith("healthz: the storage check fails: NotADirectoryError")
    assert str(tmp_path / "a-file") in warning.getMessage()
    # while /livez tells whatever restarts processes that this one needs none
    assert (client.get("/livez").status_code, client.get("/livez").json()) == (
        200,
        {"status": "ok"},
    )


@pytest.mark.django_db
def test_healthz_tells_a_storage_with_less_room_than_asked_for(
    client: Client, settings: Any, tmp_path: Path
) -> None:
    # Given a STORAGE_DIR with less free than STORAGE_MIN_FREE_BYTES (faked: an exabyte)
    settings.MEDIA_ROOT = tmp_path
    settings.STORAGE_MIN_FREE_BYTES = 2**60

    # Then /healthz answers 503, the storage full
    answer = client.get("/healthz")
    assert answer.status_code == 503
    assert answer.json()["storage"] == "error: full: less than STORAGE_MIN_FREE_BYTES free"

    # And the probe left no file behind
    assert [path for path in tmp_path.rglob("*") if path.is_file()] == []


@pytest.mark.django_db
def test_healthz_tells_a_storage_that_refuses_a_file_as_full(
    client: Client, settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a storage whose disk is full (faked: its writes refused with ENOSPC)
    settings.MEDIA_ROOT = tmp_path

    def full(*_: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(default_storage, "save", lambda *_: full())

    # Then /healthz answers 503, the storage full
    answer = client.get("/healthz")
    assert answer.status_code == 503
    assert answer.json()["storage"] == "error: full: No space left on device"


@pytest.mark.django_db
def test_healthz_tells_a_database_migrated_back_after_it_was_found_current(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    """A process that had once found every migration applied said so for its whole life:
    after `migrate processing 0014`, or a restore from an older backup, every API call
    failed with 500 behind a /healthz that answered 200."""
    # Given a process that has found the database current
    assert client.get("/healthz").status_code == 200
    # When the database loses its latest migration (the recorder's row `migrate` removes)
    latest = MigrationRecorder(connection).migration_qs.filter(app="processing").latest("id")
    latest.delete()
    # Then the next probe is told, naming what to do
    answer = client.get("/healthz")
    assert answer.status_code == 503
    assert answer.json()["database"] == "error: 1 migrations not applied (python manage.py migrate)"
    # And once migrated again, it is current again
    latest.save()
    assert client.get("/healthz").status_code == 200


def test_a_web_server_whose_storage_is_full_leaves_rotation_and_goes_on_answering(
    embedded_service: Service, tmp_path: Path
) -> None:
    # Given the web server with a storage fuller than it may be (faked: STORAGE_MIN_FREE_BYTES
    # an exabyte; the test's own disk is not filled)
    with web_alone(embedded_service, tmp_path, STORAGE_MIN_FREE_BYTES=str(2**60)) as web:
        # When the probes come
        health = urllib3.request("GET", f"{web.base_url}/healthz", timeout=10)
        live = urllib3.request("GET", f"{web.base_url}/livez", timeout=10)

        # Then /healthz takes it out of a load balancer's rotation, naming the storage
        assert health.status == 503
        assert health.json()["storage"] == "error: full: less than STORAGE_MIN_FREE_BYTES free"
        # while /livez leaves it running, and it answers whoever still calls it
        assert (live.status, live.json()) == (200, {"status": "ok"})
        assert get_json(f"{web.base_url}/api/requests/")[0] == 200
        assert "healthz: the storage check fails" in web.log("web")


@pytest.mark.django_db
def test_a_broker_away_is_logged_once_with_its_reason_not_an_error_per_probe(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    """Each probe of a web whose broker was away logged Django's ERROR "Service
    Unavailable: /healthz", naming no reason, every few seconds."""
    # Given a Redis broker where nothing listens (a port just found free)
    answering = {key: app.conf[key] for key in ("broker_write_url", "broker_transport")}
    app.conf.update(broker_write_url=f"redis://127.0.0.1:{free_port()}/0", broker_transport=None)
    try:
        # When the probes come, twice
        with caplog.at_level("INFO"):
            answers = [client.get("/healthz") for _ in range(2)]
    finally:
        app.conf.update(answering)

    # Then each answered 503 naming the broker, and the log says why, once
    assert {(answer.status_code, answer.json()["broker"]) for answer in answers} == {
        (503, "error: OperationalError")
    }
    [warning] = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert warning.getMessage().startswith("healthz: the broker check fails: OperationalError")
    assert "Connection refused" in warning.getMessage()
    # (and no access line per probe for the whole outage)
    assert [record.getMessage() for record in caplog.records if record.name == "access"] == []

    # When it answers again, then the next probe says so
    with caplog.at_level("INFO"):
        assert client.get("/healthz").status_code == 200
    assert caplog.records[-1].getMessage() == "healthz: the broker check passes again"


@pytest.mark.django_db
def test_images_whose_worker_stopped_renewing_its_hold_are_shown_on_metrics(
    client: Client, account: Account, settings: Any
) -> None:
    """A worker lost with its host left its images processing for WORK_LEASE_SECONDS,
    and nothing an operator watched told them from images at work."""
    # Given a request under way, one image held by a worker that renews its hold (every
    # third of the lease) and one whose worker stopped renewing it two renewals ago
    settings.WORK_LEASE_SECONDS = 300
    csv_data = HEADER + b"1,Lamp,https://shop.example/a.jpg\n2,Chair,https://shop.example/b.jpg\n"
    made = intake.request_create(
        account=account, csv_data=csv_data, public_base_url="http://testserver"
    )
    ProcessingRequest.objects.filter(pk=made.pk).update(status="processing")
    renewed, lost = ProductImage.objects.filter(request=made).order_by("id")
    for image, seconds_ago in ((renewed, 90), (lost, 210)):
        image.status, image.claimed_at = (
            "processing",
            timezone.now() - timedelta(seconds=seconds_ago),
        )
        image.save(update_fields=["status", "claimed_at"])

    # When /metrics is scraped, then it counts the one image
    samples = {
        sample.name: sample.value
        for family in text_string_to_metric_families(client.get("/metrics").content.decode())
        for sample in family.samples
    }
    assert samples["imgsvc_images_unrenewed"] == 1
    assert samples["imgsvc_images_pending"] == 2


@pytest.mark.django_db
def test_probes_answer_whatever_the_host_and_nothing_else_does(client: Client) -> None:
    """Load balancers, Kubernetes and Prometheus call a process by its address, which
    ALLOWED_HOSTS leaves out: the probes were answered 400 and every process looked down."""
    by_address = {"Host": "10.0.3.7:8000"}
    assert client.get("/healthz", headers=by_address).json()["status"] == "ok"
    assert client.get("/livez", headers=by_address).json() == {"status": "ok"}
    assert client.get("/metrics", headers=by_address).status_code == 200
    assert client.get("/api/status/x/", headers=by_address).status_code == 400
    assert client.post("/livez", headers=by_address).status_code == 400


def test_a_second_worker_of_a_host_leaves_the_metrics_port_to_the_first(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The Procfile's images and requests workers on one host share WORKER_METRICS_PORT:
    the second's bind failed inside Celery's worker_ready signal, as a traceback."""
    with socket.socket() as first:
        first.bind(("127.0.0.1", 0))
        first.listen()
        port = first.getsockname()[1]
        metrics.metrics_serve(port=port)
    assert f"metrics: port {port} is taken" in caplog.text


@pytest.mark.django_db
def test_the_schema_documents_every_operation(client: Client) -> None:
    response = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    schema = json.loads(response.content)
    assert schema["openapi"].startswith("3.")
    assert {path: sorted(operations) for path, operations in schema["paths"].items()} == {
        "/api/upload/": ["post"],
        "/api/status/{request_id}/": ["get"],
        "/api/requests/": ["get"],
        "/api/webhook-test/": ["post"],
        "/api/requests/{request_id}/": ["delete", "get"],
        "/api/requests/{request_id}/products/": ["get"],
        "/api/requests/{request_id}/webhook/": ["get", "post"],
        "/api/requests/{request_id}/cancel/": ["post"],
        "/api/requests/{request_id}/retry/": ["post"],
        "/api/requests/{request_id}/rerun/": ["post"],
        "/api/requests/{request_id}/output.csv": ["get"],
    }
    upload = schema["paths"]["/api/upload/"]["post"]["responses"]
    assert sorted(upload) == ["202", "400", "401", "403", "411", "413", "415", "422", "429", "503"]
    # What comes before any view, and the headers a generated client reads
    webhook_test = schema["paths"]["/api/webhook-test/"]["post"]["responses"]
    assert {"411", "413", "415", "503"} <= set(webhook_test)
    assert set(upload["429"]["headers"]) == set(upload["503"]["headers"]) == {"Retry-After"}
    assert set(upload["202"]["headers"]) == {"Idempotent-Replayed", "Location"}
    for path in ("/api/status/{request_id}/", "/api/requests/{request_id}/output.csv"):
        polled = schema["paths"][path]["get"]
        assert "If-None-Match" in [parameter["name"] for parameter in polled["parameters"]]
        assert "ETag" in polled["responses"]["200"]["headers"]
        assert set(polled["responses"]["304"]["headers"]) == {"ETag"}
    assert set(upload["401"]["headers"]) == {"WWW-Authenticate"}
    assert schema["paths"]["/api/upload/"]["post"]["security"][:2] == [
        {"ApiKey": []},
        {"ApiKeyHeader": []},
    ]
    assert schema["components"]["securitySchemes"]["ApiKeyHeader"]["name"] == "X-API-Key"
    assert [
        parameter["name"] for parameter in schema["paths"]["/api/upload/"]["post"]["parameters"]
    ] == ["Idempotency-Key"]
    assert upload["400"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"
    }
    # A file to pick, not a URI to type (Swagger UI's "Try it out").
    form = schema["paths"]["/api/upload/"]["post"]["requestBody"]["content"]["multipart/form-data"]
    name = form["schema"]["$ref"].rsplit("/", 1)[1]
    assert schema["components"]["schemas"][name]["properties"]["file"] == {
        "type": "string",
        "format": "binary",
        "description": "The product CSV.",
    }


def test_each_answer_is_documented_with_its_own_fields(client: Client) -> None:
    """Two serializers named alike were one component: the webhook test's answer was
    documented as a product."""
    schema = json.loads(client.get("/api/schema/", HTTP_ACCEPT="application/json").content)

    def fields(path: str, method: str, status: str) -> set[str]:
        content = schema["paths"][path][method]["responses"][status]["content"]
        found = content["application/json"]["schema"]
        if "$ref" in found:
            found = schema["components"]["schemas"][found["$ref"].rsplit("/", 1)[1]]
        return set(found["properties"])

    tested = fields("/api/webhook-test/", "post", "200")
    assert {"event_id", "delivered", "status_code"} <= tested
    assert "images" not in tested
    products = fields("/api/requests/{request_id}/products/", "get", "200")
    product = schema["components"]["schemas"]["Product"]
    assert "results" in products
    assert {"serial_number", "images"} <= set(product["properties"])


@pytest.mark.django_db
def test_a_status_body_without_a_webhook_and_a_list_of_requests_are_valid_under_the_schema(
    client: Client, account: Account
) -> None:
    """Under OpenAPI 3.0, `nullable` beside an allOf did not apply, so a strict client
    refused the null webhook of every request without one; 3.1 says null outright."""
    schema = json.loads(client.get("/api/schema/", HTTP_ACCEPT="application/json").content)
    request = intake.request_create(
        account=account,
        csv_data=HEADER + b"1,Lamp,https://shop.example/a.jpg\n",
        public_base_url="http://testserver",
    )
    api = Client(HTTP_AUTHORIZATION=f"Bearer {services.api_key_create(account=account)[1]}")
    body = api.get(f"/api/status/{request.pk}/").json()

    assert body["webhook"] is None
    status = {"$ref": "#/components/schemas/Status", "components": schema["components"]}
    jsonschema_rs.Draft202012Validator(status).validate(body)
    # And the list of requests, whose rows are the same body less the webhook
    listed = api.get("/api/requests/").json()
    assert [row["request_id"] for row in listed["results"]] == [str(request.pk)]
    page = {"$ref": "#/components/schemas/RequestPage", "components": schema["components"]}
    jsonschema_rs.Draft202012Validator(page).validate(listed)
    # an expired one too, whose links are null
    ProcessingRequest.objects.filter(pk=request.pk).update(expired_at=timezone.now())
    jsonschema_rs.Draft202012Validator(page).validate(api.get("/api/requests/").json())


@pytest.mark.django_db
def test_the_schema_describes_the_events_receivers_get_their_headers_and_the_test_event(
    client: Client, account: Account, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The schema had no `webhooks`: a receiver's author had the README alone for the
    event's body, the three signature headers and the test event's other shape."""
    schema = json.loads(client.get("/api/schema/", HTTP_ACCEPT="application/json").content)

    # Each event, POSTed with the three signature headers, the timestamp's tolerance said
    events = schema["webhooks"]
    assert set(events) == {"requestFinished", "testEvent"}
    for event in events.values():
        headers = {header["name"]: header for header in event["post"]["parameters"]}
        assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
        assert all(header["in"] == "header" and header["required"] for header in headers.values())
        assert "more than 5 minutes" in headers["webhook-timestamp"]["description"]

    def body_schema(name: str) -> dict[str, Any]:
        found = events[name]["post"]["requestBody"]["content"]["application/json"]["schema"]
        return {**found, "components": schema["components"]}

    # And what is sent is valid under it: a finished request's event, as recorded
    # (the receiver faked at net.post, the one thing here that would leave the machine)
    sent: list[tuple[dict[str, str], bytes]] = []

    def receiver(url: str, body: bytes, headers: dict[str, str], *_: Any) -> net.Posted:
        sent.append((headers, body))
        return net.Posted(204)

    monkeypatch.setattr(net, "post", receiver)
    request = intake.request_create(
        account=account,
        csv_data=HEADER + b"1,Lamp,https://shop.example/a.jpg\n",
        public_base_url="http://testserver",
        webhook_url="https://hooks.example/x",
    )
    ProcessingRequest.objects.filter(pk=request.pk).update(status="completed")
    webhooks.webhook_schedule(request=request)
    webhooks.webhook_send(request_id=request.pk)
    # and a test event
    webhooks.webhook_test(account=account, url="https://hooks.example/x", by="tests")
    (finished_headers, finished), (test_headers, test) = sent
    jsonschema_rs.Draft202012Validator(body_schema("requestFinished")).validate(
        json.loads(finished)
    )
    jsonschema_rs.Draft202012Validator(body_schema("testEvent")).validate(json.loads(test))
    # and one recorded before the re-used images were counted, sent again, without them
    recorded_before = json.loads(finished)
    del recorded_before["outputs"]
    jsonschema_rs.Draft202012Validator(body_schema("requestFinished")).validate(recorded_before)
    for headers in (finished_headers, test_headers):
        assert {"webhook-id", "webhook-timestamp", "webhook-signature"} <= set(headers)

    # And the schema passes drf-spectacular's own validation, warnings counted as errors
    call_command(
        "spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml")
    )


@pytest.mark.django_db
def test_swagger_ui_and_its_assets_are_served(client: Client) -> None:
    page = client.get("/api/docs/")
    assert page.status_code == 200
    assert b"swagger-ui" in page.content
    asset = client.get("/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")
    assert asset.status_code == 200


@pytest.mark.django_db
def test_the_admin_lists_images_searchable_by_product_name_and_refuses_edits(
    client: Client, settings: Any, tmp_path: Path, account: Account
) -> None:
    settings.MEDIA_ROOT = tmp_path
    request = intake.request_create(
        account=account,
        csv_data=HEADER
        + b"1,Red lamp,https://shop.example/lamp.jpg\n002,Chair,https://shop.example/c.jpg\n",
        public_base_url="http://testserver",
    )
    client.force_login(User.objects.create_superuser("admin", "admin@example.com", "x"))

    found = client.get("/admin/processing/productimage/", {"q": "red lamp"})
    by_request = client.get("/admin/processing/processingrequest/", {"q": str(request.pk)})
    add = client.get("/admin/processing/productimage/add/")
    products = client.get("/admin/processing/product/")

    assert found.status_code == 200
    assert b"https://shop.example/lamp.jpg" in found.content
    assert b"https://shop.example/c.jpg" not in found.content
    assert str(request.pk).encode() in by_request.content
    assert add.status_code == 403
    # and products with their S. No. as the CSV wrote it
    listed = re.findall(r'class="field-serial"><a [^>]*>([^<]*)<', products.content.decode())
    assert listed == ["1", "002"]


@pytest.mark.e2e
def test_schemathesis_finds_no_server_error_and_no_response_off_the_schema(
    embedded_service: Service, tmp_path: Path
) -> None:
    # An account of its own: schemathesis follows the list of requests into re-runs and
    # deletions, and with the tests' account it re-ran another test's 240 images of a
    # deliberately slow origin, five times over, and the requests of the tests after it
    # waited minutes behind them.
    created = embedded_service.manage(
        "apikey", "create", "--account", f"schemathesis-{uuid.uuid4().hex[:8]}"
    )
    api_key = created.splitlines()[-1]
    result = subprocess.run(
        [
            str(BIN / "schemathesis"),
            "run",
            f"{embedded_service.base_url}/api/schema/",
            "--header",
            f"Authorization: Bearer {api_key}",
            "--checks",
            "not_a_server_error,response_schema_conformance,status_code_conformance,"
            "content_type_conformance",
            "--max-examples",
            "30",
            "--seed",
            "1",
            "--report",
            "junit",
            "--report-junit-path",
            str(tmp_path / "junit.xml"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-5000:]
    assert "passed" in result.stdout
    # Every operation was exercised.
    exercised = re.findall(
        r'<testcase name="((?:GET|POST|DELETE) [^"]+)"', (tmp_path / "junit.xml").read_text()
    )
    assert len(set(exercised)) == 13
    assert "GET /api/requests/" in exercised
    assert "DELETE /api/requests/{request_id}/" in exercised


@pytest.mark.e2e
def test_gunicornc_reaches_the_web_server_through_the_deployments_own_folder(
    embedded_service: Service,
) -> None:
    """Not gunicorn's default, ~/.gunicorn/gunicorn.ctl, which every gunicorn of the user
    shares: the last one started took it over, and a command meant for one service reached
    another."""
    socket_path = Path(embedded_service.env["VAR_DIR"]) / "gunicorn.ctl"
    shown = workers_shown(socket_path)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert json.loads(shown.stdout)["count"] == int(embedded_service.env["WEB_CONCURRENCY"])


@pytest.mark.e2e
def test_a_second_web_server_on_the_same_var_dir_stops_and_leaves_the_first_its_socket(
    embedded_service: Service,
) -> None:
    """A second gunicorn on the deployment's folder took its control socket over (gunicorn
    removes whatever is at the path) and removed it as it stopped, even one that could not
    bind its port: the running server was left without one ("No such file or directory")."""
    socket_path = Path(embedded_service.env["VAR_DIR"]) / "gunicorn.ctl"
    first = socket_path.stat().st_ino
    # When a second web server is started on the same folder, on the same port (in use)
    # and on a port of its own
    for port in (embedded_service.env["PORT"], str(free_port())):
        second = web_run_once({**embedded_service.env, "PORT": port, "WEB_CONCURRENCY": "1"})

        # Then it stops at once, saying why
        assert second.returncode == 1, second.stdout + second.stderr
        assert "another gunicorn (master pid " in second.stderr
        assert f"is running with the control socket {socket_path}" in second.stderr
        # and the first keeps its socket, which still reaches it
        assert socket_path.stat().st_ino == first
        shown = workers_shown(socket_path)
        assert shown.returncode == 0, shown.stdout + shown.stderr
        assert json.loads(shown.stdout)["count"] == int(embedded_service.env["WEB_CONCURRENCY"])

    # When `make run` is started on the same folder, then it stops before its first step,
    # naming the running server, and leaves the counters its `rm -rf` used to delete (the
    # running server's /metrics answered 500 from then on)
    metrics = Path(
        embedded_service.env.get("PROMETHEUS_MULTIPROC_DIR")
        or Path(embedded_service.env["VAR_DIR"]) / "metrics"
    )
    assert metrics.is_dir()
    again = subprocess.run(
        ["make", "--no-print-directory", "-o", str(BIN / ".installed"), "run",
         f"PORT={free_port()}"],
        cwd=Path(__file__).resolve().parent.parent, env=embedded_service.env,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert again.returncode != 0, again.stdout + again.stderr
    assert f"A service is already running on {embedded_service.env['VAR_DIR']}" in again.stderr
    assert "migrate" not in again.stdout
    assert metrics.is_dir()


@pytest.mark.e2e
def test_a_web_server_upgraded_by_usr2_keeps_the_second_server_check(
    embedded_service: Service, tmp_path: Path
) -> None:
    """The lock was closed as the upgraded master was executed, so once the old master
    stopped nobody held it: a second gunicorn (or `make run`) on the folder started."""
    lock_path = tmp_path / "gunicorn.ctl.lock"
    with web_alone(embedded_service, tmp_path) as web:
        old = web.processes["web"].pid
        try:
            # When the master is upgraded in place, as gunicorn's docs tell: USR2, then
            # TERM to the old master once the new one serves
            os.kill(old, signal.SIGUSR2)

            def holder() -> int:
                named = lock_path.read_text().strip()
                return int(named) if named and named != str(old) else 0

            new = wait_until(holder, timeout=30, what="the new master to name itself in the lock")
            wait_until(
                lambda: web.log("web").count("Booting worker") >= 2,
                timeout=60,
                what="the new master's worker",
            )
            os.kill(old, signal.SIGTERM)
            web.processes["web"].wait(timeout=30)

            # Then the new master holds the lock, named in it
            with lock_path.open("rb") as lock, pytest.raises(BlockingIOError):
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            assert lock_path.read_text() == f"{new}\n"
            # and serves, and a second web server on its control socket stops, naming it
            assert get_json(f"{web.base_url}/api/requests/")[0] == 200
            second = web_run_once({**web.env, "PORT": str(free_port())})
            assert second.returncode == 1, second.stdout + second.stderr
            assert f"another gunicorn (master pid {new}) is running" in second.stderr
        finally:
            # The new master is in the old one's process group, which web.stop() leaves
            # alone once the old one has gone.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(old, signal.SIGTERM)
            web.processes["web"].wait(timeout=30)
            wait_until(lambda: not _group_alive(old), timeout=30, what="the masters to stop")


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.e2e
def test_a_web_server_whose_control_socket_folder_takes_no_file_serves_and_says_so(
    embedded_service: Service, tmp_path: Path
) -> None:
    """A VAR_DIR the web server could not write in stopped it with on_starting's OSError
    traceback: before the second-server check it served, without its control socket. Faked:
    the folder under a file (a folder without write permission stops no test run as root)."""
    # Given a control socket in a folder that cannot be made
    (tmp_path / "a-file").write_bytes(b"")
    socket_path = tmp_path / "a-file" / "var" / "gunicorn.ctl"

    # When the web server starts, then it serves
    with web_alone(
        embedded_service, tmp_path, GUNICORN_CMD_ARGS=f"--control-socket {socket_path}"
    ) as web:
        assert get_json(f"{web.base_url}/api/requests/")[0] == 200
        # saying that the second-server check is off, and why
        [line] = [
            line
            for line in web.log("web").splitlines()
            if f"No check for a second gunicorn on the control socket {socket_path}: "
            f"its lock {socket_path}.lock cannot be opened (Not a directory)" in line
        ]
        assert "WARNING" in line


@pytest.mark.e2e
def test_a_web_server_beside_one_of_a_release_before_the_lock_leaves_it_its_socket(
    embedded_service: Service, tmp_path: Path
) -> None:
    """An upgrade's new web server, started on the deployment's folder beside the old
    release's, found no lock (the old one takes none), took its control socket and removed
    it as it stopped. The old master is stood in for by a Unix socket that accepts
    connections at the path, as its control server does: the old release's code is not
    in this tree."""
    socket_path = tmp_path / "gunicorn.ctl"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as old_master:
        old_master.bind(str(socket_path))
        old_master.listen()
        first = socket_path.stat().st_ino

        # When the web server is started on it
        second = web_run_once(
            {
                **embedded_service.env,
                "PORT": str(free_port()),
                "WEB_CONCURRENCY": "1",
                "GUNICORN_CMD_ARGS": f"--control-socket {socket_path}",
            }
        )

        # Then it stops at once, saying why, and the old one keeps its socket
        assert second.returncode == 1, second.stdout + second.stderr
        assert f"another gunicorn is running with the control socket {socket_path}" in (
            second.stderr
        )
        assert socket_path.stat().st_ino == first
    # and a socket file nobody answers on any more (its master ended) is taken, as before
    with web_alone(
        embedded_service, tmp_path, GUNICORN_CMD_ARGS=f"--control-socket {socket_path}"
    ) as web:
        assert get_json(f"{web.base_url}/api/requests/")[0] == 200


def web_run_once(env: dict[str, str]) -> "subprocess.CompletedProcess[str]":
    """The Procfile's web server started with env, run until it ends (a second one on a
    folder whose server runs stops at its start)."""
    return subprocess.run(
        ["/bin/sh", "-c", f"exec {procfile_commands()['web']}"],
        cwd=Path(__file__).resolve().parent.parent,
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def workers_shown(socket_path: Path) -> "subprocess.CompletedProcess[str]":
    """gunicornc's `show workers` through the control socket at socket_path, as JSON."""
    return subprocess.run(
        [str(BIN / "gunicornc"), "-s", str(socket_path), "-c", "show workers", "-j"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def cli_env(service: Service) -> dict[str, str]:
    """The client's environment: the service's key, as a script would pass it."""
    return {**os.environ, "IMGSVC_API_KEY": service.api_key}


@pytest.mark.e2e
def test_the_command_line_client_submits_waits_and_saves_the_output_csv(
    embedded_service: Service, origin: Origin, tmp_path: Path
) -> None:
    # Given a CSV of two products on the origin
    run = uuid.uuid4().hex[:8]
    urls = [
        origin.add(f"/{run}/{n}.jpg", encoded(photo(200, 150, n), "JPEG", quality=90))
        for n in range(3)
    ]
    csv_path = tmp_path / "products.csv"
    csv_path.write_text(
        f'S. No.,Product Name,Input Image Urls\n1,Lamp,"{urls[0]},{urls[1]}"\n2,Chair,{urls[2]}\n'
    )
    output = tmp_path / "out.csv"

    # When the client submits it and waits
    submitted = subprocess.run(
        [str(BIN / "imgsvc"), "--server", embedded_service.base_url, "submit", str(csv_path),
         "--wait", "--output", str(output)],
        capture_output=True, text=True, timeout=120, check=False, env=cli_env(embedded_service),
    )  # fmt: skip

    # Then it ends well, having said what it sent and how it ended (no progress bar: its
    # stderr is not a terminal), and the output CSV is saved
    assert submitted.returncode == 0, submitted.stderr
    request_id = submitted.stdout.strip()
    assert re.fullmatch(
        rf"request {request_id}: 3 images\noutput CSV saved to {output}\n"
        r"completed: 3 compressed, 0 failed; [\d,]+ bytes in, [\d,]+ out\n",
        submitted.stderr,
    )
    rows = output.read_text().splitlines()
    assert rows[0] == "S. No.,Product Name,Input Image Urls,Output Image Urls"
    assert len(rows) == 3

    # And `status` shows the same request
    shown = subprocess.run(
        [str(BIN / "imgsvc"), "--server", embedded_service.base_url, "status", request_id],
        capture_output=True, text=True, timeout=60, check=True, env=cli_env(embedded_service),
    )  # fmt: skip
    assert json.loads(shown.stdout)["status"] == "completed"
    assert json.loads(shown.stdout)["file_name"] == "products.csv"

    # And `list` finds it among the account's completed requests, newest first
    listed = subprocess.run(
        [str(BIN / "imgsvc"), "--server", embedded_service.base_url, "list",
         "--status", "completed", "--limit", "1"],
        capture_output=True, text=True, timeout=60, check=True, env=cli_env(embedded_service),
    )  # fmt: skip
    assert re.fullmatch(
        rf"{request_id}  completed +  \S+Z  3/3 images  products.csv\n", listed.stdout
    )

    # And the same CSV submitted again, its sources unchanged, says none was compressed
    again = subprocess.run(
        [str(BIN / "imgsvc"), "--server", embedded_service.base_url, "submit", str(csv_path),
         "--wait", "--output", str(tmp_path / "again.csv")],
        capture_output=True, text=True, timeout=120, check=False, env=cli_env(embedded_service),
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert re.search(
        r"\ncompleted: 0 compressed, 3 re-used unchanged, 0 failed; [\d,]+ bytes in", again.stderr
    )


@pytest.mark.e2e
def test_the_command_line_client_shows_a_webhooks_delivery_and_sends_it_again(
    embedded_service: Service, origin: Origin, tmp_path: Path
) -> None:
    """A catalogue team whose receiver was down had to use curl, or ask an operator."""
    # Given a request whose receiver failed every attempt, then was mended
    run = uuid.uuid4().hex[:8]
    hook = f"/{run}/hook"
    origin.post_statuses[hook] = [500] * 10
    url = origin.add(f"/{run}/a.jpg", encoded(photo(200, 150, 1), "JPEG", quality=90))
    csv_path = tmp_path / "products.csv"
    csv_path.write_text(f"S. No.,Product Name,Input Image Urls\n1,Lamp,{url}\n")
    command = [str(BIN / "imgsvc"), "--server", embedded_service.base_url]

    def imgsvc(*arguments: str) -> Any:
        # In the test's folder: `submit --wait` saves REQUEST_ID-output.csv where it runs.
        done = subprocess.run(
            [*command, *arguments],
            capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path,
            env=cli_env(embedded_service),
        )  # fmt: skip
        return json.loads(done.stdout) if done.stdout.startswith("{") else done.stdout.strip()

    request_id = imgsvc("submit", str(csv_path), "--wait", "--webhook-url", origin.base_url + hook)
    failed = wait_until(
        lambda: (shown := imgsvc("webhook", request_id))["state"] == "failed" and shown,
        timeout=60,
        what="the webhook's attempts to run out",
    )
    assert failed["last_status_code"] == 500
    shown = subprocess.run(
        [*command, "webhook", request_id], capture_output=True, env=cli_env(embedded_service)
    )
    assert shown.returncode == 1  # a script can tell
    origin.post_statuses[hook] = []

    # When the client sends it again
    resent = imgsvc("webhook-resend", request_id)

    # Then the event goes again, under its own id, and is delivered
    assert resent["event_id"] == failed["event_id"]
    delivered = wait_until(
        lambda: (shown := imgsvc("webhook", request_id))["state"] == "delivered" and shown,
        timeout=60,
        what="the event sent again to be delivered",
    )
    assert delivered["last_status_code"] == 204
    ids = {headers["webhook-id"] for headers, _ in origin.posts_to(hook)}
    assert ids == {failed["event_id"]}


@pytest.mark.e2e
def test_the_command_line_client_shows_csv_problems_by_row(
    embedded_service: Service, tmp_path: Path
) -> None:
    csv_path = tmp_path / "bad.csv"
    csv_path.write_text("S. No.,Product Name,Input Image Urls\n1,,ftp://x/a.jpg\n")
    result = subprocess.run(
        [str(BIN / "imgsvc"), "--server", embedded_service.base_url, "submit", str(csv_path)],
        capture_output=True, text=True, timeout=60, check=False, env=cli_env(embedded_service),
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "HTTP 400: Invalid CSV.",
        "  row 2, column Product Name: Product Name is empty.",
        "  row 2, column Input Image Urls: 'ftp://x/a.jpg' is not an absolute http(s) URL.",
    ]


@pytest.mark.e2e
def test_the_command_line_client_sends_an_upload_whose_answer_was_lost_again_making_one_request(
    embedded_service: Service, origin: Origin, tmp_path: Path
) -> None:
    # Given a connection to the service that loses the answer to the first upload
    proxy = AnswerLosingProxy(upstream_port=urlsplit(embedded_service.base_url).port or 80)
    proxy.start()
    url = origin.add(f"/{uuid.uuid4().hex[:8]}/a.jpg", encoded(photo(200, 150, 1), "JPEG"))
    csv_path = tmp_path / "products.csv"
    csv_path.write_text(f"S. No.,Product Name,Input Image Urls\n1,Lamp,{url}\n")
    before = scrape(embedded_service.base_url)

    # When the client submits through it
    try:
        submitted = subprocess.run(
            [str(BIN / "imgsvc"), "--server", proxy.base_url, "submit", str(csv_path)],
            capture_output=True, text=True, timeout=120, check=False,
            env=cli_env(embedded_service),
        )  # fmt: skip
    finally:
        proxy.stop()

    # Then it sent the upload again, and got the request the first sending made: one
    # request, not two
    assert proxy.lost == 1
    assert submitted.returncode == 0, submitted.stderr
    after = scrape(embedded_service.base_url)
    for outcome in ("accepted", "replayed"):
        key = ("imgsvc_uploads_total", (("outcome", outcome),))
        assert after.get(key, 0) - before.get(key, 0) == 1, outcome
    finished = wait_for_finish(embedded_service.base_url, submitted.stdout.strip(), timeout=60)
    assert finished["status"] == "completed"


@pytest.mark.e2e
def test_a_ctrl_c_stops_the_following_not_the_request_and_wait_takes_it_up_again(
    embedded_service: Service, origin: Origin, tmp_path: Path
) -> None:
    # Given an image whose origin holds its answer until the test lets it go
    asked, answer = threading.Event(), threading.Event()
    jpeg = encoded(photo(200, 150, 2), "JPEG", quality=90)

    def held(handler: BaseHTTPRequestHandler) -> None:
        asked.set()
        answer.wait(60)
        image_answer(handler, jpeg)

    url = origin.add(f"/{uuid.uuid4().hex[:8]}/held.jpg", serve=held)
    csv_path = tmp_path / "products.csv"
    csv_path.write_text(f"S. No.,Product Name,Input Image Urls\n1,Lamp,{url}\n")
    command = [str(BIN / "imgsvc"), "--server", embedded_service.base_url]
    output = tmp_path / "out.csv"

    # When the client, following the request, is interrupted while the image downloads
    try:
        following = subprocess.Popen(
            [*command, "submit", str(csv_path), "--output", str(output)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=cli_env(embedded_service),
        )  # fmt: skip
        try:
            wait_until(asked.is_set, timeout=60, what="the image to be asked for")
            following.send_signal(signal.SIGINT)
            stdout, stderr = following.communicate(timeout=30)
        finally:
            following.kill()
    finally:
        answer.set()

    # Then it says the request goes on and how to follow it again, without a traceback,
    # and gives its id
    assert following.returncode == 130, stderr
    request_id = stdout.strip()
    assert (
        f"stopped following request {request_id}; it goes on. "
        f"`imgsvc wait {request_id} --output {output}` follows it again."
    ) in stderr
    assert "Traceback" not in stderr

    # And that `wait` follows it to its end and saves its output CSV
    waited = subprocess.run(
        [*command, "wait", request_id, "--output", str(output)],
        capture_output=True, text=True, timeout=120, check=False, env=cli_env(embedded_service),
    )  # fmt: skip
    assert waited.returncode == 0, waited.stderr
    assert waited.stdout.strip() == request_id
    assert "completed: 1 compressed, 0 failed" in waited.stderr
    assert output.read_text().splitlines()[1].startswith(f"1,Lamp,{url},")


def scrape(base_url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """/metrics as {(sample name, sorted labels): value}."""
    response = urllib3.request("GET", f"{base_url}/metrics", timeout=10)
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.data.decode())
        for sample in family.samples
    }


@pytest.mark.e2e
def test_metrics_count_uploads_images_bytes_and_time_across_worker_processes(
    embedded_service: Service, origin: Origin
) -> None:
    # Given the counters before
    before = scrape(embedded_service.base_url)

    # When a request with two good images and one missing one runs to the end
    run = uuid.uuid4().hex[:8]
    good = [
        origin.add(f"/metrics-{run}/{n}.jpg", encoded(photo(300, 200, n), "JPEG", quality=90))
        for n in range(2)
    ]
    csv_text = HEADER.decode() + f'1,Lamp,"{good[0]},{good[1]},{origin.base_url}/gone-{run}.jpg"\n'
    uploaded = multipart_upload(embedded_service.base_url, csv_text)
    assert uploaded.status == 202
    body = json.loads(uploaded.data)
    finished = wait_for_finish(embedded_service.base_url, body["request_id"], timeout=60)
    assert finished["status"] == "completed_with_errors"
    after = scrape(embedded_service.base_url)

    # Then the web process's /metrics shows what the worker processes counted
    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert grew("imgsvc_uploads_total", outcome="accepted") >= 1
    assert grew("imgsvc_images_processed_total", outcome="succeeded", reason="") >= 2
    assert grew("imgsvc_images_processed_total", outcome="failed", reason="http_404") >= 1
    assert grew("imgsvc_image_input_bytes_total") > grew("imgsvc_image_output_bytes_total") > 0
    assert grew("imgsvc_image_stage_seconds_count", stage="encode") >= 2
    assert grew("imgsvc_request_seconds_count") >= 1
    assert grew("imgsvc_requests_finished_total", status="completed_with_errors") >= 1
    # And the backlog gauges are there, read from the broker and the database
    assert ("imgsvc_queue_messages", (("queue", "images"),)) in after
    assert ("imgsvc_queue_messages", (("queue", "requests"),)) in after
    assert ("imgsvc_queue_messages", (("queue", "webhooks"),)) in after
    assert ("imgsvc_images_pending", ()) in after
    # And a worker serves the same counters on its own port, for hosts without a web server
    from_worker = scrape(f"http://127.0.0.1:{embedded_service.env['WORKER_METRICS_PORT']}")
    key = ("imgsvc_images_processed_total", (("outcome", "succeeded"), ("reason", "")))
    assert from_worker[key] == after[key]


@pytest.mark.e2e
def test_the_command_line_client_retries_reruns_cancels_and_deletes(
    embedded_service: Service, origin: Origin, tmp_path: Path
) -> None:
    # Given a finished request whose second image was missing from the origin
    run = uuid.uuid4().hex[:8]
    found = origin.add(f"/{run}/found.jpg", encoded(photo(200, 150), "JPEG", quality=90))
    missing = f"{origin.base_url}/{run}/missing.jpg"
    csv_path = tmp_path / "products.csv"
    csv_path.write_text(
        f"S. No.,Product Name,Input Image Urls\n1,Lamp,{found}\n02,Chair,{missing}\n"
    )

    def imgsvc(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "imgsvc"), "--server", embedded_service.base_url, *args],
            capture_output=True, text=True, timeout=120, check=False,
            env=cli_env(embedded_service),
        )  # fmt: skip

    submitted = imgsvc("submit", str(csv_path), "--output", str(tmp_path / "1.csv"))
    assert submitted.returncode == 1, submitted.stderr
    request_id = submitted.stdout.strip()
    assert "completed_with_errors: 1 compressed, 1 failed" in submitted.stderr
    # with the image that failed, by its S. No. as written, and why
    assert f"  02 Chair: {missing}: http_404: " in submitted.stderr

    # When the origin starts answering and the client retries the failed image
    origin.add(f"/{run}/missing.jpg", encoded(photo(200, 150, 1), "JPEG", quality=90))
    retried = imgsvc("retry", request_id, "--wait", "--output", str(tmp_path / "2.csv"))

    # Then the same request completes, its output CSV rewritten with both images
    assert retried.returncode == 0, retried.stderr
    assert retried.stdout.strip() == request_id
    assert f"request {request_id}: 1 of 2 images queued again" in retried.stderr
    assert "completed: 2 compressed, 0 failed" in retried.stderr
    rows = (tmp_path / "2.csv").read_text().splitlines()[1:]
    assert all(row.count("http") == 2 for row in rows), rows
    first_output_url = next(csv.reader(rows))[-1]
    assert urllib3.request("GET", first_output_url, timeout=10).status == 200

    # And a re-run at another quality, as AVIF, is a new request over the same products
    rerun = imgsvc(
        "rerun",
        request_id,
        "--quality",
        "30",
        "--output-format",
        "avif",
        "--wait",
        "--output",
        str(tmp_path / "3.csv"),
    )
    assert rerun.returncode == 0, rerun.stderr
    rerun_id = rerun.stdout.strip()
    assert rerun_id != request_id
    status = json.loads(imgsvc("status", rerun_id).stdout)
    assert status["source_request_id"] == request_id
    rows = (tmp_path / "3.csv").read_text().splitlines()[1:]
    assert all(row.endswith(".avif") for row in rows), rows
    # served as the other formats are (the media route once knew only jpg and webp)
    output_url = next(csv.reader(rows))[-1].split(",")[0]
    served = urllib3.request("GET", output_url, timeout=10)
    assert (served.status, served.headers["Content-Type"]) == (200, "image/avif")
    assert served.data[4:12] == b"ftypavif"

    # And cancelling a finished request says why it cannot
    cancelled = imgsvc("cancel", request_id)
    assert cancelled.returncode == 2
    assert cancelled.stderr.startswith("HTTP 409: The request has already finished")

    # And deleting it removes its outputs at once; its re-run keeps its own
    deleted = imgsvc("delete", request_id)
    assert (deleted.returncode, deleted.stderr) == (0, f"request {request_id}: deleted\n")
    assert json.loads(deleted.stdout)["expired_by"] == "account"
    listed = imgsvc("list", "--limit", "20").stdout.splitlines()
    [line] = [line for line in listed if line.startswith(request_id)]
    assert line.endswith("2/2 images (deleted)  products.csv"), line
    # and its re-run says what it re-ran
    [line] = [line for line in listed if line.startswith(rerun_id)]
    assert line.endswith(f"  re-run of {request_id[:8]}"), line
    gone = imgsvc("status", request_id)
    assert gone.returncode == 2
    assert "at the account's request" in gone.stderr
    assert urllib3.request("GET", first_output_url, timeout=10).status == 404
    assert urllib3.request("GET", output_url, timeout=10).status == 200

    # And a key the service does not know is refused, saying where it came from
    refused = imgsvc("--api-key", "Unknown.key", "status", rerun_id)
    assert refused.returncode == 2
    assert "the API key sent came from --api-key" in refused.stderr


@pytest.mark.e2e
def test_the_command_line_client_sends_a_test_event_and_says_what_the_receiver_answered(
    embedded_service: Service, origin: Origin
) -> None:
    path = f"/hooks/{uuid.uuid4().hex}"
    origin.post_statuses[path] = [204, 503]

    def webhook_test() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "imgsvc"), "--server", embedded_service.base_url, "webhook-test",
             origin.base_url + path],
            capture_output=True, text=True, timeout=60, check=False,
            env=cli_env(embedded_service),
        )  # fmt: skip

    delivered, refused = webhook_test(), webhook_test()
    assert delivered.returncode == 0, delivered.stderr
    assert json.loads(delivered.stdout)["status_code"] == 204
    assert refused.returncode == 1
    assert json.loads(refused.stdout)["error"] == "HTTP 503"
    [(headers, _), _] = origin.posts_to(path)
    assert headers["webhook-id"] == json.loads(delivered.stdout)["event_id"]


@pytest.mark.e2e
def test_metrics_answer_with_empty_queues_at_zero_and_without_a_database(tmp_path: Path) -> None:
    """On Redis a queue with no message is no key: its gauge read as an error and dropped
    the queues after it, with a traceback at every scrape. And with the database away,
    /metrics answered 500, losing every counter in the outage it should show."""
    redis = RedisServer(port=free_port(), workdir=tmp_path)  # a Redis of no queue at all
    redis.start()
    try:
        scrape = (
            "import django; django.setup(); from prometheus_client import generate_latest; "
            "from processing.metrics import metrics_registry; "
            "print(generate_latest(metrics_registry()).decode())"
        )
        environ = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "VAR_DIR": str(tmp_path / "var"),
            "CELERY_BROKER_URL": redis.url,
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:{free_port()}/nowhere",
        }
        result = python_run(["-c", scrape], environ)
    finally:
        redis.stop()
    assert result.returncode == 0, result.stderr
    for queue in ("images", "requests", "webhooks"):
        assert f'imgsvc_queue_messages{{queue="{queue}"}} 0.0' in result.stdout
    assert "imgsvc_images_pending" not in result.stdout  # the database's: left out
    assert "backlog unavailable: OperationalError" in result.stderr
    assert "Traceback" not in result.stderr


UNMIGRATED_HEALTH = """
import django
django.setup()
from django.test import Client
answer = Client().get("/healthz")
print(answer.status_code, answer.json()["database"])
"""


@pytest.mark.e2e
def test_healthz_is_not_ready_before_the_database_is_migrated(tmp_path: Path) -> None:
    """It answered 200 on an empty database: a release started before `migrate` was
    sent traffic, and every request failed with 500."""
    # Given a service whose database has never been migrated (a new, empty SQLite file)
    # (CI's DATABASE_URL left out: with it, this asked CI's own database, and passed only
    # while nobody had migrated that)
    environ = {
        **{
            name: value
            for name, value in os.environ.items()
            if name not in {"DATABASE_URL", "CELERY_BROKER_URL"}
        },
        "VAR_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    # When the load balancer asks whether to send it traffic, then it is told not yet, and why
    result = python_run(["-c", UNMIGRATED_HEALTH], environ)
    status, database = result.stdout.strip().split(" ", 1)
    assert status == "503", result.stderr
    assert re.fullmatch(r"error: \d+ migrations not applied \(python manage.py migrate\)", database)
    # and the log says it too, once (Django's own 503 line named no reason)
    assert re.search(
        r"healthz: the database check fails: \d+ migrations not applied", result.stderr
    )
    assert "Service Unavailable" not in result.stderr
