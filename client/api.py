"""The service's HTTP API as the command-line client calls it: the key it sends, the
retries each kind of call is safe for, and every way a call can fail told as an ApiError in
plain words."""

import json
import os
import re
import sys
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlencode, urljoin, urlsplit

import urllib3

GATEWAY_STATUSES = {502, 503, 504}  # a gateway's while the service restarts, or its own 503
TIMEOUT_SECONDS = 60  # for a connection, and between an answer's bytes
LIST_PAGE = 100  # the most the list API gives a page


class ApiError(Exception):
    """An error the command prints and exits 2 with. answer_lost: the call was sent and its
    answer never came, so it may have been carried out. passing: the service could not be
    reached, or a gateway answered for it, which following a request rides out."""

    def __init__(self, message: str, *, answer_lost: bool = False, passing: bool = False) -> None:
        super().__init__(message)
        self.answer_lost = answer_lost
        self.passing = passing


LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
# Where `make run` writes the local account's key (VAR_DIR, by default the checkout's var/).
LOCAL_VAR_DIR = Path(os.environ.get("VAR_DIR") or Path(__file__).resolve().parent.parent / "var")


@dataclass(frozen=True)
class ApiKey:
    value: str  # empty if none: the server then answers 401
    source: str  # where it came from, told with a 401

    def refused(self) -> str:
        """What to check when the server refused it."""
        if not self.value and self.source == "IMGSVC_API_KEY":
            return "no API key was sent: IMGSVC_API_KEY is blank; set it, or give --api-key"
        if not self.value:
            looked = (
                f" (nor is there {self.source}, where `make run` writes one)" if self.source else ""
            )
            return f"no API key was sent: give --api-key, or set IMGSVC_API_KEY{looked}"
        return f"the API key sent came from {self.source}: is it this server's, and not revoked?"


def api_key_for(server: str, given: str | None, environ: dict[str, str], var_dir: Path) -> ApiKey:
    """The key to send: given (--api-key), else IMGSVC_API_KEY, else var/api_key for a
    server on this machine; white space around any of them trimmed, as the service
    trims it (a key pasted between quotes with a space)."""
    if given and given.strip():
        return ApiKey(given.strip(), "--api-key")
    if environ.get("IMGSVC_API_KEY"):
        return ApiKey(environ["IMGSVC_API_KEY"].strip(), "IMGSVC_API_KEY")
    key_file = var_dir / "api_key"
    if urlsplit(server).hostname not in LOCAL_HOSTS:
        return ApiKey("", "")
    if key_file.is_file():
        return ApiKey(key_file.read_text().strip(), str(key_file))
    return ApiKey("", str(key_file))  # the file looked for, named with a 401


class Retries(urllib3.Retry):
    """urllib3's retries, saying so when they wait out an answer's Retry-After: a GET
    answered 503 or 429 waited up to a minute without a word."""

    def sleep_for_retry(self, response: urllib3.BaseHTTPResponse) -> bool:
        seconds = self.get_retry_after(response)
        if seconds:
            print(
                f"HTTP {response.status}: waiting {seconds:.0f} s, as the service asks, "
                "before asking again",
                file=sys.stderr,
            )
        return super().sleep_for_retry(response)


# What a call that reads is sent again after: a connection refused or lost, or an answer
# with a Retry-After (a 503 while the database restarts), waited out up to this.
READING_RETRIES = Retries(
    total=3,
    backoff_factor=0.5,
    other=0,  # not a TLS error: an https:// address for a plain-http server took 43 s
    raise_on_status=False,  # the last answer's own error is printed, not urllib3's
    retry_after_max=30,
)
# What an upload or a re-run, sent with its Idempotency-Key, is sent again after: a
# connection lost before the answer, or a gateway's 502-504. The key makes the service
# answer a second sending with the request the first made, not another.
CREATING_RETRIES = Retries(
    total=3,
    backoff_factor=0.5,
    other=0,
    allowed_methods=None,
    status_forcelist=GATEWAY_STATUSES,
    raise_on_status=False,
    # Not a 413 or 429 with Retry-After, which urllib3 would otherwise wait out and send
    # again (up to hours for a rate per day): those are printed at once.
    respect_retry_after_header=False,
)


def pool_for(server: str) -> urllib3.PoolManager:
    """Connections to the server: through the proxy HTTP_PROXY or HTTPS_PROXY names, as
    curl's and pip's go, unless NO_PROXY names the server or it is this machine."""
    parts = urlsplit(server)
    host = parts.hostname or ""
    proxy = urllib.request.getproxies().get(parts.scheme)
    if not proxy or host in LOCAL_HOSTS or urllib.request.proxy_bypass(host):
        return urllib3.PoolManager(retries=READING_RETRIES)
    proxy = proxy if "://" in proxy else f"http://{proxy}"
    login = urlsplit(proxy)
    headers = (
        urllib3.make_headers(proxy_basic_auth=unquote(f"{login.username}:{login.password or ''}"))
        if login.username
        else None
    )
    return urllib3.ProxyManager(proxy, proxy_headers=headers, retries=READING_RETRIES)


PROXY_LOGIN = "the proxy asks for a login: give it in {variable} as http://user:password@host:port"


class Answer(dict[str, Any]):
    """An object of the API's JSON. answer[key] is a field the client needs: one it lacks,
    or that is null, is an error naming it, not a KeyError's or TypeError's traceback;
    answer.get(key) is one that may be null."""

    def __init__(self, fields: dict[str, Any], url: str) -> None:
        super().__init__(fields)
        self.url = url

    def __getitem__(self, key: str) -> Any:
        value = super().__getitem__(key)
        if value is None:
            raise self._lacking(f"{key!r} null")
        return value

    def __missing__(self, key: str) -> Any:
        raise self._lacking(f"no {key!r}")

    def _lacking(self, what: str) -> ApiError:
        return ApiError(
            f"the answer of {self.url} has {what}: is the server this client's service, and as new?"
        )


class Client:
    def __init__(self, server: str, api_key: ApiKey) -> None:
        # A key is printable ASCII: one pasted with a curly quote or a second line was a
        # UnicodeEncodeError's or ValueError's traceback from deep in http.client.
        odd = next((c for c in api_key.value if not "!" <= c <= "~"), None)
        if odd is not None:
            raise ApiError(
                f"the API key from {api_key.source} has {odd!r} in it, which no key has: "
                "was it copied whole, and nothing with it?"
            )
        self.server = server.rstrip("/")
        self.http = pool_for(self.server)
        self.api_key = api_key
        self.headers = {"Authorization": f"Bearer {api_key.value}"} if api_key.value else {}

    def submit(self, csv_path: Path, fields: dict[str, str]) -> dict[str, Any]:
        try:
            data = csv_path.read_bytes()
        except OSError as error:
            raise ApiError(f"cannot read {csv_path}: {error.strerror or error}") from None
        # A name that is not UTF-8 (a Latin-1 "caf\xe9.csv") as the service will show it,
        # not a UnicodeEncodeError's traceback.
        name = csv_path.name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        body = {"file": (name, data, "text/csv"), **fields}
        return self._json("POST", "/api/upload/", fields=body, expect=202, **self._creating())

    def _creating(self) -> dict[str, Any]:
        """A new Idempotency-Key and the retries it makes safe, for a call that makes a
        request."""
        return {
            "headers": {**self.headers, "Idempotency-Key": str(uuid.uuid4())},
            "retries": CREATING_RETRIES,
        }

    def status(self, request_id: str) -> dict[str, Any]:
        return self._json("GET", f"/api/status/{request_id}/", expect=200)

    def requests(self, statuses: list[str], limit: int) -> list[dict[str, Any]]:
        """The account's latest requests, newest first: up to limit, in those statuses."""
        query = {"page_size": min(limit, LIST_PAGE)} | (
            {"status": ",".join(statuses)} if statuses else {}
        )
        path: str | None = f"/api/requests/?{urlencode(query)}"
        found: list[dict[str, Any]] = []
        while path and len(found) < limit:
            page = self._json("GET", path, expect=200)
            found += page["results"]
            # The next page's link is under the service's public address, which may not be
            # the --server this machine reaches it by: its path is asked here.
            following = urlsplit(page.get("next") or "")
            path = f"{following.path}?{following.query}" if page.get("next") else None
        return found[:limit]

    def act(self, request_id: str, action: str, fields: dict[str, str]) -> dict[str, Any]:
        """POST to one of a request's control routes: cancel, retry or rerun."""
        return self._json(
            "POST",
            f"/api/requests/{request_id}/{action}/",
            json=fields or None,
            expect=202,
            **(self._creating() if action == "rerun" else {}),
        )

    def delete(self, request_id: str) -> dict[str, Any]:
        """Delete a finished request's outputs, output CSV, products and images now."""
        return self._json("DELETE", f"/api/requests/{request_id}/", expect=202)

    def webhook(self, request_id: str, *, resend: bool = False) -> dict[str, Any]:
        """A finished request's webhook delivery and its attempts; sent again if resend."""
        path = f"/api/requests/{request_id}/webhook/"
        if resend:
            return self._json("POST", path, expect=202)
        return self._json("GET", path, expect=200)

    def webhook_test(self, url: str) -> dict[str, Any]:
        """Have the service send a signed test event to url, and say what it met."""
        return self._json("POST", "/api/webhook-test/", json={"url": url}, expect=200)

    def failures(self, request_id: str, most: int) -> list[str]:
        """Up to `most` failed images, in input order, a line each: product, URL and why."""
        page = self._json(
            "GET",
            f"/api/requests/{request_id}/products/?status=failed&page_size={most}",
            expect=200,
        )
        return [
            # serial_text: the S. No. as written ("007"); a server before it, the number
            f"{product.get('serial_text') or product['serial_number']} "
            f"{product['product_name']}: {image['input_url']}: "
            f"{image['error_code']}: {image.get('error') or 'no reason given'}"
            for product in page["results"]
            for image in product["images"]
            if image["status"] == "failed"
        ][:most]

    def download(self, url: str) -> bytes:
        # The key goes to this server only, never to a URL elsewhere (an object store's).
        headers = self.headers if url.startswith(self.server + "/") else {}
        response = self._send("GET", url, headers=headers)
        if response.status != 200:
            raise self._refusal(response, url)
        return bytes(response.data)

    def _json(self, method: str, path: str, *, expect: int, **options: Any) -> dict[str, Any]:
        options.setdefault("headers", self.headers)
        url = self.server + path
        response = self._send(method, url, **options)
        if response.status != expect:
            raise self._refusal(response, url)
        try:
            result = json.loads(response.data, object_hook=lambda fields: Answer(fields, url))
        except ValueError:  # a captive portal's page, another service's answer
            result = None
        if not isinstance(result, dict):
            kind = response.headers.get("Content-Type") or "no Content-Type"
            raise ApiError(
                f"{method} {url} answered HTTP {response.status} with {kind}, not the API's "
                f"JSON: is {self.server} the service's address?"
            )
        return result

    def _send(self, method: str, url: str, **options: Any) -> urllib3.BaseHTTPResponse:
        try:
            # Not followed: urllib3 drops the key on a redirect to another address (a
            # proxy's from http:// to https://), and each call was a 401 blaming the key.
            return self.http.request(
                method, url, timeout=TIMEOUT_SECONDS, redirect=False, **options
            )
        except urllib3.exceptions.HTTPError as error:
            cause = getattr(error, "reason", None) or error  # the last of urllib3's retries
            # Sent, and no answer came: a call that changes something may have been made.
            lost = method != "GET" and isinstance(
                cause, urllib3.exceptions.ProtocolError | urllib3.exceptions.ReadTimeoutError
            )
            reason = unreachable_reason(cause, https=url.startswith("https:"))
            if isinstance(cause, urllib3.exceptions.ProxyError):
                raise self._proxy_failed(url, cause.original_error) from None
            if lost:
                raise ApiError(
                    f"{self.server} gave no answer: {reason}", answer_lost=True
                ) from None
            passing = not isinstance(cause, urllib3.exceptions.SSLError)
            raise ApiError(f"cannot reach {self.server}: {reason}", passing=passing) from None

    def _proxy_failed(self, url: str, cause: Exception) -> ApiError:
        """The proxy could not be reached, or refused the tunnel to the server: said as the
        proxy's, where it was told as the server's, or as urllib3's tuple."""
        variable = "HTTPS_PROXY" if url.startswith("https:") else "HTTP_PROXY"
        proxy = getattr(self.http, "proxy", None)
        named = f" {proxy.scheme}://{proxy.netloc}" if proxy else ""  # not its login
        reason = unreachable_reason(cause, https=False)
        login = f"\n  {PROXY_LOGIN.format(variable=variable)}" if " 407 " in reason else ""
        return ApiError(
            f"cannot reach {self.server} through the proxy{named} ({variable}): {reason}{login}",
            passing=not login,
        )

    def _refusal(self, response: urllib3.BaseHTTPResponse, url: str) -> "ApiError":
        text = error_text(response)
        if response.status == 401:  # where the key came from is the first thing to check
            return ApiError(f"{text}\n  {self.api_key.refused()}")
        if response.status == 407:  # a proxy's, for http://; for https:// see _proxy_failed
            return ApiError(f"{text}\n  {PROXY_LOGIN.format(variable='HTTP_PROXY')}")
        if 300 <= response.status < 400:  # the API never redirects: a proxy in front does
            moved = urljoin(url, response.headers.get("Location") or "")
            asked = url.removeprefix(self.server)
            there = moved.removesuffix(asked) if moved != url and moved.endswith(asked) else ""
            return ApiError(
                f"HTTP {response.status}: {url} is sent on to {moved}"
                + (f"; give --server {there}" if there else "")
            )
        if response.status == 404:  # a request's, or a route's: a --server with a path
            text += f"\n  asked for {url}"
        return ApiError(text, passing=response.status in GATEWAY_STATUSES)


def unreachable_reason(cause: Exception, *, https: bool) -> str:
    """What urllib3's error came to, in plain words ("Connection refused", "Name or service
    not known"), not the tuples and connection objects it wraps around it."""
    if isinstance(cause, urllib3.exceptions.SSLError):
        refused = re.search(r"certificate verify failed: ([^(]+)", str(cause))
        if refused:
            why = refused.group(1).strip()
            # Signed by no authority known here: a company's own (its proxy's, its
            # servers'), which OpenSSL trusts where SSL_CERT_FILE names it, as curl does.
            unknown = "self-signed" in why or "issuer" in why
            hint = "; if an authority of your own signed it, set SSL_CERT_FILE to its PEM file"
            return f"its TLS certificate was refused ({why}){hint if unknown else ''}"
        return "the TLS handshake failed: is the server plain http://?" if https else str(cause)
    if isinstance(cause, urllib3.exceptions.ReadTimeoutError):
        return f"no answer within {TIMEOUT_SECONDS} s"
    if isinstance(cause, urllib3.exceptions.ProtocolError):
        return "the connection closed before the whole answer came"
    found = re.search(r"\[Errno -?\d+\] ([^)\]\"']+)", str(cause))
    if found:
        return found.group(1).strip()
    if isinstance(cause, urllib3.exceptions.ConnectTimeoutError):
        return f"no connection within {TIMEOUT_SECONDS} s"
    return str(cause)


def error_text(response: urllib3.BaseHTTPResponse) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status}: {not_the_apis(response)}"
    if not isinstance(body, dict):
        return f"HTTP {response.status}: {body}"
    lines = [f"HTTP {response.status}: {body.get('error') or body.get('code') or body}"]
    details = body.get("details")
    for detail in details if isinstance(details, list) else []:
        lines.append(f"  {_detail_text(detail)}")
    return "\n".join(lines)


def not_the_apis(response: urllib3.BaseHTTPResponse) -> str:
    """What an error that is not in the API's JSON shape (a gateway's page, another
    server's) most likely means."""
    if response.status in GATEWAY_STATUSES:
        return (
            "a gateway's answer, not the service's: the service behind it may be down or "
            "restarting; try again in a minute"
        )
    if response.status >= 500:
        return "not the service's own answer: the server's log says why"
    kind = response.headers.get("Content-Type") or "no Content-Type"
    return f"not the API's answer ({kind}): is the server's address right?"


def _detail_text(detail: object) -> str:
    """One of an error's details: where and what (a CSV's row, column or an API field, and
    its message), or the facts it gives (a 429's retry_after_seconds, a 410's expired_at)."""
    if not isinstance(detail, dict):  # a broken or other server's
        return str(detail)
    places = ("row", "column", "field")
    where = ", ".join(f"{key} {detail[key]}" for key in places if detail.get(key))
    if detail.get("message") is None:
        return ", ".join(f"{key} {value}" for key, value in detail.items())
    return f"{where}: {detail['message']}" if where else str(detail["message"])
