"""imgsvc: upload a product CSV, follow it to the end, save the output CSV.

    imgsvc submit products.csv --wait [--output out.csv] [--webhook-url URL] [--quality 50]
        [--target low|medium|high] [--output-format same|jpeg|webp|avif]
        [--metadata strip|copyright] [--score]
    imgsvc status REQUEST_ID
    imgsvc list [--status completed --status failed] [--limit 20]
    imgsvc cancel REQUEST_ID
    imgsvc delete REQUEST_ID
    imgsvc webhook-test URL
    imgsvc webhook REQUEST_ID
    imgsvc webhook-resend REQUEST_ID
    imgsvc wait REQUEST_ID [--output out.csv]
    imgsvc retry REQUEST_ID [--wait] [--output out.csv]
    imgsvc rerun REQUEST_ID [--quality 30] [--quality-mode fixed|relative|perceptual]
        [--target low|medium|high] [--output-format webp] [--score | --no-score]
        [--webhook-url URL] [--wait]

--output implies --wait. `wait` follows a request made earlier (or one a Ctrl-C stopped
following) to its end and saves its output CSV; at once if it has finished.

The server is IMGSVC_URL (default http://127.0.0.1:8000), or --server. The API key is
--api-key, else IMGSVC_API_KEY, else (for a server on 127.0.0.1) the key `make run` wrote
to var/api_key. --server and --api-key go before or after the command.
"""

import argparse
import json
import os
import re
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit

import urllib3
from tqdm import tqdm

FINISHED = {"completed", "completed_with_errors", "failed", "cancelled"}
STATUSES = ["pending", "processing", *sorted(FINISHED)]
GATEWAY_STATUSES = {502, 503, 504}  # a gateway's while the service restarts, or its own 503
# How long following a request goes on asking through an outage (a deploy's restart, a
# gateway's blip), and how often: it ended after ~3 s, a request of an hour with it.
OUTAGE_SECONDS = 300
OUTAGE_POLL_SECONDS = 5
TIMEOUT_SECONDS = 60  # for a connection, and between an answer's bytes
LIST_PAGE = 100  # the most the list API gives a page
FAILURES_SHOWN = 5  # failed images --wait prints, with their reasons
# What a call that changes something leaves to check when its answer never came: a Ctrl-C
# during it, or a connection lost after it was sent.
MAY_HAVE_HAPPENED = {
    "submit": "the request may have been made: `imgsvc list --limit 5` shows the newest",
    "rerun": "the re-run may have been made: `imgsvc list --limit 5` shows the newest",
    "retry": "the retry may have been queued: `imgsvc status {id}` shows",
    "cancel": "the cancel may have been applied: `imgsvc status {id}` shows",
    "delete": "the request may have been deleted: `imgsvc status {id}` shows",
}


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
    server on this machine."""
    if given:
        return ApiKey(given, "--api-key")
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
    status_forcelist=(502, 503, 504),
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


class Answer(dict[str, Any]):
    """An object of the API's JSON: a field it lacks is an error naming it, not a KeyError's
    traceback."""

    def __init__(self, fields: dict[str, Any], url: str) -> None:
        super().__init__(fields)
        self.url = url

    def __missing__(self, key: str) -> Any:
        raise ApiError(
            f"the answer of {self.url} has no {key!r}: is the server this client's service, "
            "and as new?"
        )


class Client:
    def __init__(self, server: str, api_key: ApiKey) -> None:
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
            following = urlsplit(page["next"] or "")
            path = f"{following.path}?{following.query}" if page["next"] else None
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
            f"{product['serial_number']} {product['product_name']}: {image['input_url']}: "
            f"{image['error_code']}: {image['error']}"
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
            return self.http.request(method, url, timeout=TIMEOUT_SECONDS, **options)
        except urllib3.exceptions.HTTPError as error:
            cause = getattr(error, "reason", None) or error  # the last of urllib3's retries
            # Sent, and no answer came: a call that changes something may have been made.
            lost = method != "GET" and isinstance(
                cause, urllib3.exceptions.ProtocolError | urllib3.exceptions.ReadTimeoutError
            )
            reason = unreachable_reason(cause, https=url.startswith("https:"))
            if lost:
                raise ApiError(
                    f"{self.server} gave no answer: {reason}", answer_lost=True
                ) from None
            passing = not isinstance(cause, urllib3.exceptions.SSLError)
            raise ApiError(f"cannot reach {self.server}: {reason}", passing=passing) from None

    def _refusal(self, response: urllib3.BaseHTTPResponse, url: str) -> "ApiError":
        text = error_text(response)
        if response.status == 401:  # where the key came from is the first thing to check
            return ApiError(f"{text}\n  {self.api_key.refused()}")
        if response.status == 404:  # a request's, or a route's: a --server with a path
            text += f"\n  asked for {url}"
        return ApiError(text, passing=response.status in GATEWAY_STATUSES)


def unreachable_reason(cause: Exception, *, https: bool) -> str:
    """What urllib3's error came to, in plain words ("Connection refused", "Name or service
    not known"), not the tuples and connection objects it wraps around it."""
    if isinstance(cause, urllib3.exceptions.SSLError):
        refused = re.search(r"certificate verify failed: ([^(]+)", str(cause))
        if refused:
            return f"its TLS certificate was refused ({refused.group(1).strip()})"
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
    lines = [f"HTTP {response.status}: {body.get('error', body)}"]
    for detail in body.get("details", []):
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


def _detail_text(detail: dict[str, Any]) -> str:
    """One of an error's details: where and what (a CSV's row, column or an API field, and
    its message), or the facts it gives (a 429's retry_after_seconds, a 410's expired_at)."""
    places = ("row", "column", "field")
    where = ", ".join(f"{key} {detail[key]}" for key in places if detail.get(key))
    if "message" not in detail:
        return ", ".join(f"{key} {value}" for key, value in detail.items())
    return f"{where}: {detail['message']}" if where else str(detail["message"])


def settings_fields(options: argparse.Namespace) -> dict[str, str]:
    """The upload's or re-run's settings the user gave."""
    return {
        name: str(value)
        for name, value in (
            ("webhook_url", options.webhook_url),
            ("quality", options.quality),
            ("quality_mode", options.quality_mode),
            ("target", options.target),
            ("metadata", options.metadata),
            ("score", None if options.score is None else str(options.score).lower()),
            ("output_format", options.output_format),
        )
        if value is not None
    }


def submit(client: Client, options: argparse.Namespace) -> int:
    accepted = client.submit(options.csv, settings_fields(options))
    return started(client, options, accepted["request_id"], accepted["total_images"])


def started(
    client: Client, options: argparse.Namespace, request_id: str, total: int, queued: str = ""
) -> int:
    """A request that was just queued (queued: what of it, if not all its images): its id,
    and with --wait its end and output CSV."""
    print(f"request {request_id}: {queued or f'{total} images'}", file=sys.stderr)
    if not options.wait:
        print(request_id)
        return 0
    return finished(client, options, request_id, total)


def finished(client: Client, options: argparse.Namespace, request_id: str, total: int) -> int:
    """Follow a request to its end, save its output CSV and say how it went: 0 if every
    image was compressed, 1 if it ended otherwise, 2 if its output CSV could not be saved,
    130 if a Ctrl-C stopped it (the request goes on). Its id goes to stdout whatever
    happens, for a script to keep."""
    again = f"`imgsvc wait {request_id}" + (
        f" --output {options.output}`" if options.output else "`"
    )
    try:
        status = follow(client, request_id, total)
    except KeyboardInterrupt:
        print(
            f"\nstopped following request {request_id}; it goes on. {again} follows it again.",
            file=sys.stderr,
        )
        print(request_id)
        return 130
    except ApiError as error:
        print(
            f"{error}\nstopped following request {request_id}; it goes on. {again} follows "
            "it again.",
            file=sys.stderr,
        )
        print(request_id)
        return 2
    try:
        return ended(client, options, request_id, status)
    except KeyboardInterrupt:
        print(f"\ninterrupted; the request has finished: {again} saves its CSV.", file=sys.stderr)
        return 130
    except ApiError as error:
        print(f"{error}\nthe request has finished: {again} saves its CSV.", file=sys.stderr)
        return 2
    finally:
        print(request_id)


def ended(
    client: Client, options: argparse.Namespace, request_id: str, status: dict[str, Any]
) -> int:
    """Save a finished request's output CSV and say how it went."""
    output = options.output or Path(f"{request_id}-output.csv")
    if status["output_csv_url"]:
        # The API's own route on the server asked, with the key: the URL in the status is
        # under the service's public address, which may not be the --server this machine
        # reaches it by, and was sent no key there (401).
        data = client.download(f"{client.server}/api/requests/{request_id}/output.csv")
        try:
            output.write_bytes(data)
        except OSError as error:
            raise ApiError(f"cannot write {output}: {error.strerror or error}") from None
        print(f"output CSV saved to {output}", file=sys.stderr)
    progress = status["progress"]
    sizes = status.get("bytes") or {}
    print(
        f"{status['status']}: {progress['succeeded']} compressed, {progress['failed']} failed"
        + (f", {progress['cancelled']} cancelled" if progress.get("cancelled") else "")
        + (f"; {sizes['input']:,} bytes in, {sizes['output']:,} out" if sizes.get("input") else ""),
        file=sys.stderr,
    )
    score = status.get("score") or {}
    if score.get("median") is not None:
        print(
            f"score (SSIMULACRA2): median {score['median']:.1f}, 5th percentile {score['p5']:.1f}",
            file=sys.stderr,
        )
    if status["status"] == "failed":  # as a whole: its results could not be written
        again = f" --output {options.output}" if options.output else " --wait"
        print(
            f"the request failed: {status.get('error') or 'the service gave no reason'}"
            + ("" if status["output_csv_url"] else "\nno output CSV was written")
            + f"\n`imgsvc retry {request_id}{again}` finishes it again",
            file=sys.stderr,
        )
    if progress["failed"]:
        failures_print(client, request_id, progress["failed"], status["products_url"])
    return 0 if status["status"] == "completed" else 1


def failures_print(client: Client, request_id: str, failed: int, products_url: str) -> None:
    """A few of the failed images and why; where the rest are."""
    try:
        shown = client.failures(request_id, FAILURES_SHOWN)
    except ApiError as error:  # the outcome stands: the list is a courtesy
        print(f"  (the failed images could not be listed: {error})", file=sys.stderr)
        return
    for image in shown:
        print(f"  {image}", file=sys.stderr)
    if failed > len(shown):
        print(f"  and {failed - len(shown)} more: {products_url}?status=failed", file=sys.stderr)


def output_writable(path: Path | None, source: Path | None) -> None:
    """Refuse an --output that cannot be written, or is the input CSV (source), before
    anything is sent, rather than after a request of an hour."""
    if path is None:
        return
    if source is not None and (
        path.resolve() == source.resolve()
        or (path.exists() and source.exists() and path.samefile(source))
    ):
        raise ApiError(f"--output {path} is the input CSV: it would be overwritten")
    folder = path.parent
    if path.is_dir():
        raise ApiError(f"cannot write {path}: it is a folder")
    if not folder.is_dir():
        raise ApiError(f"cannot write {path}: no folder {folder}")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ApiError(f"cannot write {path}: permission denied")


def control(client: Client, options: argparse.Namespace) -> int:
    """cancel, retry or rerun a request."""
    if options.command == "cancel":
        status = client.act(options.request_id, "cancel", {})
        print(f"request {options.request_id}: cancelling", file=sys.stderr)
        print(json.dumps(status, indent=2))
        return 0
    if options.command == "retry":
        # Counted before: in the answer, an image queued again may have ended already.
        before = client.status(options.request_id)["progress"]
        total = client.act(options.request_id, "retry", {})["progress"]["total"]
        queued = f"{before['failed'] + before['cancelled']} of {total} images queued again"
        return started(client, options, options.request_id, total, queued)
    accepted = client.act(options.request_id, "rerun", settings_fields(options))
    return started(client, options, accepted["request_id"], accepted["total_images"])


# How much of a re-run's source id its line shows: as git shows a commit's.
SHORT_ID = 8


def made_from(row: dict[str, Any]) -> str:
    """What a request was made from: its CSV's name, or the request it re-runs."""
    if row.get("source_request_id"):
        return f"re-run of {row['source_request_id'][:SHORT_ID]}"
    return str(row.get("file_name") or "")


def list_requests(client: Client, options: argparse.Namespace) -> int:
    """A line a request: id, status, when uploaded, how far it got, and what it was made
    from (its CSV's name, or the request it re-runs)."""
    statuses = [name for given in options.status or [] for name in given.split(",") if name]
    rows = client.requests(statuses, options.limit)
    if not rows:
        print("no requests" + (f" in {', '.join(statuses)}" if statuses else ""), file=sys.stderr)
    for row in rows:
        progress = row["progress"]
        done = f"{progress['succeeded']}/{progress['total']} images"
        if progress["failed"]:
            done += f", {progress['failed']} failed"
        if progress.get("cancelled"):
            done += f", {progress['cancelled']} cancelled"
        expired = {"account": " (deleted)", "retention": " (expired)"}.get(
            row.get("expired_by") or "", ""
        )
        line = f"{row['request_id']}  {row['status']:<21}  {row['created_at']}  {done}{expired}"
        origin = made_from(row)
        print(f"{line}  {origin}" if origin else line)
    return 0


def follow(client: Client, request_id: str, total: int) -> dict[str, Any]:
    """A request's status once it has finished, asked for through an outage of up to
    OUTAGE_SECONDS."""
    down_since: float | None = None
    # A bar for a person at a terminal only: a cron job's log got a frame every half second.
    shown = sys.stderr.isatty()
    with tqdm(total=total, unit="image", file=sys.stderr, disable=not shown) as bar:
        while True:
            try:
                status = client.status(request_id)
            except ApiError as error:
                if not error.passing:
                    raise
                if down_since is None:
                    down_since = time.monotonic()
                    minutes = OUTAGE_SECONDS // 60
                    bar.write(
                        f"{error}\ncannot reach the service; retrying for up to {minutes} minutes…",
                        file=sys.stderr,
                    )
                elif time.monotonic() - down_since > OUTAGE_SECONDS:
                    raise
                time.sleep(OUTAGE_POLL_SECONDS)
                continue
            if down_since is not None:
                bar.write("the service answers again", file=sys.stderr)
                down_since = None
            progress = status["progress"]
            ended = progress["succeeded"] + progress["failed"] + progress.get("cancelled", 0)
            bar.update(ended - bar.n)
            if status["status"] in FINISHED:
                return status
            time.sleep(0.5)


def waits(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wait", action="store_true", help="follow it to the end")
    saves(parser)


def saves(parser: argparse.ArgumentParser, *, implies_wait: bool = True) -> None:
    parser.add_argument(
        "--output",
        type=Path,
        help="where to save the output CSV ("
        + ("implies --wait; " if implies_wait else "")
        + "else REQUEST_ID-output.csv in this folder)",
    )


def given_settings(parser: argparse.ArgumentParser, *, rerun: bool = False) -> None:
    """The settings of an upload, or of a re-run, whose defaults are its source's."""
    default = "the source request's" if rerun else None
    service_default = "the service's IMAGE_SCORE_ALL_MODES"
    service_quality = "the service's IMAGE_QUALITY"
    parser.add_argument(
        "--webhook-url",
        help=f'default: {default}; "" for none'
        if rerun
        else "else the service's WEBHOOK_URL, if set",
    )
    parser.add_argument(
        "--quality",
        type=int,
        help="the encoder's quality, 1-95: in fixed mode, and the fallback in perceptual "
        f"mode (default: {default or service_quality})",
    )
    parser.add_argument(
        "--quality-mode",
        choices=["fixed", "relative", "perceptual"],
        help="fixed: at --quality; relative: half each source's estimated quality; "
        "perceptual: per image, a low quality reaching --target "
        f"(default: {default or service_quality + '_MODE'})",
    )
    parser.add_argument(
        "--target",
        choices=["low", "medium", "high"],
        help="per image, a low quality whose output scores SSIMULACRA2 60, 70 or 80, or "
        "less than 1.5 above (the perceptual mode; --quality is then the fallback)",
    )
    parser.add_argument(
        "--output-format",
        choices=["same", "jpeg", "webp", "avif"],
        help="same keeps JPEG and WebP, others JPEG or WebP if transparent (a PNG kept "
        "where smaller) "
        f"(default: {default or 'same'})",
    )
    parser.add_argument(
        "--metadata",
        choices=["strip", "copyright"],
        help="copyright keeps the artist, copyright notice and credit line (never GPS)",
    )
    parser.add_argument(
        "--score",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="score every output (SSIMULACRA2) in fixed and relative mode too: slower "
        f"(default: {default or service_default})",
    )


def server_url(text: str) -> str:
    """The service's address, with its scheme: without one, urllib3 warned and guessed."""
    parts = urlsplit(text)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise argparse.ArgumentTypeError(
            f"not an http:// or https:// address: '{text}' (e.g. http://127.0.0.1:8000)"
        )
    if parts.query or parts.fragment:  # the API's paths would go after them
        raise argparse.ArgumentTypeError(f"an address without ? or #, not '{text}'")
    return text


DEFAULT_SERVER = "http://127.0.0.1:8000"


def server_from(environ: dict[str, str]) -> str:
    """The server IMGSVC_URL names, else the default (IMGSVC_URL empty too)."""
    given = environ.get("IMGSVC_URL", "").strip()
    if not given:
        return DEFAULT_SERVER
    try:
        return server_url(given)
    except argparse.ArgumentTypeError as error:  # it was told as --server's
        raise ApiError(f"IMGSVC_URL: {error}") from None


def request_id_given(text: str) -> str:
    """A request's id, before it goes into a URL: `status "x/../../requests/?"` asked
    another route."""
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a request id: '{text}' (a UUID, as `imgsvc list` shows)"
        ) from None


def statuses_given(text: str) -> str:
    wrong = [name for name in text.split(",") if name and name not in STATUSES]
    if wrong:
        raise argparse.ArgumentTypeError(
            f"not a status: {', '.join(wrong)} (one of {', '.join(STATUSES)})"
        )
    return text


def positive(text: str) -> int:
    if not (text.isdigit() and int(text) >= 1):
        raise argparse.ArgumentTypeError(f"not a whole number from 1: '{text}'")
    return int(text)


def connection_options(parser: argparse.ArgumentParser, *, given_after: bool = False) -> None:
    """--server and --api-key, before the command or after it (given_after: a command's
    own, which leave the values given before alone unless given again)."""
    parser.add_argument(
        "--server",
        type=server_url,
        default=argparse.SUPPRESS if given_after else None,  # then server_from(environ)
        help="the service's address: else IMGSVC_URL, else http://127.0.0.1:8000",
    )
    parser.add_argument(
        "--api-key",
        default=argparse.SUPPRESS if given_after else None,
        help="else IMGSVC_API_KEY, else var/api_key (local server)",
    )


EXIT_STATUSES = (
    "exit status: 0 done (a request followed: every image compressed), 1 a request "
    "followed finished otherwise (or a webhook not delivered), 2 an error, 130 Ctrl-C "
    "(a request followed goes on), 141 the reader of the output went"
)


class _Commands(argparse._SubParsersAction):  # type: ignore[type-arg]
    """Every command also takes --server and --api-key after its name; one of a request
    (of_request) takes its id first."""

    def add_parser(
        self, name: str, *, of_request: bool = False, **options: Any
    ) -> argparse.ArgumentParser:
        parser = super().add_parser(name, epilog=EXIT_STATUSES, **options)
        if of_request:
            parser.add_argument("request_id", type=request_id_given)
        connection_options(parser, given_after=True)
        return parser  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    try:
        code = run(argv)
        sys.stdout.flush()  # here, for a reader gone to be caught, not at exit
    except BrokenPipeError:
        # The reader went (`imgsvc list | head -1`): stop quietly as Unix tools do, which
        # SIGPIPE ends with 128 + 13, and without Python's complaint at exit when it
        # flushes what was left.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.dup2(devnull, sys.stderr.fileno())
        return 141
    return code


def run(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(
        prog="imgsvc",
        description=__doc__,
        epilog=EXIT_STATUSES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    connection_options(parser)
    commands = parser.add_subparsers(dest="command", required=True, action=_Commands)
    submit_parser = commands.add_parser("submit", help="upload a product CSV")
    submit_parser.add_argument("csv", type=Path)
    waits(submit_parser)
    given_settings(submit_parser)
    commands.add_parser("status", help="show a request's status", of_request=True)
    list_parser = commands.add_parser("list", help="the account's requests, newest first")
    list_parser.add_argument(
        "--status",
        action="append",
        type=statuses_given,
        help=f"only these, comma-separated or repeated: {', '.join(STATUSES)}",
    )
    list_parser.add_argument("--limit", type=positive, default=20, help="at most (20)")
    commands.add_parser("cancel", help="stop a request: images not started end", of_request=True)
    commands.add_parser(
        "delete", help="delete a finished request's outputs, CSV and products now", of_request=True
    )
    test_parser = commands.add_parser(
        "webhook-test", help="have the service send a signed test event to a receiver"
    )
    test_parser.add_argument("url")
    commands.add_parser(
        "webhook", help="a finished request's webhook delivery and every attempt", of_request=True
    )
    commands.add_parser(
        "webhook-resend",
        help="send a finished request's webhook event again, same id",
        of_request=True,
    )
    retry_parser = commands.add_parser(
        "retry", help="process a request's failed images again", of_request=True
    )
    waits(retry_parser)
    rerun_parser = commands.add_parser(
        "rerun",
        help="a new request over a request's products, with other settings",
        of_request=True,
    )
    waits(rerun_parser)
    given_settings(rerun_parser, rerun=True)
    wait_parser = commands.add_parser(
        "wait", help="follow a request to its end and save its output CSV", of_request=True
    )
    saves(wait_parser, implies_wait=False)
    options = parser.parse_args(argv)
    if getattr(options, "output", None) is not None:
        options.wait = True

    if options.server is None:
        try:
            options.server = server_from(dict(os.environ))
        except ApiError as error:
            parser.error(str(error))
    api_key = api_key_for(options.server, options.api_key, dict(os.environ), LOCAL_VAR_DIR)
    client = Client(options.server, api_key)
    try:
        output_writable(getattr(options, "output", None), getattr(options, "csv", None))
        if options.command == "submit":
            return submit(client, options)
        if options.command == "wait":
            status = client.status(options.request_id)
            return finished(client, options, options.request_id, status["progress"]["total"])
        if options.command in {"cancel", "retry", "rerun"}:
            return control(client, options)
        if options.command == "list":
            return list_requests(client, options)
        if options.command == "webhook-test":
            sent = client.webhook_test(options.url)
            print(json.dumps(sent, indent=2))
            return 0 if sent["delivered"] else 1
        if options.command in {"webhook", "webhook-resend"}:
            resend = options.command == "webhook-resend"
            delivery = client.webhook(options.request_id, resend=resend)
            print(json.dumps(delivery, indent=2))
            return 1 if delivery["state"] == "failed" else 0  # as webhook-test's not delivered
        if options.command == "delete":
            deleted = client.delete(options.request_id)
            print(f"request {options.request_id}: deleted", file=sys.stderr)
            print(json.dumps(deleted, indent=2))
            return 0
        print(json.dumps(client.status(options.request_id), indent=2))
        return 0
    except ApiError as error:
        hint = MAY_HAVE_HAPPENED.get(options.command, "") if error.answer_lost else ""
        print(error, file=sys.stderr)
        if hint:
            print(hint.format(id=getattr(options, "request_id", "")), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Outside the following, which says more: a call that changes something may have
        # reached the service.
        hint = MAY_HAVE_HAPPENED.get(options.command, "")
        said = f"; {hint.format(id=getattr(options, 'request_id', ''))}" if hint else ""
        print(f"\ninterrupted{said}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
