"""The one HTTP seam: every request the service makes to a URL a stranger supplied.

Each hop is resolved once, every address it resolves to is checked against the block
list, and the connection goes to the checked address (no second lookup for a DNS
rebinding to slip into). Bodies are read in chunks under a size cap and a total deadline.
"""

import email.utils
import ipaddress
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final
from urllib.parse import quote, urljoin, urlsplit

import urllib3
from urllib3.exceptions import HTTPError, ProtocolError, SSLError
from urllib3.exceptions import TimeoutError as Urllib3Timeout

from imaging.errors import ImagingError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]

MiB: Final = 1024 * 1024
REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
CHUNK_BYTES: Final = 64 * 1024
# Characters left as they are when a path or query is percent-encoded for the wire.
URL_SAFE: Final = "/%:@!$&'()*+,;=-._~?"


# IANA's special-purpose ranges that are not globally reachable, written out because
# Python's is_global has changed between patch releases. Ranges that embed an IPv4
# address (NAT64, 6to4, Teredo) are blocked whole.
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


@dataclass(frozen=True)
class FetchPolicy:
    """Limits for one fetch; the defaults are the service's defaults."""

    max_bytes: int = 25 * MiB
    connect_timeout: float = 5.0
    read_timeout: float = 15.0
    total_timeout: float = 60.0
    max_redirects: int = 5
    allowed_networks: tuple[IPNetwork, ...] = ()
    allowed_ports: frozenset[int] = field(default_factory=lambda: frozenset({80, 443}))
    user_agent: str = "imgsvc/0.1 (+image compression service)"


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str  # ASCII (IDNA) host name or IP literal, without brackets
    port: int
    request_path: str
    host_header: str


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


def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for host, in its order."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise ImagingError("dns_error", f"Could not resolve {host}: {error}.") from None
    addresses: list[str] = []
    for info in infos:
        address = str(info[4][0]).split("%", 1)[0]
        if address not in addresses:
            addresses.append(address)
    return addresses


def fetch(url: str, policy: FetchPolicy, *, resolver: Resolver = system_resolver) -> bytes:
    """GET url following up to policy.max_redirects redirects; the body as bytes."""
    deadline = time.monotonic() + policy.total_timeout
    for _hop in range(policy.max_redirects + 1):
        response = _send("GET", url, policy, resolver, deadline)
        try:
            if response.status in REDIRECT_STATUSES:
                location = response.headers.get("Location")
                if not location:
                    raise ImagingError(
                        "bad_redirect", f"HTTP {response.status} without a Location header."
                    )
                url = urljoin(url, location)
                continue
            _raise_for_status(response)
            return _read_body(response, policy, deadline)
        finally:
            response.release_conn()
            response.close()
    raise ImagingError("too_many_redirects", f"More than {policy.max_redirects} redirects.")


def post(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    policy: FetchPolicy,
    *,
    resolver: Resolver = system_resolver,
) -> int:
    """POST body to url under the same protections as fetch; the response's status code.

    Redirects are not followed: the caller decides what a 3xx means.
    """
    deadline = time.monotonic() + policy.total_timeout
    response = _send("POST", url, policy, resolver, deadline, body=body, headers=headers)
    try:
        # Read a little of the answer so the connection ends cleanly; ignore what it says.
        response.read1(CHUNK_BYTES)
    except (HTTPError, OSError):
        pass
    finally:
        response.release_conn()
        response.close()
    return response.status


def _send(
    method: str,
    url: str,
    policy: FetchPolicy,
    resolver: Resolver,
    deadline: float,
    *,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> urllib3.BaseHTTPResponse:
    target = _parse_target(url, policy)
    address = _checked_address(target, policy, resolver)
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise ImagingError("timeout", "Took longer than the time allowed.", transient=True)
    timeout = urllib3.Timeout(
        connect=min(policy.connect_timeout, remaining),
        read=min(policy.read_timeout, remaining),
    )
    pool: urllib3.HTTPConnectionPool
    if target.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(
            address,
            target.port,
            timeout=timeout,
            retries=False,
            maxsize=1,
            cert_reqs="CERT_REQUIRED",
            server_hostname=target.host,
            assert_hostname=target.host,
        )
    else:
        pool = urllib3.HTTPConnectionPool(
            address, target.port, timeout=timeout, retries=False, maxsize=1
        )
    request_headers = {
        "Host": target.host_header,
        "User-Agent": policy.user_agent,
        "Accept": "image/*, */*;q=0.5",
        "Accept-Encoding": "identity",
        **(headers or {}),
    }
    try:
        return pool.urlopen(
            method,
            target.request_path,
            body=body,
            headers=request_headers,
            redirect=False,
            retries=False,
            preload_content=False,
            decode_content=False,
            assert_same_host=False,
        )
    except Exception as error:
        pool.close()
        raise _network_error(error) from None


def _parse_target(url: str, policy: FetchPolicy) -> _Target:
    try:
        parts = urlsplit(url)
        port = parts.port
        host = parts.hostname
    except ValueError as error:
        raise ImagingError("invalid_url", f"Not a valid URL: {error}.") from None
    scheme = parts.scheme.lower()
    if scheme not in {"http", "https"}:
        raise ImagingError("invalid_url", "Only http and https URLs can be fetched.")
    if not host:
        raise ImagingError("invalid_url", "The URL has no host.")
    if parts.username is not None or parts.password is not None:
        raise ImagingError("invalid_url", "URLs with a user name or password are refused.")
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise ImagingError("invalid_url", f"Host {host!r} is not a valid name.") from None
    default_port = 443 if scheme == "https" else 80
    port = port or default_port
    if port not in policy.allowed_ports:
        raise ImagingError(
            "blocked_port", f"Port {port} is not allowed (allowed: 80, 443 and those configured)."
        )
    path = quote(parts.path or "/", safe=URL_SAFE)
    if parts.query:
        path += "?" + quote(parts.query, safe=URL_SAFE)
    host_in_header = f"[{host}]" if ":" in host else host
    host_header = host_in_header if port == default_port else f"{host_in_header}:{port}"
    return _Target(scheme, host, port, path, host_header)


def _checked_address(target: _Target, policy: FetchPolicy, resolver: Resolver) -> str:
    addresses = resolver(target.host, target.port)
    if not addresses:
        raise ImagingError("dns_error", f"{target.host} has no address.")
    for raw in addresses:
        address = ipaddress.ip_address(raw)
        if blocked_address(address, policy.allowed_networks):
            raise ImagingError(
                "blocked_address",
                f"{target.host} resolves to {address}, which is not a public address.",
            )
    return addresses[0]


def _raise_for_status(response: urllib3.BaseHTTPResponse) -> None:
    status = response.status
    if status == 200:
        return
    transient = status == 429 or status >= 500
    raise ImagingError(
        f"http_{status}",
        f"The server answered HTTP {status}.",
        transient=transient,
        retry_after=retry_after_seconds(response.headers.get("Retry-After")) if transient else None,
    )


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header (seconds or an HTTP date) as seconds from now; None if absent."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _read_body(response: urllib3.BaseHTTPResponse, policy: FetchPolicy, deadline: float) -> bytes:
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > policy.max_bytes:
        raise _too_large(policy)
    chunks: list[bytes] = []
    received = 0
    sock = getattr(response.connection, "sock", None)
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ImagingError(
                "timeout", "The download took longer than the time allowed.", transient=True
            )
        if sock is not None:
            # A server that drips bytes must not outlive the total deadline.
            sock.settimeout(min(policy.read_timeout, remaining))
        try:
            chunk = response.read1(CHUNK_BYTES)
        except Exception as error:
            raise _network_error(error) from None
        if not chunk:
            return b"".join(chunks)
        received += len(chunk)
        if received > policy.max_bytes:
            raise _too_large(policy)
        chunks.append(chunk)


def _too_large(policy: FetchPolicy) -> ImagingError:
    return ImagingError("too_large", f"The file is larger than {policy.max_bytes} bytes.")


def _network_error(error: Exception) -> ImagingError:
    if isinstance(error, ImagingError):
        return error
    if isinstance(error, Urllib3Timeout | socket.timeout | TimeoutError):
        return ImagingError("timeout", "The server did not answer in time.", transient=True)
    if isinstance(error, SSLError):
        return ImagingError("tls_error", f"TLS failed: {error}.")
    if isinstance(error, ProtocolError | HTTPError | OSError):
        return ImagingError("connection_error", f"The connection failed: {error}.", transient=True)
    raise error
