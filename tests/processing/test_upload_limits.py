"""Upload limits: size caps enforced before the body is read (over real HTTP, gunicorn),
and the per-client rate limit.

Django reads a request body only up to its Content-Length, so refusing a too-large
Content-Length up front, and a body without one, bounds what any client makes us read."""

import contextlib
import http.client
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from accounts import services
from processing import metrics
from processing.models import ProcessingRequest
from tests.harness.service import Service, web_alone
from tests.support import api_request

HEADER = b"S. No.,Product Name,Input Image Urls\n"


BOUNDARY = "imgsvc-test-boundary"


class StreamedUpload:
    """A multipart body of `size` bytes made as it is sent, counting what was sent."""

    def __init__(self, size: int) -> None:
        self.head = (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.csv"'
            "\r\nContent-Type: text/csv\r\n\r\n"
        ).encode() + HEADER
        self.tail = f"\r\n--{BOUNDARY}--\r\n".encode()
        self.row = b"1,P,https://shop.example/a.jpg\n" * 2048
        self.rows = size // len(self.row)
        self.sent = 0

    @property
    def length(self) -> int:
        return len(self.head) + self.rows * len(self.row) + len(self.tail)

    def __iter__(self) -> Iterator[bytes]:
        yield self.head
        for _ in range(self.rows):
            self.sent += len(self.row)
            yield self.row
        yield self.tail


def post_streamed(service: Service, upload: StreamedUpload, headers: dict[str, str]) -> Any:
    host, port = service.base_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    # The server answers and stops reading: the client's send may then break off.
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        connection.request(
            "POST",
            "/api/upload/",
            body=iter(upload),
            headers={
                "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
                "Authorization": f"Bearer {service.api_key}",
                **headers,
            },
            encode_chunked="Transfer-Encoding" in headers,
        )
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, json.loads(body)


@pytest.mark.e2e
def test_an_upload_declaring_more_than_the_cap_is_refused_before_it_is_read(
    embedded_service: Service,
) -> None:
    # Given a client about to send 200 MiB, saying so in Content-Length
    upload = StreamedUpload(200 * 1024 * 1024)

    # When it uploads
    status, body = post_streamed(embedded_service, upload, {"Content-Length": str(upload.length)})

    # Then it is refused with 413 long before the 200 MiB were sent
    assert status == 413
    assert body == {
        "error": "The file is larger than the limit of 10,485,760 bytes.",
        "code": "file_too_large",
    }
    assert upload.sent < 50 * 1024 * 1024


@pytest.mark.e2e
def test_a_chunked_upload_without_a_length_is_refused_with_411(
    embedded_service: Service,
) -> None:
    upload = StreamedUpload(50 * 1024 * 1024)
    status, body = post_streamed(embedded_service, upload, {"Transfer-Encoding": "chunked"})
    assert status == 411
    assert body["code"] == "length_required"
    assert upload.sent < 50 * 1024 * 1024


def keyed_client(name: str) -> APIClient:
    account, _ = services.account_get_or_create(name=name)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {services.api_key_create(account=account)[1]}")
    return client


def csv_upload(client: APIClient, images: int) -> Any:
    urls = ",".join(f"https://shop.example/{n}.jpg" for n in range(images))
    data = SimpleUploadedFile("p.csv", f'{HEADER.decode()}1,Lamp,"{urls}"\n'.encode())
    return client.post("/api/upload/", {"file": data}, format="multipart")


@pytest.mark.django_db
def test_uploads_beyond_the_rate_limit_are_refused_per_account(settings: Any) -> None:
    # Given a limit of two uploads a minute, and two accounts
    settings.ACCOUNT_UPLOAD_RATE_LIMIT = "2/minute"
    first, other = keyed_client("first-shop"), keyed_client("other-shop")
    before = {code: uploads_counted(code) for code in ("no_file", "throttled")}

    # When one account uploads three times, and another once
    answers = [first.post("/api/upload/", {}).status_code for _ in range(3)]
    refused = first.post("/api/upload/", {})
    other_answer = other.post("/api/upload/", {})

    # Then the third and later are refused for that account only, saying by how much
    assert answers == [400, 400, 429]
    assert refused.status_code == 429
    retry_after = int(refused["Retry-After"])
    assert 0 < retry_after <= 60
    assert refused.json() == {
        "error": "Too many uploads: this account may send 2 CSVs a minute (uploads and "
        f"re-runs). Try again in {retry_after} s.",
        "code": "throttled",
        "details": [{"limit": "2/minute", "retry_after_seconds": retry_after}],
    }
    assert other_answer.status_code == 400
    # And /metrics counts each refusal by its code, the throttle's too (it comes before
    # the view's own code runs)
    assert uploads_counted("no_file") - before["no_file"] == 3
    assert uploads_counted("throttled") - before["throttled"] == 2


@pytest.mark.django_db
def test_a_refusal_says_when_uploads_are_let_through_again(settings: Any) -> None:
    """Past its limit (lowered while uploads had been let through) DRF's wait says
    nothing, which was told as "Try again in 1 s" while uploads stayed refused."""
    # Given three uploads within a minute, then the limit lowered to one a minute
    settings.ACCOUNT_UPLOAD_RATE_LIMIT = "3/minute"
    client = keyed_client("lowered-shop")
    assert [client.post("/api/upload/", {}).status_code for _ in range(3)] == [400] * 3
    settings.ACCOUNT_UPLOAD_RATE_LIMIT = "1/minute"

    # When it uploads again, then it is told to wait most of a minute, not a second
    refused = client.post("/api/upload/", {})
    assert refused.status_code == 429
    assert 50 <= int(refused["Retry-After"]) <= 60


def uploads_counted(outcome: str) -> float:
    return float(metrics.UPLOADS.labels(outcome)._value.get())


@pytest.mark.django_db
def test_an_upload_past_the_accounts_pending_images_is_refused_and_stores_nothing(
    settings: Any,
) -> None:
    # Given an account allowed 5 unfinished images, with 3 already waiting
    settings.ACCOUNT_MAX_PENDING_IMAGES = 5
    shop, other = keyed_client("busy-shop"), keyed_client("quiet-shop")
    assert csv_upload(shop, 3).status_code == 202

    # When it uploads 3 more
    refused = csv_upload(shop, 3)

    # Then they are refused, with the numbers, and nothing of them is stored
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) > 0
    body = refused.json()
    assert body["code"] == "quota_exceeded"
    assert body["details"] == [{"pending_images": 3, "upload_images": 3, "limit": 5}]
    assert "3 images waiting" in body["error"]
    assert ProcessingRequest.objects.count() == 1
    # while 2 more still fit, and another account is not held back by this one
    assert csv_upload(shop, 2).status_code == 202
    assert csv_upload(other, 5).status_code == 202


@pytest.mark.e2e
def test_uploads_sent_at_once_are_held_to_the_rate_limit(
    embedded_service: Service, tmp_path: Path
) -> None:
    """DRF reads the window's history, then writes it back: uploads sent at once each
    read the same history, and all went through (20 against 5 a minute)."""
    # Given a web server that lets an account upload five times a minute
    with web_alone(embedded_service, tmp_path, ACCOUNT_UPLOAD_RATE_LIMIT="5/minute") as web:
        # When the account sends twenty uploads at once (empty: answered 400 when let
        # through, and counted all the same)
        url = f"{web.base_url}/api/upload/"
        with ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(lambda _: api_request("POST", url).status, range(20)))

    # Then five were let through and the rest refused
    assert sorted(answers) == [400] * 5 + [429] * 15
