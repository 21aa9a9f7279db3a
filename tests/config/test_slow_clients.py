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

LIVEZ = b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"
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


# On an address no image may come from: refused at once, the uploads accepted here leave the
# shared service no work. A name to look up (shop.example) kept its worker on lookups that
# took 5 s each for a minute, and the tests after these waited behind them.
CSV = "S. No.,Product Name,Input Image Urls\n" + "".join(
    f"{n},Lamp {n},https://192.0.2.1/{n}.jpg\n" for n in range(1, 200)
)


def answer_to(sock: socket.socket) -> tuple[int, bytes]:
    """The status and body of the answer on sock, read to its end: its Content-Length, its
    last chunk, or the connection closing."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
        head, found, body = received.partition(b"\r\n\r\n")
        fields = head.lower().split(b"\r\n")
        length = next(
            (int(field.split(b":")[1]) for field in fields if field.startswith(b"content-length:")),
            None,
        )
        chunked = b"transfer-encoding: chunked" in fields
        if found and (
            (length is not None and len(body) >= length)
            or (chunked and body.endswith(b"0\r\n\r\n"))
        ):
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


def test_fifty_slow_clients_leave_healthz_answering(
    embedded_service: Service,
) -> None:
    with slow_clients(embedded_service, 50):
        assert_answers_promptly(f"{embedded_service.base_url}/healthz", times=10)


def test_fifty_clients_slow_with_their_bodies_leave_the_service_answering(
    embedded_service: Service,
) -> None:
    """Bodies were read by the thread serving the request, as the view read them: ten
    clients that stopped half way through an upload's body left /livez unanswered."""
    # Given 50 uploads whose headers have arrived, half dripping their bodies, half stalled
    wire = upload(embedded_service, CSV)
    with slow_clients(embedded_service, 50, request=wire):
        # When the service is asked for its health, then it answers promptly
        assert_answers_promptly(f"{embedded_service.base_url}/healthz", times=10)

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


def test_a_body_that_stops_arriving_is_answered_408_and_a_slow_steady_one_is_read(
    embedded_service: Service, tmp_path: Path
) -> None:
    # Given a web server that waits one second for the next bytes of a request's body
    wire = upload(embedded_service, CSV)
    with web_alone(embedded_service, tmp_path, WEB_BODY_TIMEOUT="1") as web:
        # When an upload's headers and half its body arrive, and then nothing more
        with connected(web) as sock:
            sock.sendall(wire[: len(wire) // 2])
            started = time.monotonic()
            status, body = answer_to(sock)
            waited = time.monotonic() - started
        # and another comes in pieces half a second apart, three seconds in all
        with connected(web) as sock:
            for piece in range(6):
                sock.sendall(wire[piece * len(wire) // 6 : (piece + 1) * len(wire) // 6])
                time.sleep(0.5)  # the pace of a slow link, not a wait for the server
            steady, _ = answer_to(sock)

    # Then the first is told, once the second has passed, and the connection closed
    assert status == 408
    assert json.loads(body) == {
        "error": "The request's body stopped arriving for 1 s, or took longer than 10 "
        "minutes in all.",
        "code": "request_timeout",
    }
    assert 0.9 < waited < 5
    # and the second, which never paused as long, is read whole
    assert steady == 202


def test_a_kept_connections_next_request_is_gathered_without_a_thread_too(
    embedded_service: Service, tmp_path: Path
) -> None:
    """Once a connection had been answered, its next request went to a thread at its
    first byte: two clients stalled in their second requests held both threads."""
    with web_alone(embedded_service, tmp_path, WEB_THREADS="2") as web:
        # Given two clients whose first request on a kept connection was answered, and who
        # then stop half way through the headers of their second
        held = []
        for _ in range(2):
            sock = connected(web)
            held.append(sock)
            sock.sendall(LIVEZ)
            assert answer_to(sock)[0] == 200
            sock.sendall(LIVEZ[: len(LIVEZ) // 2])
        try:
            # When the service is asked for its health, then it answers promptly
            assert_answers_promptly(f"{web.base_url}/livez", times=3)
        finally:
            for sock in held:
                sock.close()


def test_more_bodies_at_once_than_a_worker_gathers_are_refused_503_not_held(
    embedded_service: Service, tmp_path: Path
) -> None:
    # Given a web server gathering as many stalled upload bodies as it will hold
    wire = upload(embedded_service, CSV)
    with web_alone(embedded_service, tmp_path) as web:
        held = [connected(web) for _ in range(32)]
        try:
            for sock in held:
                sock.sendall(wire[: len(wire) // 2])
            # When one more comes, then it is told to come back, at once
            with connected(web) as sock:
                sock.sendall(wire[: len(wire) // 2])
                status, body = answer_to(sock)
            # while the service answers its probes
            assert urllib3.request("GET", f"{web.base_url}/livez", timeout=5).status == 200
        finally:
            for sock in held:
                sock.close()
    assert status == 503
    assert json.loads(body)["code"] == "server_busy"


@pytest.mark.parametrize("pace", ["at once", "in small pieces"])
def test_a_body_the_disk_cannot_hold_is_refused_and_the_worker_goes_on(
    embedded_service: Service, tmp_path: Path, pace: str
) -> None:
    """The error writing it to its temporary file ended the whole worker, and every request
    on it; in small pieces, the error came again as the file was closed."""
    # Given a web server that may write files of at most 2 MB (its temporary files too)
    csv_text = "S. No.,Product Name,Input Image Urls\n" + "".join(
        f"{n},Lamp {n},https://192.0.2.1/{n}.jpg\n" for n in range(1, 100_000)
    )
    wire = upload(embedded_service, csv_text)
    assert len(wire) > 4 * 2**20
    with web_alone(embedded_service, tmp_path, limits="ulimit -f 4096") as web:
        # When an upload larger than that arrives
        with connected(web) as sock:
            with contextlib.suppress(OSError):  # the server may hang up as it comes
                if pace == "at once":
                    sock.sendall(wire)
                else:
                    sock.sendall(wire[: 3 * 2**19])  # 1.5 MB, then a kilobyte at a time
                    for start in range(3 * 2**19, len(wire), 1000):
                        sock.sendall(wire[start : start + 1000])
                        time.sleep(0.001)  # the pieces arrive apart, as over a slow link
            try:
                status: int | None = answer_to(sock)[0]
            except OSError:  # hung up on while the body still came: the 503 lost in the reset
                status = None
        # Then it is refused, and the same worker answers the next request
        assert status in {503, None}
        assert urllib3.request("GET", f"{web.base_url}/livez", timeout=5).status == 200
        log = web.log("web")
        assert "exited with code" not in log
        assert log.count("Booting worker") == 1  # none replaced


def test_requests_odd_at_their_edges_are_gathered_or_refused_without_a_thread(
    embedded_service: Service, tmp_path: Path
) -> None:
    """A POST after an empty line (which HTTP allows) went to a thread with its body
    missing, and headers longer than the parser takes went to a thread that waited for
    their end: two of either held both threads."""
    with web_alone(embedded_service, tmp_path, WEB_THREADS="2") as web:
        # Given two clients stalled in a body after an empty line, and two sending more
        # header than the parser takes, and no end to it
        stalled = [connected(web) for _ in range(2)]
        for sock in stalled:
            sock.sendall(b"\r\nPOST /login/ HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab")
        endless = [connected(web) for _ in range(2)]
        try:
            # When the service is asked for its health, then it answers promptly
            for sock in endless:
                with contextlib.suppress(OSError):  # the server may hang up first
                    sock.sendall(b"GET / HTTP/1.1\r\n" + b"X-Long: " + b"x" * 900_000)
                assert answer_to(sock)[0] == 431
            assert_answers_promptly(f"{web.base_url}/livez", times=3)
        finally:
            for sock in stalled + endless:
                sock.close()


@pytest.mark.parametrize(
    ("sent", "status", "code", "says"),
    [
        (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414,
         "request_line_too_long", "Request Line is too large"),
        (b"GARBAGE\r\n\r\n", 400, "bad_request", "Invalid Request Line"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n", 400, "bad_request",
         "Invalid HTTP Header"),
    ],
)  # fmt: skip
def test_a_request_the_server_cannot_read_is_refused_in_the_apis_error_shape(
    embedded_service: Service, sent: bytes, status: int, code: str, says: str
) -> None:
    """gunicorn's own refusals were an HTML page, the one answer of the API a client could
    not read as JSON."""
    with connected(embedded_service) as sock:
        sock.sendall(sent)
        answered, body = answer_to(sock)
    assert answered == status
    refusal = json.loads(body)
    assert refusal["code"] == code
    assert refusal["error"].startswith(f"The request could not be read: {says}"), refusal


@pytest.mark.parametrize(
    ("target", "length", "code"),
    [
        (b"/api/webhook-test/", 11_000_000, "body_too_large"),
        (b"/api/upload/", 30_000_000, "file_too_large"),
    ],
)
def test_bodies_past_the_largest_upload_are_refused_from_their_headers_without_a_thread(
    embedded_service: Service, tmp_path: Path, target: bytes, length: int, code: str
) -> None:
    """A thread answered them (401, no key came) and then drained the body: 40 clients
    trickling ones a little past the largest upload left /livez unanswered for 8 s."""
    request = (
        b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n{" % (target, length)
    )
    with web_alone(embedded_service, tmp_path, WEB_THREADS="2") as web:
        clients = [connected(web) for _ in range(40)]
        try:
            for sock in clients:
                sock.sendall(request)
            assert_answers_promptly(f"{web.base_url}/livez", times=3)
            status, body = answer_to(clients[0])
        finally:
            for sock in clients:
                sock.close()
    assert status == 413
    assert json.loads(body)["code"] == code


def test_a_length_of_thousands_of_digits_is_refused_and_the_worker_serves_on(
    embedded_service: Service,
) -> None:
    """int() refuses more than 4,300 digits: raised in the event loop, it ended the worker,
    and every request on it, for one header anyone may send."""
    with connected(embedded_service) as sock:
        sock.sendall(
            b"POST /api/webhook-test/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Length: %s\r\n\r\n" % (b"9" * 5000)
        )
        status, answer = answer_to(sock)
    assert status == 413
    assert json.loads(answer)["code"] == "body_too_large"
    assert_answers_promptly(f"{embedded_service.base_url}/livez", times=1)


def test_a_body_without_a_length_is_refused_411_on_every_route(
    embedded_service: Service,
) -> None:
    """A chunked body reached the view as an empty one: a webhook test was told its url
    was missing, though it was sent."""
    body = b'{"url": "https://shop.example/hook"}'
    with connected(embedded_service) as sock:
        sock.sendall(
            b"POST /api/webhook-test/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n"
            % (embedded_service.api_key.encode(), len(body), body)
        )
        status, answer = answer_to(sock)
    assert status == 411
    assert json.loads(answer)["code"] == "length_required"


def assert_answers_promptly(url: str, *, times: int) -> None:
    """GET url times over, each answered 200 within 3 s: a slow client holding a thread
    holds it WEB_HEADER_TIMEOUT (10 s), and a second on a loaded machine is no sign of one."""
    took = []
    for _ in range(times):
        started = time.monotonic()
        response = urllib3.request("GET", url, timeout=5, retries=False)
        took.append(time.monotonic() - started)
        assert response.status == 200
    assert max(took) < 3.0, [round(seconds, 2) for seconds in took]


def connected(service: Service) -> socket.socket:
    host, port = service.base_url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def test_a_head_request_is_answered_with_the_get_answers_headers_and_no_body(
    embedded_service: Service, tmp_path: Path
) -> None:
    """HEAD is what link checkers and CDNs send: Django wrote the body anyway, which
    gunicorn dropped with a warning in the log for every one."""
    paths = ["/login/", "/static/processing/site.css", "/api/schema/", "/livez"]
    with web_alone(embedded_service, tmp_path) as web:
        for path in paths:
            got = urllib3.request("GET", web.base_url + path, timeout=10, redirect=False)
            head = urllib3.request("HEAD", web.base_url + path, timeout=10, redirect=False)
            assert head.status == got.status == 200, path
            assert head.data == b""
            assert head.headers.get("Content-Length") == str(len(got.data)), path
            assert head.headers.get("Content-Type") == got.headers.get("Content-Type"), path
        log = web.log("web")
    assert "body bytes" not in log


def test_the_api_answers_503_and_logs_why_in_one_line_while_the_database_is_away(
    embedded_service: Service, tmp_path: Path
) -> None:
    """It answered 500 server_error, which no client retries, and logged a traceback per
    call with the cause buried in it."""
    # Given a web server whose PostgreSQL refuses connections (nothing listens on its port)
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    away = f"postgres://postgres@127.0.0.1:{port}/nowhere"
    with web_alone(embedded_service, tmp_path, DATABASE_URL=away, LOG_FORMAT="json") as web:
        # When a client calls the API, and a person logged in opens the page (a page was
        # a 500, in the API's JSON, with a traceback in the log)
        answer = urllib3.request(
            "GET",
            f"{web.base_url}/api/requests/",
            headers=api_headers(web.base_url + "/"),
            timeout=10,
            retries=False,  # urllib3 would wait out the Retry-After and ask again
        )
        page = urllib3.request(
            "GET",
            f"{web.base_url}/",
            headers={"Cookie": "sessionid=a-session-of-before", "Accept": "text/html"},
            timeout=10,
            retries=False,
        )
        log = web.log("web")

    # Then each is told to come back, and the log says why in one line each
    assert answer.status == page.status == 503
    assert answer.json() == {
        "error": "The database is unavailable; try again in a few seconds.",
        "code": "database_unavailable",
    }
    assert answer.headers["Retry-After"] == page.headers["Retry-After"] == "5"
    assert "The service is unavailable for a moment" in page.data.decode()
    lines = [json.loads(line) for line in log.splitlines() if "database unavailable" in line]
    assert len(lines) == 2
    for line in lines:
        assert line["level"] == "ERROR"
        assert f"port {port} failed: Connection refused Is the server running" in line["message"]
        assert "exc_info" not in line
    assert "Traceback" not in log
