"""Who sent a request, where proxies stand between the client and the service."""

import functools
import ipaddress

from django.conf import settings
from django.http import HttpRequest

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_address(request: HttpRequest) -> str:
    """The address of the client that sent request: REMOTE_ADDR, or, where that is a proxy
    of FORWARDED_ALLOW_IPS, the address that proxy names last in X-Forwarded-For (a proxy
    appends the address it saw; what came before is the client's own word), and so on
    through each trusted proxy."""
    address = str(request.META.get("REMOTE_ADDR", ""))
    forwarded = [
        _without_port(hop.strip())
        for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
        if hop.strip()
    ]
    if "*" in settings.FORWARDED_ALLOW_IPS:  # every peer a proxy: only its own word counts
        return forwarded[-1] if forwarded else address
    proxies = _networks(tuple(settings.FORWARDED_ALLOW_IPS))
    while forwarded and _within(address, proxies):
        address = forwarded.pop()
    return address


def _without_port(hop: str) -> str:
    """An address as some load balancers write it, with the client's port (203.0.113.9:51234,
    [2001:db8::1]:443), without it: kept, each new port counted as a new client."""
    if hop.startswith("["):
        return hop[1:].split("]", 1)[0]
    if hop.count(":") == 1:
        return hop.split(":", 1)[0]
    return hop


@functools.lru_cache(maxsize=4)
def _networks(listed: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(item.strip(), strict=False) for item in listed)


def _within(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)
