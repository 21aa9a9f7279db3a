"""What the client keeps from one call to the next, in each process: connections open to
checked addresses, and each name's checked address for a few seconds.

A catalogue's images mostly come from a few hosts, and a new connection and a lookup per
image cost a worker as much CPU as reading the body (BENCHMARKS.md, "Product-sized
photos"). Pools are keyed by the checked address (and, for https, the name too, which SNI
and the certificate check use), so that whatever connection a pool opens goes to an
address that passed; a refused name is looked up again at every call.
"""

import os
import threading
import time
from collections.abc import Iterable
from typing import Final

import urllib3

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
            _kept = (os.getpid(), manager)
        return _kept[1]
