"""The web server's worker: gunicorn's threaded worker (gthread), reading every request's
line and headers in its event loop instead of in a thread.

gthread hands a connection to a thread as soon as any byte arrives, and the thread then
blocks until the headers are complete: a client that sends them a byte at a time, or
stops half way (slowloris), holds a thread for as long as it likes, and a few dozen such
clients hold them all. Here the event loop gathers the line and headers without blocking,
for at most WEB_HEADER_TIMEOUT seconds, and only a request whose headers have all arrived
takes a thread; a keep-alive connection's next request is gathered the same way. Bodies
are read by the thread as the view reads them: the proxy in front should buffer them
(README, "Production").

Built on gunicorn's ThreadWorker, whose version requirements.lock pins; tests/config/
test_slow_clients.py holds it to its promise.
"""

import contextlib
import io
import selectors
import time
from collections import deque
from functools import partial
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

from config.env import env_float

HEADERS_END = b"\r\n\r\n"


class HeadersFirstWorker(ThreadWorker):  # type: ignore[misc]
    def init_process(self) -> None:
        # Connections whose headers are arriving, oldest deadline first.
        self.reading_headers: deque[Any] = deque()
        self.header_timeout = env_float("WEB_HEADER_TIMEOUT", 10, positive=True)
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
            self._headers_done(conn)
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
            self._headers_done(conn)

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
        return super().handle(conn)

    def murder_pending(self) -> None:
        super().murder_pending()
        now = time.monotonic()
        while self.reading_headers and self.reading_headers[0].header_deadline <= now:
            conn = self.reading_headers[0]
            self._stop_reading(conn)
            self._drop(conn)

    def _stop_reading(self, conn: Any) -> None:
        self.reading_headers.remove(conn)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)

    def _drop(self, conn: Any) -> None:
        self.nr_conns -= 1
        conn.close()
