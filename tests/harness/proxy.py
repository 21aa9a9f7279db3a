"""A TCP proxy that loses answers: what a client meets when the network fails after its
request has reached the service (a timeout, a connection reset on the way back)."""

import contextlib
import socket
import threading
from dataclasses import dataclass, field

from tests.support import free_port


@dataclass
class AnswerLosingProxy:
    """Forwards 127.0.0.1:port to upstream_port. The first `lose` requests that begin with
    `losing` go on to the service, and once its answer begins the connection is closed on
    both sides without passing the answer back (the service has then done the work)."""

    upstream_port: int
    losing: bytes = b"POST /api/upload/"
    lose: int = 1
    port: int = field(default_factory=free_port)
    lost: int = 0

    def __post_init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed by stop()
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        # Set by the client's side when a request to lose goes by (keep-alive connections
        # carry one request after another: the answer that follows is that request's).
        losing = threading.Event()
        threading.Thread(
            target=self._requests, args=(client, upstream, losing), daemon=True
        ).start()
        try:
            while chunk := upstream.recv(65536):
                if losing.is_set():
                    return
                client.sendall(chunk)
        except OSError:  # the other side closed
            pass
        finally:
            for side in (client, upstream):
                # shutdown() first: close() alone waits for the other thread's recv(), and
                # the client would see its own read timeout instead of a lost answer.
                with contextlib.suppress(OSError):
                    side.shutdown(socket.SHUT_RDWR)
                side.close()

    def _requests(
        self, client: socket.socket, upstream: socket.socket, losing: threading.Event
    ) -> None:
        try:
            while chunk := client.recv(65536):
                if chunk.startswith(self.losing):
                    with self._lock:
                        if self.lost < self.lose:
                            self.lost += 1
                            losing.set()
                upstream.sendall(chunk)
            upstream.shutdown(socket.SHUT_WR)
        except OSError:
            pass
