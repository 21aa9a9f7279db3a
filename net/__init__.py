"""Outbound HTTP for the whole service: every call to a URL a stranger supplied.

Address policy (net.addresses), a connection pinned to the checked address, redirects
checked hop by hop, a byte cap and a deadline (net.client). Knows nothing of images,
requests or Django; callers bring their own headers and map NetError to their own terms.
"""

from net.addresses import (
    IPNetwork,
    Resolver,
    blocked_address,
    literal_address,
    parse_networks,
    system_resolver,
)
from net.client import (
    Fetched,
    NetPolicy,
    Posted,
    ascii_host,
    check_url,
    fetch,
    fetch_if_changed,
    post,
    retry_after_seconds,
)
from net.errors import HTTP_STATUS_PREFIX, DownloadStopped, NetError, NetReason

__all__ = [
    "HTTP_STATUS_PREFIX",
    "DownloadStopped",
    "Fetched",
    "IPNetwork",
    "NetError",
    "NetPolicy",
    "NetReason",
    "Posted",
    "Resolver",
    "ascii_host",
    "blocked_address",
    "check_url",
    "fetch",
    "fetch_if_changed",
    "literal_address",
    "parse_networks",
    "post",
    "retry_after_seconds",
    "system_resolver",
]
