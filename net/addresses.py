"""Which addresses the service may connect to: public ones, and those an operator allows.

Python's `is_global` has changed between patch releases, so IANA's special-purpose ranges
that are not globally reachable are written out here. Ranges that embed an IPv4 address
(NAT64, 6to4, Teredo) are blocked whole.
"""

import ipaddress
import logging
import socket
from collections.abc import Callable, Iterable
from typing import Final

from net.errors import NetError, NetReason

logger = logging.getLogger(__name__)
BLOCKED_MESSAGE: Final = "The address is not allowed."

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# (host, port) -> every address the host resolves to, as text, in the resolver's order.
Resolver = Callable[[str, int], list[str]]

BLOCKED_NETWORKS: Final[tuple[IPNetwork, ...]] = tuple(
    ipaddress.ip_network(cidr)
    for cidr in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
        "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16",
        "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
        "::/128", "::1/128", "::ffff:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64",
        "2001::/23", "2001:db8::/32", "2002::/16", "3fff::/20", "5f00::/16", "fc00::/7",
        "fe80::/10", "fec0::/10", "ff00::/8",
    )
)  # fmt: skip


def parse_networks(cidrs: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Parse CIDR strings such as '127.0.0.1/32'; a ValueError names the bad one."""
    networks = []
    for cidr in cidrs:
        try:
            networks.append(ipaddress.ip_network(cidr.strip(), strict=False))
        except ValueError as error:
            raise ValueError(f"{cidr!r} is not a network in CIDR form: {error}") from None
    return tuple(networks)


def blocked_address(address: IPAddress, allowed_networks: Iterable[IPNetwork] = ()) -> bool:
    """True unless the address is publicly routable or inside an explicitly allowed network."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if any(address in network for network in allowed_networks):
        return False
    return (
        any(address in network for network in BLOCKED_NETWORKS)
        or not address.is_global
        or address.is_multicast
        or address.is_reserved
    )


# The resolver's answers in words, without the C library's "[Errno -2]".
_RESOLVER_ANSWERS: Final = {
    socket.EAI_NONAME: "no such host name",
    socket.EAI_AGAIN: "the name servers did not answer in time",
    socket.EAI_FAIL: "the name servers failed",
}


def _why(error: Exception) -> str:
    if isinstance(error, UnicodeError):  # a label longer than 63 characters, say
        return "not a valid host name"
    errno = getattr(error, "errno", None)
    if errno in _RESOLVER_ANSWERS:
        return _RESOLVER_ANSWERS[errno]
    return str(getattr(error, "strerror", None) or error)


def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for host, in its order."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        # "Temporary failure in name resolution": the resolver could not be asked, or had no
        # answer yet; a name that does not exist is another error, and stays one.
        transient = isinstance(error, socket.gaierror) and error.errno == socket.EAI_AGAIN
        raise NetError(
            NetReason.DNS_ERROR, f"Could not resolve {host}: {_why(error)}.", transient=transient
        ) from None
    addresses: list[str] = []
    for info in infos:
        address = str(info[4][0]).split("%", 1)[0]
        if address not in addresses:
            addresses.append(address)
    return addresses


def checked_address(
    host: str, port: int, allowed_networks: Iterable[IPNetwork], resolver: Resolver
) -> str:
    """The address to connect to for host: resolved once, and only if every address the
    name resolves to passes (a name with one private address among public ones is refused)."""
    addresses = resolver(host, port)
    if not addresses:
        raise NetError(NetReason.DNS_ERROR, f"{host} has no address.")
    for raw in addresses:
        address = ipaddress.ip_address(raw)
        if blocked_address(address, allowed_networks):
            # What a name resolves to stays in the log: told to whoever supplied the URL,
            # it would map the internal network name by name.
            logger.warning(
                "%s:%d refused: it resolves to %s, not a public address", host, port, address
            )
            raise NetError(NetReason.BLOCKED_ADDRESS, BLOCKED_MESSAGE)
    return addresses[0]


def literal_address(host: str) -> IPAddress | None:
    """The address host names when it is an address itself, in any spelling the system
    resolver accepts (2130706433, 0x7f.1 and 127.1 are 127.0.0.1); None for a name."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None
