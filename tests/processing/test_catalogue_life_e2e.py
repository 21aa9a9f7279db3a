"""A catalogue's life on the production stack: PostgreSQL, Redis, gunicorn, Celery workers
and beat as separate processes, images served over HTTP by an origin on 127.0.0.1. Cancel
mid-run, retry after the origin starts answering, re-run with other settings, the same CSV
twice against an origin with ETags, and expiry with a retention of seconds."""

import csv
import http.client
import io
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from PIL import Image, ImageStat

from tests.harness.origin import Origin, image_answer
from tests.harness.redis import private_service
from tests.harness.service import Service
from tests.support import (
    api_headers,
    api_request,
    encoded,
    get_json,
    multipart_upload,
    photo,
    wait_for_finish,
    wait_until,
)
from tests.test_operations import scrape

pytestmark = pytest.mark.e2e

HEADER = "S. No.,Product Name,Input Image Urls\n"
JPEG = encoded(photo(96, 64), "JPEG", quality=90)


def one_per_product(urls: list[str]) -> str:
    return HEADER + "".join(f"{n + 1},Item {n},{url}\n" for n, url in enumerate(urls))


def products_of(service: Service, request_id: str) -> list[dict[str, Any]]:
    url = f"{service.base_url}/api/requests/{request_id}/products/?page_size=500"
    code, body = get_json(url)
    assert code == 200, body
    assert body["next"] is None
    return list(body["results"])


def images_of(service: Service, request_id: str) -> list[dict[str, Any]]:
    return [image for product in products_of(service, request_id) for image in product["images"]]


def output_csv(service: Service, request_id: str) -> list[list[str]]:
    response = api_request("GET", f"{service.base_url}/api/requests/{request_id}/output.csv")
    assert response.status == 200, response.data
    return list(csv.reader(io.StringIO(response.data.decode())))[1:]


def post(service: Service, request_id: str, action: str, **body: Any) -> tuple[int, Any]:
    response = api_request(
        "POST", f"{service.base_url}/api/requests/{request_id}/{action}/", json=body
    )
    return response.status, response.json()


def encodes(service: Service) -> float:
    """Images encoded by the service's workers so far (the encode stage's timer count)."""
    samples = scrape(service.base_url)
    return samples[("imgsvc_image_stage_seconds_count", (("stage", "encode"),))]


def test_a_request_cancelled_mid_run_stops_starting_images_and_reports_what_finished(
    production_service: Service, origin: Origin
) -> None:
    # Given 300 images on an origin that takes a quarter of a second for each
    run = uuid.uuid4().hex[:8]
    started: list[float] = []
    lock = threading.Lock()

    def slowly(handler: BaseHTTPRequestHandler) -> None:
        with lock:
            started.append(time.monotonic())
        time.sleep(0.25)
        image_answer(handler, JPEG)

    urls = [origin.add(f"/{run}/{n}.jpg", serve=slowly) for n in range(300)]
    hook = f"/{run}/hook"
    response = multipart_upload(
        production_service.base_url, one_per_product(urls), webhook_url=origin.base_url + hook
    )
    request_id = response.json()["request_id"]

    def succeeded() -> int:
        status = get_json(f"{production_service.base_url}/api/status/{request_id}/")[1]
        return int(status["progress"]["succeeded"])

    wait_until(lambda: succeeded() >= 30, timeout=120, what="30 images to succeed")

    # When the user cancels it while it runs
    code, body = post(production_service, request_id, "cancel")
    cancelled_at = time.monotonic()

    # Then the call answers at once with the status body
    assert code == 202, body
    assert body["request_id"] == request_id
    assert body["status"] == "processing"
    assert body["cancel_requested_at"] is not None

    # and the request ends cancelled, with every image accounted for
    status = wait_for_finish(production_service.base_url, request_id, timeout=60)
    assert status["status"] == "cancelled"
    progress = status["progress"]
    assert progress["cancelled"] > 0
    assert progress["succeeded"] >= 30
    assert progress["succeeded"] + progress["failed"] + progress["cancelled"] == 300
    assert progress["pending"] == 0

    # and no image started later than 5 s after the call
    with lock:
        late = [at - cancelled_at for at in started if at > cancelled_at + 5]
    assert not late, f"{len(late)} downloads started more than 5 s after the cancel"
    assert len(started) < 300

    # and the products and the output CSV show what finished and what was cancelled
    images = images_of(production_service, request_id)
    outcomes = {(image["status"], image["error_code"]) for image in images}
    assert outcomes <= {("succeeded", ""), ("cancelled", "cancelled")}
    cancelled = [image for image in images if image["status"] == "cancelled"]
    assert len(cancelled) == progress["cancelled"]
    assert all(image["output_url"] is None for image in cancelled)
    rows = output_csv(production_service, request_id)
    assert len(rows) == 300
    assert sum(1 for row in rows if row[3] == "") == progress["cancelled"]

    # and the webhook fired once, with that status
    posts = wait_until(lambda: origin.posts_to(hook), timeout=30, what="the webhook call")
    webhook_url = f"{production_service.base_url}/api/requests/{request_id}/webhook/"

    def delivered() -> dict[str, Any] | None:
        delivery: dict[str, Any] = get_json(webhook_url)[1]
        return delivery if delivery["state"] == "delivered" else None

    delivery = wait_until(delivered, timeout=30, what="the webhook to be delivered")
    assert delivery["attempts"] == 1
    assert len(origin.posts_to(hook)) == 1
    assert b'"status":"cancelled"' in posts[0][1].replace(b" ", b"")

    # And cancelling it again is refused: it has finished
    code, body = post(production_service, request_id, "cancel")
    assert code == 409
    assert body["code"] == "already_finished"


def test_a_cancel_ends_the_download_a_batch_waits_for_without_reading_it_to_its_end(
    production_service: Service, origin: Origin
) -> None:
    # Given an image whose origin sends its first bytes, waits for the test's cancel, then
    # sends the rest over a second (the service's downloads may take 2 s in all here, and
    # it looks for a cancel every tenth of a second), noting whether the service hung up
    run = uuid.uuid4().hex[:8]
    chunk, chunks = b"\xff" * 65536, 20
    sending, cancelled, abandoned = threading.Event(), threading.Event(), threading.Event()

    def slowly(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "image/jpeg")
        handler.send_header("Content-Length", str(len(chunk) * chunks))
        handler.end_headers()
        try:
            for sent in range(chunks):
                handler.wfile.write(chunk)
                handler.wfile.flush()
                if sent == 0:
                    sending.set()
                    cancelled.wait(30)
                time.sleep(0.05)
        except OSError:  # the service closed the connection before the end
            abandoned.set()

    url = origin.add(f"/{run}/slow.jpg", serve=slowly)
    response = multipart_upload(production_service.base_url, one_per_product([url]))
    request_id = response.json()["request_id"]
    wait_until(sending.is_set, timeout=60, what="the download to start")

    # When the user cancels it while the batch waits for that download
    try:
        code, body = post(production_service, request_id, "cancel")
    finally:
        cancelled.set()
    assert code == 202, body

    # Then the service hangs up on the source rather than read it to its end (which would
    # be a second on), and the request ends cancelled, its image not processed
    wait_until(abandoned.is_set, timeout=30, what="the service to hang up on the source")
    status = wait_for_finish(production_service.base_url, request_id, timeout=60)
    assert status["status"] == "cancelled"
    assert status["progress"]["cancelled"] == 1


def test_retry_processes_again_only_the_images_that_failed(
    production_service: Service, origin: Origin
) -> None:
    # Given a request whose one image was missing from the origin
    run = uuid.uuid4().hex[:8]
    good = [origin.add(f"/{run}/good-{n}.jpg", JPEG) for n in range(3)]
    missing = f"{origin.base_url}/{run}/missing.jpg"
    hook = f"/{run}/hook"
    request_id = multipart_upload(
        production_service.base_url,
        one_per_product([*good, missing]),
        webhook_url=origin.base_url + hook,
    ).json()["request_id"]
    first = wait_for_finish(production_service.base_url, request_id)
    assert first["status"] == "completed_with_errors"
    before = {image["input_url"]: image for image in images_of(production_service, request_id)}
    assert before[missing]["error_code"] == "http_404"
    wait_until(lambda: origin.posts_to(hook), timeout=30, what="the first webhook call")

    # When the origin starts answering for it, and the user retries the failed images
    origin.add(f"/{run}/missing.jpg", JPEG)
    code, body = post(production_service, request_id, "retry")

    # Then the request goes back to processing, and completes
    assert code == 202, body
    assert body["status"] == "processing"
    status = wait_for_finish(production_service.base_url, request_id)
    assert status["status"] == "completed"
    assert status["progress"]["succeeded"] == 4

    # with the good images untouched (downloaded once, same output URLs), the failed one done
    after = {image["input_url"]: image for image in images_of(production_service, request_id)}
    for url in good:
        assert origin.hits[url.removeprefix(origin.base_url)] == 1
        assert after[url]["output_url"] == before[url]["output_url"]
    assert after[missing]["status"] == "succeeded"
    assert api_request("GET", after[missing]["output_url"]).status == 200
    rows = output_csv(production_service, request_id)
    assert all(row[3] for row in rows)

    # and a second webhook event, with an id of its own
    posts = wait_until(
        lambda: len(origin.posts_to(hook)) >= 2 and origin.posts_to(hook),
        timeout=30,
        what="the second webhook call",
    )
    assert posts[0][0]["webhook-id"] != posts[1][0]["webhook-id"]
    assert b"completed_with_errors" in posts[0][1]
    assert b'"completed"' in posts[1][1].replace(b" ", b"")

    # And retrying a request with nothing failed is refused
    code, body = post(production_service, request_id, "retry")
    assert code == 409
    assert body["code"] == "nothing_to_retry"


def test_a_rerun_is_a_new_request_over_the_same_products_with_other_settings(
    production_service: Service, origin: Origin
) -> None:
    # Given a finished request at the default quality
    run = uuid.uuid4().hex[:8]
    urls = [
        origin.add(f"/{run}/{n}.jpg", encoded(photo(320, 240, n), "JPEG", quality=95))
        for n in range(2)
    ]
    source_id = multipart_upload(production_service.base_url, one_per_product(urls)).json()[
        "request_id"
    ]
    wait_for_finish(production_service.base_url, source_id)

    # When the user re-runs it at quality 30
    code, body = post(production_service, source_id, "rerun", quality=30)

    # Then a new request runs over the same products, and says where it came from
    assert code == 202, body
    rerun_id = body["request_id"]
    assert rerun_id != source_id
    assert body["total_images"] == 2
    status = wait_for_finish(production_service.base_url, rerun_id)
    assert status["status"] == "completed"
    assert status["source_request_id"] == source_id
    products = products_of(production_service, rerun_id)
    assert [p["product_name"] for p in products] == ["Item 0", "Item 1"]
    assert [p["images"][0]["input_url"] for p in products] == urls
    # at its own quality: smaller outputs than the first run's at 50
    first = images_of(production_service, source_id)
    second = [p["images"][0] for p in products]
    for old, new in zip(first, second, strict=True):
        assert new["reused"] is False
        old_bytes = api_request("GET", old["output_url"]).data
        new_bytes = api_request("GET", new["output_url"]).data
        assert len(new_bytes) < len(old_bytes)


def test_the_same_csv_twice_downloads_and_encodes_nothing_the_second_time(
    production_service: Service, origin: Origin
) -> None:
    # Given an origin that sends ETags and answers 304 when the image has not changed
    run = uuid.uuid4().hex[:8]
    paths = [f"/{run}/{n}.jpg" for n in range(12)]
    urls = [
        origin.add(path, encoded(photo(200, 150, n), "JPEG", quality=90), etag=f'"v1-{n}"')
        for n, path in enumerate(paths)
    ]
    catalogue = one_per_product(urls)
    first_id = multipart_upload(production_service.base_url, catalogue).json()["request_id"]
    assert wait_for_finish(production_service.base_url, first_id)["status"] == "completed"
    assert all(origin.bodies_sent[path] == 1 for path in paths)
    encoded_before = encodes(production_service)

    # When the same CSV is uploaded again
    second_id = multipart_upload(production_service.base_url, catalogue).json()["request_id"]

    # Then it completes without one image body downloaded or one image encoded
    assert wait_for_finish(production_service.base_url, second_id)["status"] == "completed"
    assert all(origin.bodies_sent[path] == 1 for path in paths)
    assert all(origin.hits[path] == 2 for path in paths)  # the conditional GETs
    assert encodes(production_service) == encoded_before
    images = images_of(production_service, second_id)
    assert [image["reused"] for image in images] == [True] * 12
    first = images_of(production_service, first_id)
    for old, new in zip(first, images, strict=True):
        assert new["output_url"] != old["output_url"]  # the request's own URL
        assert (
            api_request("GET", new["output_url"]).data == api_request("GET", old["output_url"]).data
        )

    # And when one source changes, that one is downloaded and encoded again
    origin.add(paths[0], encoded(photo(200, 150, 99), "JPEG", quality=90), etag='"v2-0"')
    third_id = multipart_upload(production_service.base_url, catalogue).json()["request_id"]
    assert wait_for_finish(production_service.base_url, third_id)["status"] == "completed"
    assert origin.bodies_sent[paths[0]] == 2
    assert all(origin.bodies_sent[path] == 1 for path in paths[1:])
    assert encodes(production_service) == encoded_before + 1
    reused = [image["reused"] for image in images_of(production_service, third_id)]
    assert reused == [False] + [True] * 11


def test_gunicorn_answers_304s_without_a_length_on_a_connection_kept_for_the_next_call(
    production_service: Service, origin: Origin
) -> None:
    """The 304s carried Content-Length: 0 (CommonMiddleware's), where RFC 9110 allows
    only the 200's."""
    # Given a finished request, its status and output CSV each read once, with their tags
    url = origin.add(f"/{uuid.uuid4().hex[:8]}/a.jpg", JPEG)
    request_id = multipart_upload(production_service.base_url, one_per_product([url])).json()[
        "request_id"
    ]
    assert wait_for_finish(production_service.base_url, request_id)["status"] == "completed"
    paths = [f"/api/status/{request_id}/", f"/api/requests/{request_id}/output.csv"]
    connection = http.client.HTTPConnection(
        urlsplit(production_service.base_url).netloc, timeout=30
    )
    headers = api_headers(production_service.base_url + "/")
    etags = {}
    for path in paths:
        connection.request("GET", path, headers=headers)
        answer = connection.getresponse()
        answer.read()
        assert (answer.status, int(answer.headers["Content-Length"]) > 0) == (200, True)
        etags[path] = answer.headers["ETag"]
    kept = connection.sock

    # When each is asked again with its tag, as GET and HEAD, on the same connection
    for path, method in [(path, method) for path in paths for method in ("GET", "HEAD")]:
        connection.request(method, path, headers={**headers, "If-None-Match": etags[path]})
        answer = connection.getresponse()

        # Then each is 304, without a body or any length, and the connection is kept
        assert (answer.status, answer.read()) == (304, b"")
        assert "Content-Length" not in answer.headers
        assert "Transfer-Encoding" not in answer.headers
    connection.request("GET", paths[0], headers=headers)
    answer = connection.getresponse()
    assert (answer.status, answer.headers["ETag"]) == (200, etags[paths[0]])
    assert answer.read()
    assert connection.sock is kept
    connection.close()


def test_a_source_put_back_with_an_older_date_is_not_taken_for_the_copy_it_replaced(
    embedded_service: Service, origin: Origin
) -> None:
    """An origin that sends Last-Modified and no ETag, and answers If-Modified-Since by
    comparing dates, answers 304 for a file restored with its old date (a backup, `rsync
    -a`): the service must not re-use what it made from the file that was there before."""
    # Given a source with a date and no ETag, processed once
    path = f"/{uuid.uuid4().hex[:8]}/restored.jpg"
    old, new = Image.new("RGB", (200, 150), RED), Image.new("RGB", (200, 150), BLUE)
    url = origin.add(path, encoded(new, "JPEG", quality=90), last_modified=LATER)
    catalogue = one_per_product([url])
    first_id = multipart_upload(embedded_service.base_url, catalogue).json()["request_id"]
    assert wait_for_finish(embedded_service.base_url, first_id)["status"] == "completed"
    [first] = images_of(embedded_service, first_id)

    # When the same CSV comes again, unchanged, the body is read and found the same
    second_id = multipart_upload(embedded_service.base_url, catalogue).json()["request_id"]
    assert wait_for_finish(embedded_service.base_url, second_id)["status"] == "completed"
    assert [image["reused"] for image in images_of(embedded_service, second_id)] == [True]
    assert origin.bodies_sent[path] == 2

    # And when the file is replaced by another one dated earlier
    origin.add(path, encoded(old, "JPEG", quality=90), last_modified=EARLIER)
    third_id = multipart_upload(embedded_service.base_url, catalogue).json()["request_id"]
    assert wait_for_finish(embedded_service.base_url, third_id)["status"] == "completed"

    # Then the output is made from the file there now, not the one before it
    [third] = images_of(embedded_service, third_id)
    assert third["reused"] is False
    assert origin.bodies_sent[path] == 3
    made = api_request("GET", third["output_url"]).data
    assert made != api_request("GET", first["output_url"]).data
    assert mean_colour(made) == pytest.approx(RED, abs=8)


LATER, EARLIER = "Tue, 24 Nov 2026 10:00:00 GMT", "Wed, 01 Jan 2025 10:00:00 GMT"
RED, BLUE = (200, 30, 30), (30, 30, 200)


def mean_colour(jpeg: bytes) -> tuple[float, ...]:
    with Image.open(io.BytesIO(jpeg)) as image:
        return tuple(ImageStat.Stat(image.convert("RGB")).mean)


def test_requests_finished_longer_ago_than_the_retention_expire_and_answer_410(
    tmp_path: Path, origin: Origin
) -> None:
    # Given the service keeping finished requests for about 9 s (time enough, on a loaded
    # machine, to look at one before it goes), expiring every second
    run = uuid.uuid4().hex[:8]
    urls = [origin.add(f"/{run}/{n}.jpg", JPEG) for n in range(3)]
    expiring = {"RETENTION_DAYS": "0.0001", "EXPIRE_INTERVAL": "1"}
    with private_service(tmp_path, origin, expiring) as (service, _, _):
        # When a request finishes
        request_id = multipart_upload(service.base_url, one_per_product(urls)).json()["request_id"]
        status = wait_for_finish(service.base_url, request_id)
        assert status["status"] == "completed"
        assert status["expires_at"] is not None
        outputs = [image["output_url"] for image in images_of(service, request_id)]
        folder = service.workdir / "storage" / "output_images" / request_id
        assert len([name for name in folder.iterdir() if name.suffix == ".jpg"]) == 3

        # Then a few seconds later it has expired: every route answers 410
        status_url = f"{service.base_url}/api/status/{request_id}/"
        wait_until(
            lambda: get_json(status_url)[0] == 410,
            timeout=30,
            interval=0.5,
            what="the request to expire",
        )
        routes = [
            ("GET", "api/status/{}/"),
            ("GET", "api/requests/{}/products/"),
            ("GET", "api/requests/{}/output.csv"),
            ("GET", "api/requests/{}/webhook/"),
            ("POST", "api/requests/{}/webhook/"),
            ("POST", "api/requests/{}/cancel/"),
            ("POST", "api/requests/{}/retry/"),
            ("POST", "api/requests/{}/rerun/"),
        ]
        for method, route in routes:
            response = api_request(method, f"{service.base_url}/{route.format(request_id)}")
            assert response.status == 410, (route, response.data)
            body = response.json()
            assert body["code"] == "expired"
            assert body["details"][0]["expired_at"]

        # and its output files are gone, from the disk and from their URLs
        assert not folder.exists() or not list(folder.iterdir())
        for url in outputs:
            assert api_request("GET", url).status == 404
