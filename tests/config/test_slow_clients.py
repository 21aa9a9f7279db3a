"""The web server keeps answering while clients hold connections open without finishing
their requests (slowloris): 50 connections, half sending their headers a byte at a time,
half stopping half way through them, and /healthz still answers within a second."""

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import urllib3

from tests.harness.service import Service

pytestmark = pytest.mark.e2e

REQUEST = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow\r\nAccept: */*\r\n\r\n"


@contextlib.contextmanager
def slow_clients(service: Service, count: int) -> Iterator[None]:
    """count connections to the service, half dripping a request, half stalled in it."""
    host, port = service.base_url.removeprefix("http://").split(":")
    stop = threading.Event()
    sockets: list[socket.socket] = []

    def drip(sock: socket.socket) -> None:
        for byte in REQUEST:
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
            sock.sendall(REQUEST[: len(REQUEST) // 2])  # and then nothing more
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
