"""GET and POST to URLs that strangers supply, under a policy.

Each hop is resolved once, every address it resolves to is checked (net.addresses), and
the connection goes to the checked address: no second lookup for a DNS rebinding to slip
into. Bodies are read in chunks under a size cap and a total deadline.

Connections stay open for the next call to the same checked address, and a name's
checked address is used for a few seconds (net.connections): a connection only ever goes
to an address that passed the check.
"""

import email.utils
import functools
import http.client
import logging
import re
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.client import RemoteDisconnected
from typing import Final
from urllib.parse import quote, urljoin, urlsplit

import idna
import urllib3
from urllib3.exceptions import HTTPError, NewConnectionError, ProtocolError, SSLError
from urllib3.exceptions import TimeoutError as Urllib3Timeout

from net.addresses import (
    BLOCKED_MESSAGE,
    IPNetwork,
    Resolver,
    blocked_address,
    literal_address,
    system_resolver,
)
from net.connections import address_checked, answers_by, connection_pool
from net.decoding import body_decoder
from net.errors import HTTP_STATUS_PREFIX, DownloadStopped, NetError, NetReason

logger = logging.getLogger(__name__)

MiB: Final = 1024 * 1024
REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
CHUNK_BYTES: Final = 64 * 1024
# Characters left as they are when a path or query is percent-encoded for the wire.
URL_SAFE: Final = "/%:@!$&'()*+,;=-._~?"


@dataclass(frozen=True)
class NetPolicy:
    """Limits for one call; the defaults are the image fetcher's defaults."""

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


@dataclass(frozen=True)
class Fetched:
    """What a GET brought back: the body, or None when the server said it has not changed
    since the validators sent (304), and the validators to send next time."""

    body: bytes | None
    etag: str = ""
    last_modified: str = ""

    @property
    def not_modified(self) -> bool:
        return self.body is None


def fetch(
    url: str,
    policy: NetPolicy,
    *,
    headers: Mapping[str, str] | None = None,
    resolver: Resolver = system_resolver,
) -> bytes:
    """GET url following up to policy.max_redirects redirects; the body as bytes."""
    body = fetch_if_changed(url, policy, headers=headers, resolver=resolver).body
    assert body is not None  # nothing conditional was asked
    return body


def fetch_if_changed(
    url: str,
    policy: NetPolicy,
    *,
    etag: str = "",
    headers: Mapping[str, str] | None = None,
    resolver: Resolver = system_resolver,
    stopped: Callable[[], bool] | None = None,
) -> Fetched:
    """GET url as fetch does, sending the entity tag of a copy already held (If-None-Match):
    a 304 answer comes back as Fetched(body=None). stopped, asked before each hop and each
    chunk of the body, ends the download (DownloadStopped) once it answers true: a body no
    longer wanted is not read to its end.

    Never If-Modified-Since: a date cannot tell a file put back with an older one (a
    backup restored, `rsync -a`, `cp -p`), which an origin comparing dates answers 304, so
    a source with a Last-Modified and no ETag is read again and compared by its bytes."""
    conditional = {"If-None-Match": etag} if etag else {}
    headers = {**(headers or {}), **conditional}
    deadline = time.monotonic() + policy.total_timeout
    for hop in range(policy.max_redirects + 1):
        _stop_check(stopped)
        try:
            answer = _hop(url, policy, resolver, deadline, headers, bool(conditional), stopped)
        except NetError as error:
            if hop:
                raise _after_redirect(error, url) from None
            raise
        if isinstance(answer, Fetched):
            return answer
        url = answer
    raise NetError(NetReason.TOO_MANY_REDIRECTS, f"More than {policy.max_redirects} redirects.")


def _hop(
    url: str,
    policy: NetPolicy,
    resolver: Resolver,
    deadline: float,
    headers: Mapping[str, str],
    conditional: bool,
    stopped: Callable[[], bool] | None,
) -> "Fetched | str":
    """One GET of a download: what it fetched, or the URL it is redirected to."""
    response = _send("GET", url, policy, resolver, deadline, headers=headers)
    complete = False  # whether the response was read to its end
    try:
        if response.status in REDIRECT_STATUSES:
            location = response.headers.get("Location")
            if not location:
                raise NetError(
                    NetReason.BAD_REDIRECT, f"HTTP {response.status} without a Location header."
                )
            return urljoin(url, location)
        validators = {
            "etag": response.headers.get("ETag", "")[:512],
            "last_modified": response.headers.get("Last-Modified", "")[:64],
        }
        if response.status == 304 and conditional:
            complete = True  # a 304 has no body
            return Fetched(body=None, **validators)
        _raise_for_status(response)
        body = _read_body(response, policy, deadline, stopped)
        complete = True
        return Fetched(body=body, **validators)
    finally:
        _response_done(response, complete=complete)


def _after_redirect(error: NetError, url: str) -> NetError:
    """error, saying the redirect it came after: "Port 8081 is not allowed" of a CSV whose
    URL has no port sent the shop looking for what it had not written."""
    shown = url if len(url) <= 120 else url[:117] + "..."
    return NetError(
        error.reason,
        f"After a redirect to {shown}: {error.message}",
        transient=error.transient,
        retry_after=error.retry_after,
    )


# Of a redirect's Location, what a post keeps: its receiver's URL, however long a header
# the receiver sent (http.client takes lines of up to 64 KiB).
LOCATION_MAX_CHARS: Final = 200


@dataclass(frozen=True)
class Posted:
    """What a POST was answered: the status code, and a 3xx's Location (cut to
    LOCATION_MAX_CHARS, with "…"), else ""."""

    status: int
    location: str = ""


def post(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    policy: NetPolicy,
    *,
    resolver: Resolver = system_resolver,
) -> Posted:
    """POST body to url under the same protections as fetch; the response's status code,
    and where a 3xx pointed.

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
        _response_done(response, complete=False)
    location = ""
    if 300 <= response.status < 400:
        location = (response.headers.get("Location") or "").strip()
        if len(location) > LOCATION_MAX_CHARS:
            location = location[:LOCATION_MAX_CHARS] + "…"
    return Posted(response.status, location)


def check_url(url: str, policy: NetPolicy) -> None:
    """Raise the NetError a call to url would fail with before any lookup: not http(s), a
    user name or password in it, a port outside the policy, an address (spelled as one)
    outside it. A name is only checked when it is resolved, at the call."""
    target = _parse_target(url, policy)
    address = literal_address(target.host)
    if address is not None and blocked_address(address, policy.allowed_networks):
        raise NetError(NetReason.BLOCKED_ADDRESS, BLOCKED_MESSAGE)


def ascii_host(host: str) -> str:
    """host as DNS spells it: a Unicode name by UTS 46 and IDNA 2008 (straße.example is
    xn--strae-oqa.example; Python's IDNA 2003 codec made it strasse.example, another
    registrant's); an ASCII name as written. UnicodeError for a name that is not one."""
    if not host.isascii():
        mapped = _unicode_host_mapped(host)
        if mapped is None:
            raise UnicodeError("not a name UTS 46 and IDNA 2008 can spell")
        host = mapped
    labels = host.split(".")
    if len(labels) > 1 and not labels[-1]:
        labels.pop()  # the root's dot: "example.com."
    if not all(0 < len(label) < 64 for label in labels):
        raise UnicodeError("a label of the name is empty or longer than 63 characters")
    return host


@functools.lru_cache(maxsize=1024)
def _unicode_host_mapped(host: str) -> str | None:
    """A Unicode name's ASCII spelling (ascii_host), or None where it has none. Kept for
    the names seen last: the idna package is Python, 0.2 ms a name, and a CSV of 500,000
    URLs on one Unicode host checked each (4.5 times the rest of the upload's reading)."""
    try:
        mapped = idna.uts46_remap(host, std3_rules=False, transitional=False)
        return ".".join(
            label if label.isascii() else idna.alabel(label).decode("ascii")
            for label in mapped.split(".")
        )
    except UnicodeError:  # idna's IDNAError among them
        return None


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


def _send(
    method: str,
    url: str,
    policy: NetPolicy,
    resolver: Resolver,
    deadline: float,
    *,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> urllib3.BaseHTTPResponse:
    target = _parse_target(url, policy)
    address = address_checked(target.host, target.port, policy.allowed_networks, resolver)
    pool = connection_pool(target.scheme, address, target.port, host=target.host)
    request_headers = {
        "Host": target.host_header,
        "User-Agent": policy.user_agent,
        # The byte cap counts what arrives: no compressed body that grows when decoded.
        "Accept-Encoding": "identity",
        **(headers or {}),
    }
    # A GET whose kept connection the server had closed meanwhile (its idle timeout, just as
    # the request went out) is sent once more, on a new connection to the same address.
    tries, tried = (2 if method == "GET" else 1), 0
    while True:
        tried += 1
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise NetError(
                NetReason.TIMEOUT,
                f"No answer within the {policy.total_timeout:g} s allowed.",
                transient=True,
            )
        timeout = urllib3.Timeout(
            connect=min(policy.connect_timeout, remaining),
            read=min(policy.read_timeout, remaining),
        )
        try:
            with answers_by(deadline):
                return pool.urlopen(
                    method,
                    target.request_path,
                    body=body,
                    headers=request_headers,
                    timeout=timeout,
                    redirect=False,
                    retries=False,
                    preload_content=False,
                    decode_content=False,
                    assert_same_host=False,
                    release_conn=False,
                )
        except ProtocolError as error:
            if tried < tries and _closed_by_server(error):
                continue
            raise _network_error(error) from None
        except Exception as error:
            raise _network_error(error) from None


def _closed_by_server(error: ProtocolError) -> bool:
    """Whether the server hung up before answering (what a kept connection it had closed
    looks like), rather than sending something wrong."""
    cause = error.args[1] if len(error.args) > 1 else None
    return isinstance(cause, RemoteDisconnected | ConnectionResetError | BrokenPipeError)


def _response_done(response: urllib3.BaseHTTPResponse, *, complete: bool) -> None:
    """Give the connection back for the next call if the response was read to its end;
    otherwise close it, so that no unread rest of a body is taken for the next answer."""
    if not complete:
        response.close()
    response.release_conn()


def _parse_target(url: str, policy: NetPolicy) -> _Target:
    try:
        parts = urlsplit(url)
        port = parts.port
        host = parts.hostname
    except ValueError as error:
        raise NetError(NetReason.INVALID_URL, f"Not a valid URL: {error}.") from None
    scheme = parts.scheme.lower()
    if scheme not in {"http", "https"}:
        raise NetError(NetReason.INVALID_URL, "Only http and https URLs can be fetched.")
    if not host:
        raise NetError(NetReason.INVALID_URL, "The URL has no host.")
    if parts.username is not None or parts.password is not None:
        raise NetError(NetReason.INVALID_URL, "URLs with a user name or password are refused.")
    try:
        host = ascii_host(host)
    except UnicodeError:
        raise NetError(NetReason.INVALID_URL, f"Host {host!r} is not a valid name.") from None
    if host.endswith(".") and literal_address(host[:-1]) is not None:
        # An address with a fully qualified name's dot (10.0.0.7.): the address itself,
        # as browsers read it, checked and connected to as one, not a name that fails to
        # resolve every time.
        host = host[:-1]
    default_port = 443 if scheme == "https" else 80
    port = default_port if port is None else port  # not `or`: port 0 is not port 80
    if port not in policy.allowed_ports:
        raise NetError(
            NetReason.BLOCKED_PORT,
            f"Port {port} is not allowed (allowed: 80, 443 and those configured).",
        )
    path = quote(parts.path or "/", safe=URL_SAFE)
    if parts.query:
        path += "?" + quote(parts.query, safe=URL_SAFE)
    host_in_header = f"[{host}]" if ":" in host else host
    host_header = host_in_header if port == default_port else f"{host_in_header}:{port}"
    return _Target(scheme, host, port, path, host_header)


def _raise_for_status(response: urllib3.BaseHTTPResponse) -> None:
    status = response.status
    # 203: the image as a proxy between changed its headers; browsers show it, as a 200.
    if status in {200, 203}:
        return
    if status > 599:  # http.client takes 100-999; a 999 is not a 5xx to wait out
        raise NetError(
            NetReason.CONNECTION_ERROR,
            f"The server answered with status {status}, which is not a valid HTTP status.",
        )
    transient = status == 429 or status >= 500
    raise NetError(
        f"{HTTP_STATUS_PREFIX}{status}",
        f"The server answered HTTP {status}.",
        transient=transient,
        retry_after=retry_after_seconds(response.headers.get("Retry-After")) if transient else None,
    )


def _read_body(
    response: urllib3.BaseHTTPResponse,
    policy: NetPolicy,
    deadline: float,
    stopped: Callable[[], bool] | None = None,
) -> bytes:
    length = response.headers.get("Content-Length", "")
    # "²" is a digit to isdigit(), and not to int()
    declared = int(length) if length.isascii() and length.isdigit() else None
    if declared is not None and declared > policy.max_bytes:
        raise _too_large(policy)
    # The cap holds twice: on the bytes that arrive, and on what they decompress to.
    decoded = body_decoder(response.headers.get("Content-Encoding", ""), policy.max_bytes)
    chunks: list[bytes] = []
    received = 0
    while True:
        if response.length_remaining == 0:
            decoded.end()
            return b"".join(chunks)
        if deadline <= time.monotonic():
            raise _too_slow(policy)
        _stop_check(stopped)
        try:
            # Each read waits no longer than the deadline allows (net.connections).
            chunk = response.read1(CHUNK_BYTES)
        except Exception as error:
            if deadline <= time.monotonic():
                raise _too_slow(policy) from None  # not "did not answer": it was sending
            raise _body_broken(error, received, declared, policy) from None
        if not chunk:
            decoded.end()
            return b"".join(chunks)
        received += len(chunk)
        if received > policy.max_bytes:
            raise _too_large(policy)
        chunks.append(decoded(chunk))


def _stop_check(stopped: Callable[[], bool] | None) -> None:
    if stopped is not None and stopped():
        raise DownloadStopped


def _too_slow(policy: NetPolicy) -> NetError:
    """A body still coming at the deadline: a server that sends slowly, not one that is
    down, told apart in its words (its reason is timeout all the same)."""
    return NetError(
        NetReason.TIMEOUT,
        f"The download took longer than the {policy.total_timeout:g} s allowed.",
        transient=True,
    )


def _body_broken(
    error: Exception, received: int, declared: int | None, policy: NetPolicy
) -> NetError:
    """A body that stopped coming before its end, in words that say how far it came: the
    server had answered, so neither "did not answer" nor urllib3's own words."""
    so_far = f"{received:,} of {declared:,}" if declared is not None else f"{received:,}"
    if isinstance(error, Urllib3Timeout | socket.timeout | TimeoutError):
        broken = NetError(
            NetReason.TIMEOUT,
            f"The download stalled after {so_far} bytes: nothing more came for "
            f"{policy.read_timeout:g} s.",
            transient=True,
        )
    elif isinstance(error, ProtocolError) and isinstance(_cause(error), http.client.IncompleteRead):
        broken = NetError(
            NetReason.CONNECTION_ERROR,
            f"The server closed the connection after {so_far} bytes.",
            transient=True,
        )
    else:
        return _network_error(error)
    logger.info("body broken off: %s", error)  # where, for the operator
    return broken


def _too_large(policy: NetPolicy) -> NetError:
    return NetError(NetReason.TOO_LARGE, f"The file is larger than {policy.max_bytes} bytes.")


# urllib3's errors name the pool they came from, whose host is the checked address a name
# resolved to: told to the customer, a URL maps internal names (README: what a name
# resolved to goes to the log only). The message keeps what failed, never where.
_POOL_NAMED = re.compile(r"HTTPS?Connection(?:Pool)?\(host=[^)]*\):?\s*")
_ADDRESS = re.compile(r"\[?(?:[0-9a-fA-F]{0,4}:){2,}[0-9a-fA-F.:]*\]?|\b\d{1,3}(?:\.\d{1,3}){3}\b")


def _without_address(error: Exception) -> str:
    """error's words without the address it was connecting to."""
    return _ADDRESS.sub("the address", _POOL_NAMED.sub("", str(error))).strip()


def _cause(error: ProtocolError) -> object:
    """What urllib3 wrapped in error: the http.client or socket error beneath it."""
    return error.args[1] if len(error.args) > 1 else None


def _not_http(error: ProtocolError) -> NetError | None:
    """The answer to a server whose answer could not be read as HTTP; None for a connection
    that broke. Its words never quote the answer: bytes of a JPEG sent without a status
    line (HTTP/0.9) are no message for a customer."""
    cause = _cause(error)
    if not isinstance(cause, http.client.HTTPException) or isinstance(
        cause, RemoteDisconnected | http.client.IncompleteRead
    ):
        return None
    if isinstance(cause, http.client.BadStatusLine) and str(cause).startswith("HTTP/"):
        message = "The server's answer has an invalid status line."
    elif isinstance(cause, http.client.BadStatusLine) or "status line" in str(cause):
        message = "The server's answer is not HTTP."  # or a first line over 64 KB
    else:
        message = "The server's answer is not valid HTTP."  # its headers: too long, too many
    return NetError(NetReason.CONNECTION_ERROR, message)


def _network_error(error: Exception) -> NetError:
    if isinstance(error, NetError):
        return error
    if isinstance(error, ProtocolError) and (not_http := _not_http(error)) is not None:
        logger.info("answer not HTTP: %.200r", _cause(error))  # up to 64 KB of it, else
        return not_http
    logger.info("connection failed: %s", error)  # where, for the operator
    if isinstance(error, NewConnectionError):
        # Before the timeouts: urllib3 makes it a ConnectTimeoutError too, and a refused
        # connection was told as a server slow to answer.
        return NetError(
            NetReason.CONNECTION_ERROR,
            f"The connection failed: {_without_address(error)}.",
            transient=True,
        )
    if isinstance(error, Urllib3Timeout | socket.timeout | TimeoutError):
        return NetError(NetReason.TIMEOUT, "The server did not answer in time.", transient=True)
    if isinstance(error, SSLError):
        # A certificate refused stays refused until its owner mends it; a handshake cut
        # short (a reset, a server out of connections) may go through the next time.
        refused = "CERTIFICATE_VERIFY_FAILED" in str(error)
        return NetError(
            NetReason.TLS_ERROR, f"TLS failed: {_without_address(error)}.", transient=not refused
        )
    if isinstance(error, ProtocolError | HTTPError | OSError):
        return NetError(
            NetReason.CONNECTION_ERROR,
            f"The connection failed: {_without_address(error)}.",
            transient=True,
        )
    raise error
