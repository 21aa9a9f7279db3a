"""The web server's worker: gunicorn's threaded worker (gthread), reading every request's
line, headers and body in its event loop instead of in a thread.

gthread hands a connection to a thread as soon as any byte arrives, and the thread then
blocks until the headers are complete, and again while the view reads the body: a
client that sends them a byte at a time, or stops half way (slowloris), holds a thread
for as long as it likes, and a few dozen such clients hold them all. Here the event loop
gathers the line and headers without blocking, for at most WEB_HEADER_TIMEOUT seconds,
then a body of a declared length the service would read (up to Django's
DATA_UPLOAD_MAX_MEMORY_SIZE; past 1 MiB in a temporary file) for at most
WEB_BODY_TIMEOUT seconds; only a request that has all arrived takes a thread. A body
past that size or without a length is refused by the view from its headers alone, and
what gunicorn then drains of it is bounded (5 s, 64 KiB). A keep-alive connection's
next request is gathered the same way.

Built on gunicorn's ThreadWorker, whose version requirements.lock pins; tests/config/
test_slow_clients.py holds it to its promise.
"""

import contextlib
import io
import json
import re
import selectors
import tempfile
import time
from collections import deque
from functools import partial
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

from config.env import env_float

HEADERS_END = b"\r\n\r\n"
CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)[ \t]*(?=\r\n)", re.IGNORECASE)
EXPECT_CONTINUE = re.compile(rb"\r\nexpect:[ \t]*100-continue[ \t]*\r\n", re.IGNORECASE)
# A body larger than this goes to a temporary file while it arrives.
BODY_IN_MEMORY_BYTES = 1024 * 1024


class HeadersFirstWorker(ThreadWorker):  # type: ignore[misc]
    def init_process(self) -> None:
        # Connections whose headers are arriving, oldest deadline first.
        self.reading_headers: deque[Any] = deque()
        self.header_timeout = env_float("WEB_HEADER_TIMEOUT", 10, positive=True)
        # Connections whose bodies are arriving, oldest deadline first.
        self.reading_bodies: deque[Any] = deque()
        self.body_timeout = env_float("WEB_BODY_TIMEOUT", 120, positive=True)
        cfg = self.cfg
        # More than this and the parser refuses the request (431/400) anyway.
        self.header_bytes_max = (
            cfg.limit_request_line + cfg.limit_request_fields * (cfg.limit_request_field_size + 2)
        ) + len(HEADERS_END)
        super().init_process()

    def enqueue_req(self, conn: Any) -> None:
        if getattr(conn, "headers_complete", False) or self.cfg.is_ssl or conn.is_http2:
            conn.headers_complete = False  # its next request is gathered here again
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
        try:
            data = conn.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the client went away
            self._stop_reading(conn)
            self._drop(conn)
            return
        conn.header_bytes += data
        if self._headers_arrived(conn):
            self._stop_reading(conn)
            self._body_gather(conn)

    def _body_gather(self, conn: Any) -> None:
        """Gather the rest of a body of a declared length the service would read, before a
        thread is given the request; any other request goes to a thread as it is."""
        head, found, body = conn.header_bytes.partition(HEADERS_END)
        fields = head + b"\r\n"  # every header line ended by its CRLF
        declared = CONTENT_LENGTH.search(fields) if found else None
        length = int(declared.group(1)) if declared else 0
        if length <= len(body) or length > self._body_max():
            self._headers_done(conn)
            return
        if EXPECT_CONTINUE.search(fields):
            # The client waits for it before sending the body (curl for a second): sent
            # here, and the header taken out so that gunicorn sends no second one.
            with contextlib.suppress(OSError):
                conn.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")
            conn.header_bytes = EXPECT_CONTINUE.sub(b"\r\n", fields, count=1) + b"\r\n" + body
        # Closed once the request has been served (handle), or the client has gone.
        body_file = tempfile.SpooledTemporaryFile(max_size=BODY_IN_MEMORY_BYTES)  # noqa: SIM115
        conn.body_file = body_file
        conn.body_file.write(conn.header_bytes)
        conn.header_bytes = b""
        conn.body_missing = length - len(body)
        conn.body_deadline = time.monotonic() + self.body_timeout
        conn.sock.setblocking(False)
        self.reading_bodies.append(conn)
        self.poller.register(
            conn.sock, selectors.EVENT_READ, partial(self._body_bytes_received, conn)
        )

    def _body_bytes_received(self, conn: Any, _sock: Any) -> None:
        try:
            data = conn.sock.recv(min(conn.body_missing, 65536))
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the client went away
            self._stop_gathering(conn)
            self._drop(conn)
            return
        conn.body_file.write(data)
        conn.body_missing -= len(data)
        if not conn.body_missing:
            self._stop_gathering(conn)
            conn.body_file.seek(0)
            self._headers_done(conn)

    def _body_max(self) -> int:
        from django.conf import settings  # the application is loaded by the time a body comes

        return int(settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 0)

    def _headers_arrived(self, conn: Any) -> bool:
        gathered: bytes = conn.header_bytes
        return HEADERS_END in gathered or len(gathered) > self.header_bytes_max

    def _headers_done(self, conn: Any) -> None:
        conn.headers_complete = True
        conn.data_ready = True
        super().enqueue_req(conn)

    def handle(self, conn: Any) -> Any:
        gathered = getattr(conn, "header_bytes", b"")
        if gathered:
            conn.header_bytes = b""
            conn.init()
            conn.parser.unreader.unread(gathered)
        body_file = getattr(conn, "body_file", None)
        if body_file is None:
            return super().handle(conn)
        conn.body_file = None
        conn.init()
        unreader = conn.parser.unreader
        unreader.sock = _GatheredFirst(body_file, conn.sock)
        try:
            return super().handle(conn)
        finally:
            unreader.sock = conn.sock
            body_file.close()

    def murder_pending(self) -> None:
        super().murder_pending()
        now = time.monotonic()
        while self.reading_headers and self.reading_headers[0].header_deadline <= now:
            conn = self.reading_headers[0]
            self._stop_reading(conn)
            self._drop(conn)
        while self.reading_bodies and self.reading_bodies[0].body_deadline <= now:
            conn = self.reading_bodies[0]
            self._stop_gathering(conn)
            with contextlib.suppress(OSError):
                conn.sock.send(self._body_timeout_answer())
            self._drop(conn)

    def _stop_gathering(self, conn: Any) -> None:
        self.reading_bodies.remove(conn)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)
        if conn.body_missing:
            conn.body_file.close()

    def _body_timeout_answer(self) -> bytes:
        """408 in the service's error shape: the client is still sending, and may read it."""
        body = json.dumps(
            {
                "error": f"The request's body did not arrive within {self.body_timeout:g} s.",
                "code": "request_timeout",
            }
        ).encode()
        return (
            b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )

    def _stop_reading(self, conn: Any) -> None:
        self.reading_headers.remove(conn)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)

    def _drop(self, conn: Any) -> None:
        self.nr_conns -= 1
        conn.close()


class _GatheredFirst:
    """A socket whose first bytes are those the event loop gathered (a request's line,
    headers and body), then the socket's own."""

    def __init__(self, gathered: Any, sock: Any) -> None:
        self._gathered, self._sock = gathered, sock

    def recv(self, size: int) -> bytes:
        data: bytes = self._gathered.read(size) or self._sock.recv(size)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)
