"""A TCP proxy that loses answers: what a client meets when the network fails after its
request has reached the service (a timeout, a connection reset on the way back)."""

import contextlib
import socket
import threading
from dataclasses import dataclass, field

from tests.support import free_port


@dataclass
class AnswerLosingProxy:
    """Forwards 127.0.0.1:port to upstream_port. On each of its first `lose` connections it
    sends the client's bytes on, waits for the service's answer to begin (the service has
    then done the work), and closes both sides without passing the answer back."""

    upstream_port: int
    lose: int = 1
    port: int = field(default_factory=free_port)
    lost: int = 0

    def __post_init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._lock = threading.Lock()

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
        threading.Thread(target=_pump, args=(client, upstream), daemon=True).start()
        with self._lock:
            losing = self.lost < self.lose
            self.lost += losing
        try:
            if losing:
                upstream.recv(1)  # the answer has begun
            else:
                _pump(upstream, client)
        finally:
            for side in (client, upstream):
                # shutdown() first: close() alone waits for the pumping thread's recv(),
                # and the client would see its own read timeout instead of a lost answer.
                with contextlib.suppress(OSError):
                    side.shutdown(socket.SHUT_RDWR)
                side.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            sink.sendall(chunk)
        sink.shutdown(socket.SHUT_WR)
    except OSError:  # the other side closed
        pass
