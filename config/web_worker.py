"""The web server's worker: gunicorn's threaded worker (gthread), reading every request's
line and headers, and an upload's body, in its event loop instead of in a thread.

gthread hands a connection to a thread as soon as any byte arrives, and the thread then
blocks until the headers are complete, and again while the view reads the body: a
client that sends them a byte at a time, or stops half way (slowloris), holds a thread
for as long as it likes, and a few dozen such clients hold them all. Here the event loop
gathers the line and headers without blocking, for at most WEB_HEADER_TIMEOUT seconds,
then a body of a declared length up to the largest upload (past 1 MiB in a temporary
file) while its bytes keep coming (WEB_BODY_TIMEOUT between two, BODY_MOST_SECONDS in
all), BODIES_GATHERED_MOST at a time until their requests are served; only a request
that has all arrived takes a thread. A larger body, or one without a length, is refused
from its headers by the loop too (413, 411) and its connection closed; whatever else a
thread reads or writes on the socket waits at most WEB_BODY_TIMEOUT. A kept
connection's next request is gathered the same way.

Built on gunicorn's ThreadWorker, whose version requirements.lock pins; tests/config/
test_slow_clients.py holds it to its promise.
"""

import contextlib
import io
import json
import re
import selectors
import sys
import tempfile
import threading
import time
from collections import deque
from functools import partial
from typing import Any

from gunicorn import util as gunicorn_util
from gunicorn.workers.gthread import ThreadWorker

from config.env import env_float

HEADERS_END = b"\r\n\r\n"
CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)[ \t]*(?=\r\n)", re.IGNORECASE)
TRANSFER_ENCODING = re.compile(rb"\r\ntransfer-encoding:", re.IGNORECASE)
EXPECT_CONTINUE = re.compile(rb"\r\nexpect:[ \t]*100-continue[ \t]*\r\n", re.IGNORECASE)
# A Content-Length of more digits than this is past any limit (a 64-bit length has 19).
LENGTH_MOST_DIGITS = 18
# A body larger than this goes to a temporary file while it arrives.
BODY_IN_MEMORY_BYTES = 1024 * 1024
# However steadily it arrives, a body takes no longer than this.
BODY_MOST_SECONDS = 600


class HeadersFirstWorker(ThreadWorker):  # type: ignore[misc]
    def init_process(self) -> None:
        # Connections whose headers are arriving, oldest deadline first.
        self.reading_headers: deque[Any] = deque()
        self.header_timeout = env_float("WEB_HEADER_TIMEOUT", 10, positive=True)
        # Connections whose bodies are arriving. A body holds a slot from its first byte
        # until its request has been served: gathered, and waiting for a thread, it still
        # holds its memory or file.
        self.reading_bodies: list[Any] = []
        self.body_slots = threading.BoundedSemaphore(BODIES_GATHERED_MOST)
        self.body_timeout = env_float("WEB_BODY_TIMEOUT", 30, positive=True)
        # gunicorn's own refusals (a request line too long, a header it cannot parse) in
        # the service's JSON error shape, not its HTML page: its handle_error, which picks
        # the status and logs, writes them through this one function of its util module,
        # used nowhere else.
        gunicorn_util.write_error = _json_error
        cfg = self.cfg
        # More than this and the parser refuses the request (431/400) anyway.
        self.header_bytes_max = (
            cfg.limit_request_line + cfg.limit_request_fields * (cfg.limit_request_field_size + 2)
        ) + len(HEADERS_END)
        super().init_process()

    def enqueue_req(self, conn: Any) -> None:
        if self.cfg.is_ssl or conn.is_http2:
            super().enqueue_req(conn)
            return
        # Bytes of the next request the last one's thread read ahead, if any.
        gathered = b""
        if conn.parser is not None:
            gathered = conn.parser.unreader.buf.getvalue()
            conn.parser.unreader.buf = io.BytesIO()
        conn.header_bytes = gathered
        if self._headers_arrived(conn):
            self._body_gather(conn)
            return
        conn.header_deadline = time.monotonic() + self.header_timeout
        conn.sock.setblocking(False)
        self.reading_headers.append(conn)
        self.poller.register(
            conn.sock, selectors.EVENT_READ, partial(self._header_bytes_received, conn)
        )

    def _header_bytes_received(self, conn: Any, _sock: Any) -> None:
        data = _arrived(conn, 65536)
        if data is None:
            return
        if not data:  # the client went away
            self._stop_reading(conn)
            self._drop(conn)
            return
        conn.header_bytes += data
        if self._headers_arrived(conn):
            self._stop_reading(conn)
            self._body_gather(conn)

    def _body_gather(self, conn: Any) -> None:
        """Gather the rest of a body of a declared length up to the largest upload before a
        thread is given the request; refuse a larger one, or one without a length, here;
        any other request (no body, or all of it here already) goes to a thread as it is."""
        head, found, body = conn.header_bytes.partition(HEADERS_END)
        if not found:  # headers longer than the parser takes: no thread needed to say so
            self._refuse(conn, HEADERS_TOO_LARGE)
            return
        fields = head + b"\r\n"  # every header line ended by its CRLF
        declared = CONTENT_LENGTH.search(fields)
        length = _declared_length(declared.group(1)) if declared else 0
        refusal = _refusal(head, fields, length)
        if refusal is not None:
            self._refuse(conn, refusal)
            return
        if not len(body) < length:
            self._headers_done(conn)
            return
        if not self.body_slots.acquire(blocking=False):
            self._refuse(conn, BUSY)
            return
        conn.sock.setblocking(False)
        if EXPECT_CONTINUE.search(fields):
            # The client waits for it before sending the body (curl for a second): sent
            # here, and the header taken out so that gunicorn sends no second one.
            with contextlib.suppress(OSError):
                conn.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")
            conn.header_bytes = EXPECT_CONTINUE.sub(b"\r\n", fields) + b"\r\n" + body
        conn.body_missing = length - len(body)
        conn.body_started = conn.body_touched = time.monotonic()
        # Closed once the request has been served (handle), or the client has gone.
        body_file = tempfile.SpooledTemporaryFile(max_size=BODY_IN_MEMORY_BYTES)  # noqa: SIM115
        conn.body_file = body_file
        self.reading_bodies.append(conn)
        if not self._body_keep(conn, conn.header_bytes):
            return
        conn.header_bytes = b""
        self.poller.register(
            conn.sock, selectors.EVENT_READ, partial(self._body_bytes_received, conn)
        )

    def _body_bytes_received(self, conn: Any, _sock: Any) -> None:
        data = _arrived(conn, min(conn.body_missing, 65536))
        if data is None:
            return
        if not data:  # the client went away
            self._stop_gathering(conn)
            self._drop(conn)
            return
        conn.body_missing -= len(data)
        if not self._body_keep(conn, data):
            return
        conn.body_touched = time.monotonic()
        if not conn.body_missing:
            self._stop_gathering(conn, served=True)
            self._headers_done(conn)

    def _body_keep(self, conn: Any, data: bytes) -> bool:
        """Write data to the connection's body file; where the disk or the file handles
        have run out, refuse the request (an error raised here ended the whole worker,
        and every request on it)."""
        try:
            conn.body_file.write(data)
            if not conn.body_missing:
                conn.body_file.seek(0)  # which writes out what is buffered
        except OSError:
            self._stop_gathering(conn)
            self._refuse(conn, BUSY)
            return False
        return True

    def _headers_arrived(self, conn: Any) -> bool:
        gathered: bytes = conn.header_bytes
        return HEADERS_END in gathered or len(gathered) > self.header_bytes_max

    def _headers_done(self, conn: Any) -> None:
        conn.data_ready = True
        super().enqueue_req(conn)

    def handle(self, conn: Any) -> Any:
        gathered = getattr(conn, "header_bytes", b"")
        body_file = getattr(conn, "body_file", None)
        conn.header_bytes, conn.body_file = b"", None
        if self.cfg.is_ssl or conn.is_http2:
            return super().handle(conn)
        conn.init()
        unreader = conn.parser.unreader
        unreader.unread(gathered)
        # Whatever the thread still reads from the socket waits at most WEB_BODY_TIMEOUT
        # for it: a body the loop did not gather, a drain.
        unreader.sock = _GatheredFirst(body_file, conn.sock, self.body_timeout)
        try:
            return super().handle(conn)
        finally:
            unreader.sock = conn.sock
            if body_file is not None:
                self._body_close(body_file)

    def handle_request(self, req: Any, conn: Any) -> Any:
        # The answer too goes out within WEB_BODY_TIMEOUT a write: a client that reads
        # nothing held the thread writing to it for good.
        conn.sock.settimeout(self.body_timeout)
        return super().handle_request(req, conn)

    def _body_close(self, body_file: Any) -> None:
        with contextlib.suppress(OSError):  # a last flush, on a disk that is full
            body_file.close()
        self.body_slots.release()

    def murder_pending(self) -> None:
        super().murder_pending()
        now = time.monotonic()
        while self.reading_headers and self.reading_headers[0].header_deadline <= now:
            conn = self.reading_headers[0]
            self._stop_reading(conn)
            self._drop(conn)
        for conn in [conn for conn in self.reading_bodies if self._body_late(conn, now)]:
            self._stop_gathering(conn)
            self._refuse(conn, self._late_answer())

    def _body_late(self, conn: Any, now: float) -> bool:
        idle: float = now - conn.body_touched
        return idle > self.body_timeout or now - conn.body_started > BODY_MOST_SECONDS

    def _stop_gathering(self, conn: Any, *, served: bool = False) -> None:
        """Stop reading conn's body: whole, to be served by a thread (which closes its
        file), or given up on."""
        self.reading_bodies.remove(conn)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)
        if not served:
            self._body_close(conn.body_file)
            conn.body_file = None

    def _stop_reading(self, conn: Any) -> None:
        self.reading_headers.remove(conn)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)

    def _drop(self, conn: Any) -> None:
        self.nr_conns -= 1
        conn.close()

    def _refuse(self, conn: Any, answer: bytes) -> None:
        """Send answer (the client may be reading; never waiting for it) and close the
        connection."""
        with contextlib.suppress(OSError):
            conn.sock.setblocking(False)
            conn.sock.send(answer)
        self._drop(conn)

    def _late_answer(self) -> bytes:
        return _answer(
            "408 Request Timeout",
            "request_timeout",
            f"The request's body stopped arriving for {self.body_timeout:g} s, or took "
            f"longer than {BODY_MOST_SECONDS // 60} minutes in all.",
        )


def _refusal(head: bytes, fields: bytes, length: int) -> bytes | None:
    """The answer to a request refused from its headers, without a thread: a body with no
    length (no route takes one; a thread read a chunked one as empty, and told the client
    its fields were missing) or longer than the largest upload (a thread answered it, 401
    or 413, then drained it for seconds: 40 such clients held every thread)."""
    # The application is loaded by the time a request comes.
    from django.conf import settings
    from django.urls import reverse

    from processing.exceptions import ApiError, BodyTooLarge, FileTooLarge, LengthRequired
    from processing.policies import upload_body_limit

    error: ApiError
    if TRANSFER_ENCODING.search(fields):
        return _answer("411 Length Required", LengthRequired.code, LengthRequired.message)
    limit = upload_body_limit()
    if length <= limit:
        return None
    target = head.split(b" ", 2)[1:2] or [b""]
    if target[0].partition(b"?")[0] == reverse("upload").encode():
        error = FileTooLarge.over(settings.CSV_MAX_BYTES)
    else:
        error = BodyTooLarge(f"The request's body is larger than the limit of {limit:,} bytes.")
    return _answer("413 Content Too Large", error.code, error.message)


def _declared_length(digits: bytes) -> int:
    """A Content-Length's digits as a number; more of them than any body needs, as more
    than any limit: int() refuses past 4,300 digits, and its error in the event loop ended
    the worker with every request on it (one header of 5,000 nines)."""
    digits = digits.lstrip(b"0")
    return int(digits or b"0") if len(digits) <= LENGTH_MOST_DIGITS else sys.maxsize


def _arrived(conn: Any, size: int) -> bytes | None:
    """Up to size bytes from conn's socket: None if none have come yet, b"" if the client
    has gone."""
    try:
        data: bytes = conn.sock.recv(size)
    except BlockingIOError:
        return None
    except OSError:
        return b""
    return data


def _answer(status: str, code: str, error: str, headers: bytes = b"") -> bytes:
    """An answer in the service's error shape, closing the connection."""
    body = json.dumps({"error": error, "code": code}).encode()
    return (
        b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nConnection: close\r\n%s"
        b"Content-Length: %d\r\n\r\n%s" % (status.encode(), headers, len(body), body)
    )


# The code of each status gunicorn refuses a request with (gunicorn.workers.base): the
# API's own where it has one for the status (README, "Every error has one shape").
REFUSAL_CODES = {
    400: "bad_request",
    403: "permission_denied",
    414: "request_line_too_long",
    417: "expectation_failed",
    431: "headers_too_large",
    500: "server_error",
    501: "not_implemented",
}


def _json_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn.util.write_error's stand-in: the same status and message, as JSON."""
    # gunicorn read the request's bytes as Latin-1: a UTF-8 path is shown as sent.
    with contextlib.suppress(UnicodeError):
        mesg = mesg.encode("latin-1").decode("utf-8")
    error = f"The request could not be read: {mesg}." if mesg else "The server failed."
    code = REFUSAL_CODES.get(status_int, "bad_request" if status_int < 500 else "server_error")
    gunicorn_util.write_nonblock(sock, _answer(f"{status_int} {reason}", code, error))


# Bodies gathered at once by one worker: a client that opens more connections than this
# is refused on the next (503) rather than let hold memory, disk or threads.
BODIES_GATHERED_MOST = 32
HEADERS_TOO_LARGE = _answer(
    "431 Request Header Fields Too Large",
    "headers_too_large",
    "The request's line and headers are longer than the server takes.",
)
BUSY = _answer(
    "503 Service Unavailable",
    "server_busy",
    "The server is receiving as many uploads as it can. Try again in a few seconds.",
    b"Retry-After: 5\r\n",
)


class _GatheredFirst:
    """A socket whose first bytes are those the event loop gathered (a request's body, if
    any), then the socket's own, each read waiting at most timeout."""

    def __init__(self, gathered: Any, sock: Any, timeout: float) -> None:
        self._gathered, self._sock, self._timeout = gathered, sock, timeout

    def recv(self, size: int) -> bytes:
        data: bytes = self._gathered.read(size) if self._gathered is not None else b""
        if not data:
            self._sock.settimeout(self._timeout)
            data = self._sock.recv(size)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)
