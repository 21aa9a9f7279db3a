"""The one error type of the net package: a stable reason code and a human message."""

from enum import StrEnum
from typing import Final

# An HTTP error status becomes the reason "http_<status>" (http_404, http_503...).
HTTP_STATUS_PREFIX: Final = "http_"


class NetReason(StrEnum):
    """Why a call to a URL failed, besides an HTTP error status (HTTP_STATUS_PREFIX)."""

    TIMEOUT = "timeout"
    CONNECTION_ERROR = "connection_error"
    DNS_ERROR = "dns_error"
    TLS_ERROR = "tls_error"
    BLOCKED_ADDRESS = "blocked_address"
    BLOCKED_PORT = "blocked_port"
    INVALID_URL = "invalid_url"
    TOO_MANY_REDIRECTS = "too_many_redirects"
    BAD_REDIRECT = "bad_redirect"
    TOO_LARGE = "too_large"


class NetError(Exception):
    """A URL could not be fetched or posted to.

    `reason` is a NetReason or "http_<status>"; `transient` says whether the same call may
    succeed later (a timeout, a 503) or never will (a 404, a blocked address).
    """

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        transient: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.transient = transient
        self.retry_after = retry_after  # seconds the server asked us to wait, if it did

    def __repr__(self) -> str:
        return f"NetError({self.reason!r}, {self.message!r})"


class DownloadStopped(Exception):
    """The caller said the download was no longer wanted (its `stopped` answered true):
    not a failure of the URL, so not a NetError."""
