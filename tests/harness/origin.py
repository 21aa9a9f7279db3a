"""An image origin and webhook receiver on 127.0.0.1, serving what tests put on it."""

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Route:
    body: bytes
    content_type: str = "image/jpeg"
    status: int = 200
    # Writes the whole response itself, for servers that misbehave on purpose.
    serve: Callable[[BaseHTTPRequestHandler], None] | None = None
    # Sent as the ETag; a GET with If-None-Match of it is answered 304, without the body.
    etag: str = ""
    # Sent as Last-Modified; a GET with an If-Modified-Since of that date or later is
    # answered 304, as Python's http.server and Apache compare dates.
    last_modified: str = ""


@dataclass
class Origin:
    """An HTTP server on 127.0.0.1 serving what tests put on it, and recording POSTs."""

    port: int
    routes: dict[str, Route] = field(default_factory=dict)
    posts: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    # Statuses to answer POSTs to a path with, in turn; 204 once they run out.
    post_statuses: dict[str, list[int]] = field(default_factory=dict)
    # Seconds a receiver holds each POST to a path before it answers: a slow receiver.
    post_delays: dict[str, float] = field(default_factory=dict)
    # Headers to answer POSTs to a path with (a redirect's Location).
    post_headers: dict[str, dict[str, str]] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)
    bodies_sent: dict[str, int] = field(default_factory=dict)  # GETs answered with the body

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(
        self,
        path: str,
        body: bytes = b"",
        content_type: str = "image/jpeg",
        status: int = 200,
        serve: Callable[[BaseHTTPRequestHandler], None] | None = None,
        etag: str = "",
        last_modified: str = "",
    ) -> str:
        self.routes[path] = Route(body, content_type, status, serve, etag, last_modified)
        return self.base_url + path

    def posts_to(self, path: str) -> list[tuple[dict[str, str], bytes]]:
        return [(headers, body) for got, headers, body in list(self.posts) if got == path]


def image_answer(handler: BaseHTTPRequestHandler, body: bytes) -> None:
    """A JPEG answered in full: for a route's `serve` that first waits, or counts."""
    handler.send_response(200)
    handler.send_header("Content-Type", "image/jpeg")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def _date(http_date: str) -> datetime:
    return parsedate_to_datetime(http_date)


def origin_serve() -> tuple[Origin, ThreadingHTTPServer]:
    """Start an origin on a spare port of 127.0.0.1; the caller shuts the server down."""
    state = Origin(port=0)

    class Handler(BaseHTTPRequestHandler):
        # Connections kept open between requests, as a CDN keeps them.
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            state.hits[self.path] = state.hits.get(self.path, 0) + 1
            route = state.routes.get(self.path)
            if route is None:
                self.send_error(404)
                return
            if route.serve is not None:
                # The client hangs up on a misbehaving server, as it should; a response
                # written by hand ends its connection.
                self.close_connection = True
                with contextlib.suppress(OSError):
                    route.serve(self)
                return
            if route.etag and self.headers.get("If-None-Match") == route.etag:
                self.send_response(304)
                self.send_header("ETag", route.etag)
                self.end_headers()
                return
            since = self.headers.get("If-Modified-Since")
            if route.last_modified and since and _date(since) >= _date(route.last_modified):
                self.send_response(304)
                self.end_headers()
                return
            state.bodies_sent[self.path] = state.bodies_sent.get(self.path, 0) + 1
            self.send_response(route.status)
            self.send_header("Content-Type", route.content_type)
            self.send_header("Content-Length", str(len(route.body)))
            if route.etag:
                self.send_header("ETag", route.etag)
            if route.last_modified:
                self.send_header("Last-Modified", route.last_modified)
            self.end_headers()
            self.wfile.write(route.body)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            state.posts.append((self.path, dict(self.headers.items()), body))
            time.sleep(state.post_delays.get(self.path, 0))
            queued = state.post_statuses.get(self.path)
            status = queued.pop(0) if queued else 204
            self.send_response(status)
            for name, value in state.post_headers.get(self.path, {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def end_headers(self) -> None:
            # A connection about to be closed says so: kept without the word, the client
            # could send its next request (a webhook) on it as it closed.
            if self.close_connection:
                self.send_header("Connection", "close")
            super().end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return state, server
