"""net.fetch() and net.post(): every outbound call, against a real server on 127.0.0.1.

Nothing here may connect anywhere but 127.0.0.0/8: the `only_loopback` fixture replaces
socket connect with one that fails the test for any other address, so a block that ever
lets an address through shows up as a failure, not as traffic.
"""

import email.utils
import gzip
import ipaddress
import socket
import ssl
import threading
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import net.connections
from net import (
    DownloadStopped,
    Fetched,
    NetError,
    NetPolicy,
    Posted,
    blocked_address,
    check_url,
    fetch,
    fetch_if_changed,
    parse_networks,
    post,
    retry_after_seconds,
    system_resolver,
)

BODY = b"\x89PNG fake image body " * 100
ETAG, LAST_MODIFIED = '"v1"', "Tue, 24 Nov 2026 10:00:00 GMT"
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
JPEG_START = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01"


def gzip_bomb_parts(mebibytes: int) -> Iterator[bytes]:
    """A gzip stream of `mebibytes` MiB of zeros, made in a moment: after a full flush the
    compressor starts afresh, so each MiB compresses to the same kilobyte, sent again and
    again (its trailer is never reached)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = b"\0" * (1024 * 1024)
    yield compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    again = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    for _ in range(mebibytes - 1):
        yield again


@pytest.fixture(autouse=True)
def only_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    real_connect = socket.socket.connect

    def guarded_connect(sock: socket.socket, address: Any) -> None:
        host = address[0] if isinstance(address, tuple) else address
        if ipaddress.ip_address(host) not in LOOPBACK:
            pytest.fail(f"the fetcher tried to connect to {address}")
        real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)


# Answers that never end, each read of them well within a read timeout: a header dripped a
# byte at a time, and `100 Continue` sent again and again.
STALLING_ANSWERS = {
    "/drip-headers": (b"HTTP/1.1 200 OK\r\nX-Slow: ", b"x"),
    "/continue-forever": (b"", b"HTTP/1.1 100 Continue\r\n\r\n"),
}


class Handler(BaseHTTPRequestHandler):
    received: list[bytes] = []

    def do_GET(self) -> None:
        path = self.path
        if path == "/host":
            self.reply(200, self.headers["Host"].encode())
        elif path == "/ok":
            self.reply(200, BODY)
        elif path == "/validated":
            if self.headers.get("If-None-Match") == ETAG:
                self.send_response(304)
                self.send_header("ETag", ETAG)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("ETag", ETAG)
            self.send_header("Last-Modified", LAST_MODIFIED)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY)
        elif path.startswith("/status/"):
            self.send_response(int(path.rsplit("/", 1)[1]))
            self.send_header("Retry-After", "7")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"no")
        elif path.startswith("/redirect/"):
            hops = int(path.rsplit("/", 1)[1])
            self.send_response(302)
            self.send_header("Location", "/ok" if hops <= 1 else f"/redirect/{hops - 1}")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path == "/to-loopback-alias":
            self.send_response(302)
            port = self.server.server_address[1]  # type: ignore[index]
            self.send_header("Location", f"http://127.0.0.2:{port}/ok")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path == "/big-declared":
            self.send_response(200)
            self.send_header("Content-Length", str(10_000_000))
            self.end_headers()
            self.wfile.write(b"x" * 1000)
        elif path == "/big-chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"x" * 4096
            try:
                for _ in range(1000):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except OSError:
                return
        elif path in STALLING_ANSWERS:
            self.stall(STALLING_ANSWERS[path])
        elif path == "/closed-early":
            # Says 1,000 bytes more than it sends, then closes (HTTP/1.0)
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY) + 1000))
            self.end_headers()
            self.wfile.write(BODY)
        elif path == "/not-http":
            self.wfile.write(JPEG_START + BODY)  # HTTP/0.9: the body, no status line
        elif path == "/bad-status-line":
            self.wfile.write(b"HTTP/1.1 2OO OK\r\nContent-Length: 0\r\n\r\n")
        elif path in {"/stalled-body", "/stalled-transfer-encoding"}:
            self.send_response(200)
            if path == "/stalled-body":
                self.send_header("Content-Length", str(len(BODY) + 1000))
            else:  # not "chunked" alone: read to a close that does not come
                self.send_header("Transfer-Encoding", "gzip, chunked")
            self.end_headers()
            self.wfile.write(BODY)
            self.wfile.flush()
            time.sleep(3)
        elif path.startswith("/encoded/"):
            name = unquote(path.rsplit("/", 1)[1])
            raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
            half = len(BODY) // 2
            variants = {  # the Content-Encoding and the body of each
                "gzip": ("gzip", gzip.compress(BODY)),
                "x-gzip": ("x-gzip", gzip.compress(BODY)),
                "deflate": ("deflate", zlib.compress(BODY)),
                "raw-deflate": ("deflate", raw.compress(BODY) + raw.flush()),
                "gzip-members": ("gzip", gzip.compress(BODY[:half]) + gzip.compress(BODY[half:])),
                "gzip-cut": ("gzip", gzip.compress(BODY)[:-20]),
            }
            encoding, body = variants.get(name, (name, BODY))
            self.send_response(200)
            self.send_header("Content-Encoding", encoding)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif path == "/odd-length":
            # "²" is a digit to str.isdigit(), and not to int()
            self.send_response(200)
            self.send_header("Content-Length", "\u00b2")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(BODY)
        elif path == "/gzip-bomb":
            # 10 GB once decompressed, 10 MB as sent; read to the close (HTTP/1.0)
            self.send_response(200)
            self.send_header("Content-Encoding", "gzip")
            self.end_headers()
            try:
                for part in gzip_bomb_parts(10 * 1024):
                    self.wfile.write(part)
            except OSError:
                return
        elif path == "/early-hints":
            self.wfile.write(
                b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
                b"HTTP/1.1 102 Processing\r\n\r\n"
            )
            self.reply(200, BODY)
        elif path == "/drip":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            try:
                for _ in range(1000):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.1)
            except OSError:
                return
        else:
            self.reply(404, b"")

    def do_POST(self) -> None:
        self.received.append(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path in STALLING_ANSWERS:
            self.stall(STALLING_ANSWERS[self.path])
            return
        self.reply(201, b"thanks")

    def stall(self, answer: tuple[bytes, bytes]) -> None:
        """Send answer's start, then its repeated part every 50 ms, never finishing."""
        start, repeated = answer
        try:
            self.wfile.write(start)
            for _ in range(1200):
                self.wfile.write(repeated)
                self.wfile.flush()
                time.sleep(0.05)
        except OSError:
            return

    def reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def policy_for(server: str, **limits: Any) -> NetPolicy:
    port = int(server.rsplit(":", 1)[1])
    return NetPolicy(
        allowed_networks=parse_networks(["127.0.0.1/32"]),
        allowed_ports=frozenset({port}),
        **limits,
    )


def reason_of(url: str, policy: NetPolicy, **options: Any) -> NetError:
    with pytest.raises(NetError) as raised:
        fetch(url, policy, **options)
    return raised.value


def test_a_200_answer_returns_the_exact_body(server: str) -> None:
    assert fetch(f"{server}/ok", policy_for(server)) == BODY


def test_a_conditional_get_comes_back_without_a_body_when_the_source_has_not_changed(
    server: str,
) -> None:
    url, policy = f"{server}/validated", policy_for(server)
    assert fetch_if_changed(url, policy) == Fetched(
        body=BODY, etag=ETAG, last_modified=LAST_MODIFIED
    )
    assert fetch_if_changed(url, policy, etag=ETAG) == Fetched(body=None, etag=ETAG)
    # Validators of another version: the body comes
    assert fetch_if_changed(url, policy, etag='"v0"').body == BODY


@pytest.mark.parametrize(
    ("status", "transient"), [(404, False), (403, False), (410, False), (429, True), (503, True)]
)
def test_an_error_status_names_itself_and_whether_to_retry(
    server: str, status: int, transient: bool
) -> None:
    error = reason_of(f"{server}/status/{status}", policy_for(server))
    assert error.reason == f"http_{status}"
    assert error.transient is transient


def test_up_to_five_redirects_are_followed_and_a_sixth_is_refused(server: str) -> None:
    assert fetch(f"{server}/redirect/5", policy_for(server)) == BODY
    assert reason_of(f"{server}/redirect/6", policy_for(server)).reason == "too_many_redirects"


def test_a_redirect_to_a_loopback_alias_outside_the_allow_list_is_blocked(server: str) -> None:
    # 127.0.0.2 is loopback too, but only 127.0.0.1/32 is allowed: the hop is checked again
    error = reason_of(f"{server}/to-loopback-alias", policy_for(server))
    assert error.reason == "blocked_address"
    # said with the hop it came at: the CSV's own URL was allowed
    assert error.message.startswith("After a redirect to http://127.0.0.2:")
    assert error.message.endswith(": The address is not allowed.")


def test_a_declared_length_over_the_cap_is_refused_before_reading(server: str) -> None:
    error = reason_of(f"{server}/big-declared", policy_for(server, max_bytes=100_000))
    assert error.reason == "too_large"


def test_a_body_over_the_cap_without_a_length_is_cut_off_while_streaming(server: str) -> None:
    error = reason_of(f"{server}/big-chunked", policy_for(server, max_bytes=100_000))
    assert error.reason == "too_large"


def test_a_server_that_drips_bytes_is_cut_off_at_the_total_deadline(server: str) -> None:
    started = time.monotonic()
    error = reason_of(f"{server}/drip", policy_for(server, total_timeout=1.0, read_timeout=5.0))
    elapsed = time.monotonic() - started
    assert error.reason == "timeout"
    assert error.transient is True
    assert error.message == "The download took longer than the 1 s allowed."
    assert elapsed < 2.5


def test_a_download_no_longer_wanted_stops_at_its_next_chunk(server: str) -> None:
    """Asked before each chunk: a cancelled request's download ended at its deadline."""
    asked: list[float] = []

    def stopped() -> bool:
        asked.append(time.monotonic())
        return len(asked) > 3  # the first hop, then two chunks, then no more

    policy = policy_for(server, total_timeout=30.0, read_timeout=5.0)
    with pytest.raises(DownloadStopped):
        fetch_if_changed(f"{server}/drip", policy, stopped=stopped)
    assert len(asked) == 4  # not the drip's thousand chunks


@pytest.mark.parametrize("path", STALLING_ANSWERS)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_an_answer_whose_headers_never_end_is_cut_off_at_the_total_deadline(
    server: str, path: str, method: str
) -> None:
    # Given a server that keeps the status line and headers coming, slowly or without end
    url, policy = f"{server}{path}", policy_for(server, total_timeout=1.0, read_timeout=5.0)
    started = time.monotonic()
    # When an image is fetched from it, or a webhook posted to it
    call = (
        (lambda: fetch(url, policy)) if method == "GET" else (lambda: post(url, b"{}", {}, policy))
    )
    with pytest.raises(NetError) as raised:
        call()
    # Then the call ends at its deadline, not at the server's pleasure
    assert time.monotonic() - started < 2.5
    assert (raised.value.reason, raised.value.transient) == ("timeout", True)


def test_a_tls_handshake_that_never_ends_is_cut_off_at_the_total_deadline() -> None:
    """Python's ssl module gives the whole handshake the socket's timeout (the connect
    timeout, cut to what is left of the deadline), not each of its reads: kept so."""
    # Given a server that answers a TLS ClientHello with the start of a 16 KB record, then
    # drips the rest a byte every 50 ms (OpenSSL waits for the whole record)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def drip() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)  # the ClientHello
            connection.sendall(b"\x16\x03\x03\x40\x00")
            while not stop.wait(0.05):
                try:
                    connection.sendall(b"\x00")
                except OSError:
                    return

    threading.Thread(target=drip, daemon=True).start()
    started = time.monotonic()
    # When an image is fetched from it over https
    try:
        error = reason_of(
            f"https://127.0.0.1:{port}/a.jpg",
            policy_for(f"https://127.0.0.1:{port}", total_timeout=1.0, read_timeout=5.0),
        )
    finally:
        stop.set()
        listener.close()
    # Then the call ends at its deadline, as a timeout
    assert time.monotonic() - started < 2.5
    assert (error.reason, error.transient) == ("timeout", True)


def test_a_body_cut_short_by_the_server_says_how_far_it_came(server: str) -> None:
    # Given a server that declares 1,000 bytes more than it sends, then closes
    # When an image is fetched from it
    error = reason_of(f"{server}/closed-early", policy_for(server))
    # Then the message says so in words, not urllib3's IncompleteRead(...)
    assert (error.reason, error.transient) == ("connection_error", True)
    assert error.message == (
        f"The server closed the connection after {len(BODY):,} of {len(BODY) + 1000:,} bytes."
    )


@pytest.mark.parametrize(
    ("path", "message"),
    [
        # the image's bytes alone, no status line (HTTP/0.9)
        ("/not-http", "The server's answer is not HTTP."),
        ("/bad-status-line", "The server's answer has an invalid status line."),
    ],
)
def test_an_answer_that_is_not_http_is_said_so_without_its_bytes(
    server: str, path: str, message: str
) -> None:
    error = reason_of(f"{server}{path}", policy_for(server))
    # The message quotes none of them, and the call is not tried again
    assert (error.reason, error.message, error.transient) == ("connection_error", message, False)


@pytest.mark.parametrize(
    ("path", "so_far"),
    [
        ("/stalled-body", f"{len(BODY):,} of {len(BODY) + 1000:,}"),
        ("/stalled-transfer-encoding", f"{len(BODY):,}"),
    ],
)
def test_a_body_that_stops_coming_is_told_as_stalled_not_as_no_answer(
    server: str, path: str, so_far: str
) -> None:
    # Given a server that answers, sends part of the body, and then nothing with the
    # connection open
    policy = policy_for(server, read_timeout=0.5, total_timeout=10.0)
    started = time.monotonic()
    error = reason_of(f"{server}{path}", policy)
    # Then it is a timeout at the read timeout, saying the server had answered
    assert time.monotonic() - started < 2.5
    assert (error.reason, error.transient) == ("timeout", True)
    assert error.message == (
        f"The download stalled after {so_far} bytes: nothing more came for 0.5 s."
    )


def test_a_203_is_an_answer_like_a_200(server: str) -> None:
    # 203 Non-Authoritative Information: a proxy changed the headers; browsers show it
    assert fetch(f"{server}/status/203", policy_for(server)) == b"no"


def test_a_status_outside_http_is_not_retried_as_a_server_error(server: str) -> None:
    error = reason_of(f"{server}/status/999", policy_for(server))
    assert (error.reason, error.message, error.transient) == (
        "connection_error",
        "The server answered with status 999, which is not a valid HTTP status.",
        False,
    )


@pytest.mark.parametrize(
    "encoding", ["gzip", "x-gzip", "deflate", "raw-deflate", "gzip-members", "identity"]
)
def test_a_body_compressed_though_not_asked_for_comes_decompressed(
    server: str, encoding: str
) -> None:
    # Given a server that compresses what it sends whatever was asked (an S3 object
    # uploaded compressed), as browsers show it
    assert fetch(f"{server}/encoded/{encoding}", policy_for(server)) == BODY


def test_a_content_length_that_is_not_a_number_is_read_to_the_close(server: str) -> None:
    # It ended the download as internal_error (ValueError from int("²"))
    assert fetch(f"{server}/odd-length", policy_for(server)) == BODY


def test_a_compressed_body_cut_short_is_refused_not_taken_for_the_image(server: str) -> None:
    # Its start decompresses to part of the file: taken whole, it failed as a damaged
    # image, or showed as half of one
    error = reason_of(f"{server}/encoded/gzip-cut", policy_for(server))
    assert (error.reason, error.message) == (
        "connection_error",
        "The server's gzip-compressed answer is damaged (it stops before its end).",
    )


def test_a_gzip_bomb_is_cut_off_at_the_cap_with_the_cap_in_memory(server: str) -> None:
    # Given 10 MB that decompress to 10 GB
    tracemalloc.start()
    try:
        error = reason_of(f"{server}/gzip-bomb", policy_for(server, max_bytes=1_000_000))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Then the download stops once a byte past the cap has come out, holding about the cap
    assert error.reason == "too_large"
    assert error.message == (
        "The file is larger than 1000000 bytes once decompressed (the server sent it "
        "gzip-compressed)."
    )
    assert peak < 4_000_000


@pytest.mark.parametrize("encoding", ["br", "gzip, zstd"])
def test_a_body_in_an_encoding_that_cannot_be_read_is_refused_by_its_name(
    server: str, encoding: str
) -> None:
    error = reason_of(f"{server}/encoded/{encoding}", policy_for(server))
    assert (error.reason, error.transient) == ("connection_error", False)
    assert error.message == (
        f"The server sent the file compressed as {encoding} (Content-Encoding), which the "
        "service cannot read: serve it uncompressed, or compressed with gzip."
    )


def test_informational_answers_before_the_answer_are_skipped(server: str) -> None:
    # 103 Early Hints and 102 Processing come before the 200, as 100 Continue may
    assert fetch(f"{server}/early-hints", policy_for(server)) == BODY


def test_a_port_outside_the_allowed_ones_is_refused(server: str) -> None:
    policy = NetPolicy(allowed_networks=parse_networks(["127.0.0.1/32"]))
    assert reason_of(f"{server}/ok", policy).reason == "blocked_port"


@pytest.mark.parametrize("url", ["http://127.0.0.1:0/a.jpg", "https://127.0.0.1:0/a.jpg"])
def test_port_0_is_refused_as_a_port_not_taken_for_the_schemes_default(url: str) -> None:
    policy = NetPolicy(allowed_networks=parse_networks(["127.0.0.1/32"]))
    error = reason_of(url, policy)
    assert (error.reason, str(error)) == (
        "blocked_port",
        "Port 0 is not allowed (allowed: 80, 443 and those configured).",
    )


def test_loopback_is_blocked_without_an_allow_list(server: str) -> None:
    port = int(server.rsplit(":", 1)[1])
    policy = NetPolicy(allowed_ports=frozenset({port}))
    assert reason_of(f"{server}/ok", policy).reason == "blocked_address"


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/a.jpg",
        "file:///etc/passwd",
        "http:///a.jpg",
        "http://user:pw@example.com/",
    ],
)
def test_urls_that_cannot_be_fetched_are_invalid(url: str) -> None:
    assert reason_of(url, NetPolicy()).reason == "invalid_url"


NON_PUBLIC = [
    "127.0.0.1",
    "127.255.255.254",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",
    "100.64.0.1",
    "0.0.0.0",
    "224.0.0.1",
    "240.0.0.1",
    "255.255.255.255",
    "192.0.0.8",
    "198.18.0.1",
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "fd12:3456::1",
    "ff02::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "64:ff9b::7f00:1",
    "2001:db8::1",
]


@pytest.mark.parametrize("address", NON_PUBLIC)
def test_non_public_addresses_are_blocked(address: str) -> None:
    assert blocked_address(ipaddress.ip_address(address)) is True


@pytest.mark.parametrize("address", ["8.8.8.8", "93.184.215.14", "2606:4700:4700::1111"])
def test_public_addresses_are_not_blocked(address: str) -> None:
    assert blocked_address(ipaddress.ip_address(address)) is False


def test_an_allowed_network_opens_only_itself() -> None:
    allowed = parse_networks(["127.0.0.1/32"])
    assert blocked_address(ipaddress.ip_address("127.0.0.1"), allowed) is False
    assert blocked_address(ipaddress.ip_address("127.0.0.2"), allowed) is True


@pytest.mark.parametrize(
    "resolved",
    [
        *([address] for address in NON_PUBLIC),
        ["93.184.215.14", "127.0.0.1"],  # one bad address among good ones is enough
    ],
)
def test_a_name_that_resolves_to_a_blocked_address_is_refused_without_connecting(
    resolved: list[str],
) -> None:
    error = reason_of(
        "http://images.shop.example/a.jpg", NetPolicy(), resolver=lambda host, port: resolved
    )
    assert error.reason == "blocked_address"


@pytest.mark.parametrize(
    "host",
    [
        "2130706433",
        "0177.0.0.1",
        "0x7f.0.0.1",
        "127.1",
        "[::1]",
        "[::ffff:127.0.0.1]",
        # with the trailing dot of a fully qualified name, as browsers read them: these
        # failed as dns_error, "Could not resolve 127.0.0.1.", instead
        "127.0.0.1.",
        "2130706433.",
        "0x7f.1.",
        # in full-width digits and ideographic dots, which UTS 46 maps to 127.0.0.1
        "\uff11\uff12\uff17\uff0e\uff10\uff0e\uff10\uff0e\uff11",
        "127\u30020\u30020\u30021",
    ],
)
def test_other_spellings_of_loopback_are_blocked(host: str) -> None:
    assert reason_of(f"http://{host}/a.jpg", NetPolicy()).reason == "blocked_address"
    assert reason_of_check(f"http://{host}/a.jpg") == "blocked_address"


def reason_of_check(url: str) -> str:
    """The reason check_url (the upload's check of a webhook_url) refuses url with."""
    with pytest.raises(NetError) as refused:
        check_url(url, NetPolicy())
    return str(refused.value.reason)


def test_an_allowed_address_with_a_trailing_dot_is_reached_as_that_address(
    server: str,
) -> None:
    # Given 127.0.0.1 allowed
    port = int(server.rsplit(":", 1)[1])

    # When a URL naming it with a trailing dot is fetched (the system resolver finds no
    # such name: it failed as dns_error)
    body = fetch(f"http://127.0.0.1.:{port}/host", policy_for(server))

    # Then it went to the address, named as without the dot
    assert body == f"127.0.0.1:{port}".encode()


def test_post_sends_the_body_and_returns_the_status(server: str) -> None:
    Handler.received.clear()
    posted = post(
        f"{server}/hook", b'{"a": 1}', {"Content-Type": "application/json"}, policy_for(server)
    )
    assert posted == Posted(201)
    assert Handler.received == [b'{"a": 1}']


def test_a_name_is_resolved_once_and_the_checked_address_is_the_one_connected_to(
    server: str,
) -> None:
    # Given a resolver that would answer a public address the second time it is asked
    # (a DNS rebinding), and 127.0.0.1 (allowed) the first time
    port = int(server.rsplit(":", 1)[1])
    answers = [["127.0.0.1"], ["93.184.215.14"]]
    asked: list[str] = []

    def rebinding(host: str, port: int) -> list[str]:
        asked.append(host)
        return answers[len(asked) - 1]

    # When a URL with that name is fetched
    body = fetch(f"http://images.shop.test:{port}/host", policy_for(server), resolver=rebinding)

    # Then the name was resolved once, and the request went to the checked address with
    # the name as Host
    assert asked == ["images.shop.test"]
    assert body == f"images.shop.test:{port}".encode()


class KeepAliveHandler(Handler):
    """The same answers over connections kept open between requests (HTTP/1.1)."""

    protocol_version = "HTTP/1.1"
    connections = 0

    def setup(self) -> None:
        type(self).connections += 1
        super().setup()


@pytest.fixture
def keep_alive_server() -> Iterator[str]:
    KeepAliveHandler.connections = 0
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), KeepAliveHandler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_calls_to_one_address_share_a_connection_unless_an_answer_was_left_unread(
    keep_alive_server: str,
) -> None:
    server, policy = keep_alive_server, policy_for(keep_alive_server)
    # Read to their ends, three answers come over one connection
    for _ in range(3):
        assert fetch(f"{server}/ok", policy) == BODY
    assert KeepAliveHandler.connections == 1
    # An answer refused before its body was read closes its connection: the next call's
    # answer is its own, over a new one
    assert reason_of(f"{server}/ok", NetPolicy(**{**vars(policy), "max_bytes": 10})).reason == (
        "too_large"
    )
    assert fetch(f"{server}/host", policy) == server.removeprefix("http://").encode()
    assert KeepAliveHandler.connections == 2


class IdleTimeoutHandler(KeepAliveHandler):
    """Keeps a connection for one answer, then hangs up on its next request unanswered:
    a server whose idle timeout closed the connection just as the request went out."""

    def handle_one_request(self) -> None:
        self.answered = getattr(self, "answered", 0)
        if self.answered:
            self.rfile.readline()
            self.close_connection = True
            return
        self.answered += 1
        super().handle_one_request()


def test_a_get_on_a_kept_connection_the_server_closed_is_sent_again_on_a_new_one() -> None:
    # Given a server that hangs up on the second request of every connection
    IdleTimeoutHandler.connections = 0
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), IdleTimeoutHandler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    server = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        # When two GETs go out, the second on the kept connection
        first = fetch(f"{server}/ok", policy_for(server))
        second = fetch(f"{server}/ok", policy_for(server))
        # But a POST, which the server may have acted on, is not sent twice
        with pytest.raises(NetError) as refused:
            post(f"{server}/hook", b"{}", {}, policy_for(server))
    finally:
        httpd.shutdown()
        httpd.server_close()

    # Then both GETs were answered, the second over a new connection
    assert first == second == BODY
    assert IdleTimeoutHandler.connections == 2
    assert refused.value.reason == "connection_error"


def test_a_unicode_host_name_is_looked_up_and_sent_as_idna_2008_spells_it(server: str) -> None:
    """Python's IDNA 2003 codec made straße.example strasse.example: another name, which
    another registrant may hold."""
    port = int(server.rsplit(":", 1)[1])
    asked: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        asked.append(host)
        return ["127.0.0.1"]

    body = fetch(f"http://straße.example:{port}/host", policy_for(server), resolver=resolver)
    assert asked == ["xn--strae-oqa.example"]
    assert body == f"xn--strae-oqa.example:{port}".encode()


@pytest.mark.parametrize("url", ["http://☃.example/a.jpg", "http://bücher..example/a.jpg"])
def test_a_unicode_host_name_idna_refuses_is_an_invalid_url(url: str) -> None:
    error = reason_of(url, NetPolicy(), resolver=lambda host, port: ["93.184.215.14"])
    assert error.reason == "invalid_url"
    assert str(error).endswith("is not a valid name.")


def test_a_checked_address_is_used_for_a_few_seconds_and_a_refusal_is_looked_up_again(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = int(server.rsplit(":", 1)[1])
    asked: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        asked.append(host)
        return ["127.0.0.1"] if host == "images.shop.test" else ["10.0.0.1"]

    monkeypatch.setattr(net.connections, "ADDRESS_CACHE_SECONDS", 60.0)
    for _ in range(2):
        fetch(f"http://images.shop.test:{port}/ok", policy_for(server), resolver=resolver)
        error = reason_of(
            f"http://inside.shop.test:{port}/ok", policy_for(server), resolver=resolver
        )
        assert error.reason == "blocked_address"
    assert asked == ["images.shop.test", "inside.shop.test", "inside.shop.test"]
    # Once the time is up, the name is looked up again
    monkeypatch.setattr(net.connections, "ADDRESS_CACHE_SECONDS", 0.0)
    fetch(f"http://images.shop.test:{port}/ok", policy_for(server), resolver=resolver)
    fetch(f"http://images.shop.test:{port}/ok", policy_for(server), resolver=resolver)
    assert asked[3:] == ["images.shop.test", "images.shop.test"]


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("", None),
        ("120", 120.0),
        ("soon", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
    ],
)
def test_retry_after_is_read_as_seconds_or_a_date(
    header: str | None, seconds: float | None
) -> None:
    assert retry_after_seconds(header) == seconds


def test_a_retry_after_date_in_the_future_counts_from_now() -> None:
    when = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    waited = retry_after_seconds(when)
    assert waited is not None
    assert 80 < waited <= 90


def test_a_503_carries_its_retry_after(server: str) -> None:
    error = reason_of(f"{server}/status/503", policy_for(server))
    assert error.retry_after == 7.0


@pytest.mark.parametrize(
    ("code", "transient", "words"),
    [
        (socket.EAI_AGAIN, True, "the name servers did not answer in time"),
        (socket.EAI_NONAME, False, "no such host name"),
    ],
)
def test_a_resolver_that_could_not_answer_is_asked_again_a_name_that_does_not_exist_is_not(
    monkeypatch: pytest.MonkeyPatch, code: int, transient: bool, words: str
) -> None:
    # Faked: the system's resolver failing for now cannot be arranged on this machine.
    def failing(*_: Any, **__: Any) -> Any:
        raise socket.gaierror(code, "what the resolver said")

    monkeypatch.setattr(socket, "getaddrinfo", failing)
    with pytest.raises(NetError) as raised:
        system_resolver("images.shop.example", 443)
    assert (raised.value.reason, raised.value.transient) == ("dns_error", transient)
    # In words, without the C library's "[Errno -2] Name or service not known"
    assert str(raised.value) == f"Could not resolve images.shop.example: {words}."


def test_a_host_that_does_not_exist_is_told_so_in_words() -> None:
    with pytest.raises(NetError) as raised:
        system_resolver("images.shop.invalid", 443)  # .invalid never resolves (RFC 2606)
    assert str(raised.value) == "Could not resolve images.shop.invalid: no such host name."


def test_a_certificate_that_is_refused_is_a_tls_error_not_retried(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)  # signed by itself: no authority vouches for it
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "cert.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        address = f"https://127.0.0.1:{server.server_address[1]}"
        error = reason_of(f"{address}/ok", policy_for(address))
    finally:
        server.shutdown()
        server.server_close()
    assert (error.reason, error.transient) == ("tls_error", False)
    assert "CERTIFICATE_VERIFY_FAILED" in error.message


def test_a_port_nobody_listens_on_is_a_connection_error_not_a_timeout() -> None:
    """urllib3 makes a refused connection a ConnectTimeoutError too: it was told as a server
    slow to answer, where the README sends the user to check the host and port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    server = f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()  # nothing listens there now
    with pytest.raises(NetError) as refused:
        fetch(f"{server}/a.jpg", policy_for(server))
    assert refused.value.reason == "connection_error"
    assert "Connection refused" in refused.value.message


def test_a_failed_connection_to_a_name_does_not_tell_what_it_resolved_to() -> None:
    """The message named urllib3's pool, host='127.0.0.1': a customer could map the
    operator's internal names through any closed port of an allowed network."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()
    error = reason_of(
        f"http://images.internal.example:{port}/a.jpg",
        policy_for(f"http://127.0.0.1:{port}"),
        resolver=lambda host, port: ["127.0.0.1"],
    )
    assert error.reason == "connection_error"
    assert "Connection refused" in error.message
    assert "127.0.0.1" not in error.message
