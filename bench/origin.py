"""The benchmark's image origin: the tests' Origin (routes, ETags, counts), served by one
asyncio loop on a thread of its own instead of a thread per connection.

A thread per connection made every answer wait its turn for the GIL behind a dozen other
connections' threads: a 304 took milliseconds, and the re-run measured the origin, not
the service. One loop answers each request as soon as it has read it, over connections
kept open (HTTP/1.1), as a CDN would. Only what the benchmark asks of an origin is spoken:
GET, with If-None-Match.
"""

import asyncio
import threading
from collections.abc import Callable

from tests.harness.origin import Origin


def origin_serve_fast() -> tuple[Origin, Callable[[], None]]:
    """Start an origin on a spare port of 127.0.0.1; call the function returned to stop it."""
    state = Origin(port=0)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    server: asyncio.Server | None = None
    open_connections: set[asyncio.StreamWriter] = set()

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        open_connections.add(writer)
        try:
            await _connection(state, reader, writer)
        finally:
            open_connections.discard(writer)

    async def start() -> None:
        nonlocal server
        server = await asyncio.start_server(connection, "127.0.0.1", 0)
        state.port = server.sockets[0].getsockname()[1]
        started.set()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        loop.run_forever()

    thread = threading.Thread(target=run, name="origin", daemon=True)
    thread.start()
    started.wait(10)

    async def close() -> None:
        # Each connection's reader then sees the end of its stream and returns.
        if server is not None:
            server.close()
        for writer in list(open_connections):
            writer.close()
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        if others:
            await asyncio.wait(others, timeout=5)

    def stop() -> None:
        asyncio.run_coroutine_threadsafe(close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)

    return state, stop


async def _connection(
    state: Origin, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                return
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            method, path, _ = request_line.split(" ", 2)
            headers = {
                name.strip().lower(): value.strip()
                for name, _, value in (line.partition(":") for line in header_lines if line)
            }
            writer.write(_answer(state, method, path, headers))
            await writer.drain()
    finally:
        writer.close()


def _answer(state: Origin, method: str, path: str, headers: dict[str, str]) -> bytes:
    state.hits[path] = state.hits.get(path, 0) + 1
    route = state.routes.get(path)
    if method != "GET" or route is None or route.serve is not None:
        return b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
    etag = f"ETag: {route.etag}\r\n".encode() if route.etag else b""
    if route.etag and headers.get("if-none-match") == route.etag:
        return b"HTTP/1.1 304 Not Modified\r\n" + etag + b"\r\n"
    state.bodies_sent[path] = state.bodies_sent.get(path, 0) + 1
    return (
        f"HTTP/1.1 {route.status} OK\r\nContent-Type: {route.content_type}\r\n"
        f"Content-Length: {len(route.body)}\r\n".encode()
        + etag
        + b"\r\n"
        + route.body
    )
