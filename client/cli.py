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
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tqdm import tqdm

from client.api import LOCAL_VAR_DIR, ApiError, Client, api_key_for

FINISHED = {"completed", "completed_with_errors", "failed", "cancelled"}
STATUSES = ["pending", "processing", *sorted(FINISHED)]
# How long following a request goes on asking through an outage (a deploy's restart, a
# gateway's blip), and how often: it ended after ~3 s, a request of an hour with it.
OUTAGE_SECONDS = 300
OUTAGE_POLL_SECONDS = 5
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
    output = output_path(options, request_id)
    if status.get("output_csv_url"):
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
    counted = sizes.get("input") and sizes.get("output") is not None
    # The images re-used unchanged: none said by a server from before they were counted.
    reused = (status.get("outputs") or {}).get("reused")
    if reused:
        made = f"{progress['succeeded'] - reused} compressed, {reused} re-used unchanged"
    else:
        made = f"{progress['succeeded']} compressed"
    print(
        f"{status['status']}: {made}"
        + f", {progress['failed']} failed"
        + (f", {progress['cancelled']} cancelled" if progress.get("cancelled") else "")
        + (f"; {sizes['input']:,} bytes in, {sizes['output']:,} out" if counted else ""),
        file=sys.stderr,
    )
    score = status.get("score") or {}
    if score.get("median") is not None:
        print(
            f"score (SSIMULACRA2): median {score['median']:.1f}"
            + (f", 5th percentile {score['p5']:.1f}" if score.get("p5") is not None else ""),
            file=sys.stderr,
        )
    if status["status"] == "failed":  # as a whole: its results could not be written
        again = f" --output {options.output}" if options.output else " --wait"
        print(
            f"the request failed: {status.get('error') or 'the service gave no reason'}"
            + ("" if status.get("output_csv_url") else "\nno output CSV was written")
            + f"\n`imgsvc retry {request_id}{again}` finishes it again",
            file=sys.stderr,
        )
    if progress["failed"]:
        failures_print(client, request_id, progress["failed"], status.get("products_url"))
    return 0 if status["status"] == "completed" else 1


def failures_print(client: Client, request_id: str, failed: int, products_url: str | None) -> None:
    """A few of the failed images and why; where the rest are."""
    try:
        shown = client.failures(request_id, FAILURES_SHOWN)
    except ApiError as error:  # the outcome stands: the list is a courtesy
        print(f"  (the failed images could not be listed: {error})", file=sys.stderr)
        return
    for image in shown:
        print(f"  {image}", file=sys.stderr)
    if failed > len(shown):
        where = f": {products_url}?status=failed" if products_url else ""
        print(f"  and {failed - len(shown)} more{where}", file=sys.stderr)


def output_path(options: argparse.Namespace, request_id: str) -> Path:
    """Where a request followed to its end has its output CSV saved."""
    return options.output or Path(f"{request_id}-output.csv")


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
        again = before["failed"] + (before.get("cancelled") or 0)
        # A request that failed as a whole, every image done, is finished again: "0 of 4
        # images queued again" read as though nothing would happen.
        queued = (
            f"{again} of {total} images queued again"
            if again
            else "no image queued again: its output CSV is written anew"
        )
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
        if reused := (row.get("outputs") or {}).get("reused"):
            done += f" ({reused} re-used)"
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
    """A request's status once it has finished, each asking through an outage of up to
    OUTAGE_SECONDS."""
    # A bar for a person at a terminal only: a cron job's log got a frame every half second.
    shown = sys.stderr.isatty()
    with tqdm(total=total, unit="image", file=sys.stderr, disable=not shown) as bar:
        while True:
            status = status_through_outage(client, request_id, bar.write)
            progress = status["progress"]
            ended = progress["succeeded"] + progress["failed"] + (progress.get("cancelled") or 0)
            bar.update(ended - bar.n)
            if status["status"] in FINISHED:
                return status
            time.sleep(0.5)


def status_through_outage(
    client: Client, request_id: str, say: Callable[..., None]
) -> dict[str, Any]:
    """A request's status, asked for through an outage of up to OUTAGE_SECONDS (a deploy's
    restart, a gateway's blip), which say() tells of once as it begins and ends."""
    down_since: float | None = None
    while True:
        try:
            status = client.status(request_id)
        except ApiError as error:
            if not error.passing:
                raise
            if down_since is None:
                down_since = time.monotonic()
                minutes = OUTAGE_SECONDS // 60
                say(
                    f"{error}\ncannot reach the service; retrying for up to {minutes} minutes…",
                    file=sys.stderr,
                )
            elif time.monotonic() - down_since > OUTAGE_SECONDS:
                raise
            time.sleep(OUTAGE_POLL_SECONDS)
            continue
        if down_since is not None:
            say("the service answers again", file=sys.stderr)
        return status


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
    try:
        parts = urlsplit(text)
        # Read here, where it is checked: a port past 65535 was each call's "Failed to parse".
        if parts.port == 0:
            raise ValueError("no server listens on port 0")
    except ValueError as error:  # "Port out of range 0-65535", "Invalid IPv6 URL"
        raise argparse.ArgumentTypeError(f"not an address: '{text}' ({error})") from None
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
    try:
        client = Client(options.server, api_key)
        if options.command == "wait" or getattr(options, "wait", False):
            # Without --output too, where the CSV goes into this folder: one that could
            # not take it was found out after the request had run.
            named = options.request_id if options.command == "wait" else "REQUEST_ID"
            output_writable(output_path(options, named), getattr(options, "csv", None))
        if options.command == "submit":
            return submit(client, options)
        if options.command == "wait":
            # Through an outage, as each asking while following is: a gateway's 502 as
            # the service restarted ended it at once.
            status = status_through_outage(client, options.request_id, print)
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
