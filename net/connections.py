"""What the client keeps from one call to the next, in each process: connections open to
checked addresses, and each name's checked address for a few seconds.

A catalogue's images mostly come from a few hosts, and a new connection and a lookup per
image cost a worker as much CPU as reading the body (BENCHMARKS.md, "Product-sized
photos"). Pools are keyed by the checked address (and, for https, the name too, which SNI
and the certificate check use), so that whatever connection a pool opens goes to an
address that passed; a refused name is looked up again at every call.

Every read of an answer, from its status line to its body's last byte, waits no longer
than what is left of its call's deadline (answers_by): a per-read timeout alone let a
server that drips its headers, or sends `100 Continue` without end, hold a worker for as
long as it liked.
"""

import http.client
import io
import math
import os
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Final

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection

from net.addresses import IPNetwork, Resolver, checked_address

# How long a name's checked address is used without a new lookup.
ADDRESS_CACHE_SECONDS: Final = 5.0
ADDRESS_CACHE_ENTRIES: Final = 1024
# Hosts with connections kept, and connections kept per host, in each process.
KEPT_HOSTS: Final = 32
KEPT_CONNECTIONS_PER_HOST: Final = 8

_kept: tuple[int, urllib3.PoolManager] | None = None
_kept_lock = threading.Lock()
# (host, port, allowed networks, resolver) -> (checked address, when it was checked)
_addresses: dict[tuple[object, ...], tuple[str, float]] = {}
_addresses_lock = threading.Lock()
# The deadline (time.monotonic) of the call this thread is making; see answers_by.
_call_deadline: ContextVar[float] = ContextVar("call_deadline", default=math.inf)


def connection_pool(
    scheme: str, address: str, port: int, *, host: str
) -> urllib3.HTTPConnectionPool:
    """This process's pool of connections to the checked address for host."""
    return _manager().connection_from_host(
        address,
        port,
        scheme=scheme,
        pool_kwargs=(
            {"server_hostname": host, "assert_hostname": host} if scheme == "https" else None
        ),
    )


@contextmanager
def answers_by(deadline: float) -> Iterator[None]:
    """Bound every read of the answers to requests sent within, to the end of each answer's
    body, by deadline (time.monotonic)."""
    token = _call_deadline.set(deadline)
    try:
        yield
    finally:
        _call_deadline.reset(token)


def address_checked(
    host: str, port: int, allowed_networks: Iterable[IPNetwork], resolver: Resolver
) -> str:
    """net.addresses.checked_address for host, from the last few seconds' answer if any."""
    networks = tuple(allowed_networks)
    key = (host, port, networks, resolver)
    now = time.monotonic()
    with _addresses_lock:
        address, checked_at = _addresses.get(key, ("", -ADDRESS_CACHE_SECONDS))
    if address and now - checked_at < ADDRESS_CACHE_SECONDS:
        return address
    address = checked_address(host, port, networks, resolver)
    with _addresses_lock:
        if len(_addresses) >= ADDRESS_CACHE_ENTRIES:  # old entries, from many hosts
            _addresses.clear()
        _addresses[key] = (address, now)
    return address


def _manager() -> urllib3.PoolManager:
    """This process's pools; a forked child makes its own (a socket shared with the parent
    would interleave their requests)."""
    global _kept
    with _kept_lock:
        if _kept is None or _kept[0] != os.getpid():
            manager = urllib3.PoolManager(
                num_pools=KEPT_HOSTS,
                maxsize=KEPT_CONNECTIONS_PER_HOST,
                block=False,
                retries=False,
                cert_reqs="CERT_REQUIRED",
            )
            manager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
            _kept = (os.getpid(), manager)
        return _kept[1]


class _SocketReadsByDeadline(io.RawIOBase):
    """A socket's reads, each waiting at most the socket's read timeout and never past
    deadline."""

    def __init__(self, raw: io.RawIOBase, sock: socket.socket, deadline: float) -> None:
        super().__init__()
        self._raw, self._sock, self._deadline = raw, sock, deadline
        self._read_timeout = sock.gettimeout() or math.inf

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the answer took longer than the call's deadline")
        self._sock.settimeout(min(self._read_timeout, remaining))
        return self._raw.readinto(buffer)

    def close(self) -> None:
        self._raw.close()  # the socket's own file: closing it lets the socket close
        super().close()


class _AnswerByDeadline(http.client.HTTPResponse):
    """An answer read under its call's deadline, that skips informational answers (102
    Processing, 103 Early Hints) as http.client skips 100 Continue."""

    def __init__(self, sock: socket.socket, *args: Any, **kwargs: Any) -> None:
        super().__init__(sock, *args, **kwargs)
        deadline = _call_deadline.get()
        if deadline != math.inf:
            raw = self.fp.detach()  # the socket's file, counted by the socket as open
            self.fp = io.BufferedReader(_SocketReadsByDeadline(raw, sock, deadline))

    def _read_status(self) -> tuple[str, int, str]:
        version, status, reason = super()._read_status()  # type: ignore[misc]
        if 100 < status < 200 and status != http.client.SWITCHING_PROTOCOLS:
            return version, http.client.CONTINUE, reason
        return version, status, reason


class _HTTPConnection(HTTPConnection):
    response_class = _AnswerByDeadline


class _HTTPSConnection(HTTPSConnection):
    response_class = _AnswerByDeadline


class _HTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection
