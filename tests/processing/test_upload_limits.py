"""Upload limits: size caps enforced before the body is read (over real HTTP, gunicorn),
and the per-client rate limit.

Django reads a request body only up to its Content-Length, so refusing a too-large
Content-Length up front, and a body without one, bounds what any client makes us read."""

import contextlib
import http.client
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from rest_framework.test import APIClient

from tests.harness.service import Service

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
            headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}", **headers},
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


@pytest.mark.django_db
def test_uploads_beyond_the_rate_limit_are_refused_per_client(settings: Any) -> None:
    # Given a limit of two uploads a minute, and two clients new to the shared counters
    settings.UPLOAD_RATE_LIMIT = "2/minute"
    first_client = APIClient(REMOTE_ADDR=f"2001:db8::{uuid.uuid4().hex[:4]}:1")
    other_client = APIClient(REMOTE_ADDR=f"2001:db8::{uuid.uuid4().hex[:4]}:2")

    # When one client uploads three times, and another once
    answers = [first_client.post("/api/upload/", {}).status_code for _ in range(3)]
    refused = first_client.post("/api/upload/", {})
    other = other_client.post("/api/upload/", {})

    # Then the third and later are refused for that client only
    assert answers == [400, 400, 429]
    assert refused.status_code == 429
    assert refused.json()["code"] == "throttled"
    assert int(refused["Retry-After"]) > 0
    assert other.status_code == 400
