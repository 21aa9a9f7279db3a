"""The web server keeps answering while clients hold connections open without finishing
their requests (slowloris): 50 connections, half sending their headers or bodies a byte
at a time, half stopping half way through them, and /healthz still answers within a
second."""

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import urllib3
from urllib3.filepost import encode_multipart_formdata

from tests.harness.service import Service, web_alone
from tests.support import api_headers

pytestmark = pytest.mark.e2e

REQUEST = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow\r\nAccept: */*\r\n\r\n"


def upload(service: Service, csv_text: str) -> bytes:
    """An upload of csv_text to service as it goes over the wire: line, headers, body."""
    url = f"{service.base_url}/api/upload/"
    body, content_type = encode_multipart_formdata(
        {"file": ("products.csv", csv_text.encode(), "text/csv")}
    )
    headers = {
        **api_headers(url),
        "Host": "127.0.0.1",
        "Content-Type": content_type,
        "Content-Length": str(len(body)),
    }
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return f"POST /api/upload/ HTTP/1.1\r\n{head}\r\n".encode() + body


CSV = "S. No.,Product Name,Input Image Urls\n" + "".join(
    f"{n},Lamp {n},https://shop.example/{n}.jpg\n" for n in range(1, 200)
)


def answer_to(sock: socket.socket) -> tuple[int, bytes]:
    """The status and body of the answer on sock, read to its end (it closes)."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
        head, found, body = received.partition(b"\r\n\r\n")
        length = next(
            (
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ),
            None,
        )
        if found and length is not None and len(body) >= length:
            break
    head, _, body = received.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@contextlib.contextmanager
def slow_clients(service: Service, count: int, request: bytes = REQUEST) -> Iterator[None]:
    """count connections to the service, half dripping request, half stalled in it."""
    host, port = service.base_url.removeprefix("http://").split(":")
    stop = threading.Event()
    sockets: list[socket.socket] = []

    def drip(sock: socket.socket) -> None:
        for byte in request:
            if stop.wait(0.2):
                return
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                return  # the server hung up, as it may once its header timeout passes

    threads = []
    for number in range(count):
        sock = socket.create_connection((host, int(port)), timeout=5)
        sockets.append(sock)
        if number % 2:
            sock.sendall(request[: len(request) // 2])  # and then nothing more
        else:
            threads.append(threading.Thread(target=drip, args=(sock,), daemon=True))
            threads[-1].start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=5)
        for sock in sockets:
            sock.close()


def test_fifty_slow_clients_leave_healthz_answering_within_a_second(
    embedded_service: Service,
) -> None:
    with slow_clients(embedded_service, 50):
        took = []
        for _ in range(10):
            started = time.monotonic()
            response = urllib3.request(
                "GET", f"{embedded_service.base_url}/healthz", timeout=5, retries=False
            )
            took.append(time.monotonic() - started)
            assert response.status == 200
        assert max(took) < 1.0, [round(seconds, 2) for seconds in took]


def test_fifty_clients_slow_with_their_bodies_leave_the_service_answering(
    embedded_service: Service,
) -> None:
    """Bodies were read by the thread serving the request, as the view read them: ten
    clients that stopped half way through an upload's body left /livez unanswered."""
    # Given 50 uploads whose headers have arrived, half dripping their bodies, half stalled
    wire = upload(embedded_service, CSV)
    with slow_clients(embedded_service, 50, request=wire):
        # When the service is asked for its health, then it answers within a second
        for _ in range(10):
            started = time.monotonic()
            response = urllib3.request(
                "GET", f"{embedded_service.base_url}/healthz", timeout=5, retries=False
            )
            assert response.status == 200
            assert time.monotonic() - started < 1.0

        # And an upload whose body comes in pieces is read whole once it has all arrived
        host, port = embedded_service.base_url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            pieces = [wire[: len(wire) // 3], wire[len(wire) // 3 : -10], wire[-10:]]
            for piece in pieces:
                sock.sendall(piece)
                time.sleep(0.2)  # the pieces arrive apart, as over a slow link
            status, body = answer_to(sock)
        assert status == 202, body
        assert json.loads(body)["total_products"] == 199


def test_a_client_that_waits_for_100_continue_is_told_once_before_its_body(
    embedded_service: Service,
) -> None:
    # Given an upload whose client asks to be told before it sends the body (as curl does)
    wire = upload(embedded_service, CSV)
    head, _, body = wire.partition(b"\r\n\r\n")
    host, port = embedded_service.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head + b"\r\nExpect: 100-continue\r\n\r\n")
        # When it waits, then it is told to go on
        assert sock.recv(25) == b"HTTP/1.1 100 Continue\r\n\r\n"
        # and, the body sent, answered with no second 100
        sock.sendall(body)
        status, answer = answer_to(sock)
    assert status == 202, answer


def test_a_body_that_does_not_arrive_in_time_is_answered_408(
    embedded_service: Service, tmp_path: Path
) -> None:
    # Given a web server that waits one second for a request's body
    with web_alone(embedded_service, tmp_path, WEB_BODY_TIMEOUT="1") as web:
        # When an upload's headers and half its body arrive, and then nothing more
        wire = upload(web, CSV)
        host, port = web.base_url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(wire[: len(wire) // 2])
            started = time.monotonic()
            status, body = answer_to(sock)
            waited = time.monotonic() - started

    # Then the client is told, once the second has passed, and the connection closed
    assert status == 408
    assert json.loads(body) == {
        "error": "The request's body did not arrive within 1 s.",
        "code": "request_timeout",
    }
    assert 0.9 < waited < 5
