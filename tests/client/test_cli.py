"""The command-line client without the service (stand-ins answer what it cannot be made
to here): what it prints of the API's errors and its own, and how it follows a request
through them."""

import contextlib
import json
import os
import select
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from socketserver import StreamRequestHandler, ThreadingTCPServer

import pytest
import urllib3
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from client.cli import DEFAULT_SERVER, main, server_from
from tests.support import free_port


class Quiet(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def stand_in(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A stand-in for the service on a spare port of 127.0.0.1, for answers the real one
    cannot be made to give here; its address."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def json_answer(
    handler: BaseHTTPRequestHandler,
    status: int,
    body: object,
    headers: dict[str, str] | None = None,
) -> None:
    data = json.dumps(body).encode()
    handler.send_response(status)
    for name, value in {**(headers or {}), "Content-Type": "application/json"}.items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def test_a_csv_that_cannot_be_read_is_an_error_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # No server at this address: the file is read before anything is sent.
    missing = tmp_path / "missing.csv"
    assert main(["--server", "http://127.0.0.1:9", "submit", str(missing)]) == 2
    assert f"cannot read {missing}: No such file or directory" in capsys.readouterr().err


def test_an_upload_refused_with_a_retry_after_is_printed_at_once_not_waited_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A stand-in for the service answering 429 (the real one is in tests/test_operations.py):
    # urllib3 waits out a Retry-After before sending again, an hour here.
    posts: list[str] = []

    class Throttling(Quiet):
        def do_POST(self) -> None:
            posts.append(self.path)
            self.rfile.read(int(self.headers["Content-Length"]))
            refusal = {"error": "Too many uploads.", "code": "throttled"}
            json_answer(self, 429, refusal, {"Retry-After": "3600"})

    csv_path = tmp_path / "products.csv"
    csv_path.write_text("S. No.,Product Name,Input Image Urls\n1,Lamp,https://shop.example/a.jpg\n")
    with stand_in(Throttling) as server_url:
        assert main(["--server", server_url, "--api-key", "K.x", "submit", str(csv_path)]) == 2
    assert posts == ["/api/upload/"]
    assert "HTTP 429: Too many uploads." in capsys.readouterr().err


@pytest.mark.parametrize(
    ("output", "says"),
    [("missing/out.csv", "no folder"), (".", "it is a folder")],
)
def test_an_output_that_cannot_be_written_is_refused_before_anything_is_sent(
    output: str, says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It was found out after the request had run, with a traceback that hid the request's
    id. No server at this address: the check comes before any call."""
    csv_path = tmp_path / "products.csv"
    csv_path.write_text("S. No.,Product Name,Input Image Urls\n1,Lamp,https://shop.example/a.jpg\n")
    path = tmp_path / output
    argv = ["--server", "http://127.0.0.1:9", "submit", str(csv_path), "--output", str(path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"cannot write {path}: {says}"), err


@pytest.mark.parametrize(("given", "odd"), [("\u201cK.x\u201d", "'\u201c'"), ("K.x\nK.y", "'\\n'")])
def test_an_api_key_with_a_character_no_key_has_is_refused_naming_it(
    given: str, odd: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A key pasted with curly quotes, or two lines of a file, was a UnicodeEncodeError's or
    ValueError's traceback from http.client (exit 1). No server at this address: nothing
    is sent."""
    monkeypatch.setenv("IMGSVC_API_KEY", given)
    assert main(["--server", "http://127.0.0.1:9", "status", REQUEST_ID]) == 2
    assert capsys.readouterr().err == (
        f"the API key from IMGSVC_API_KEY has {odd} in it, which no key has: was it copied "
        "whole, and nothing with it?\n"
    )


def test_the_output_wait_saves_to_by_default_is_checked_before_anything_is_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --output, REQUEST_ID-output.csv in this folder was not checked: a folder
    there (or, for a user, a folder not theirs) was found out once the request had ended.
    No server at this address: the check comes before any call."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / f"{REQUEST_ID}-output.csv").mkdir()
    assert main(["--server", "http://127.0.0.1:9", "wait", REQUEST_ID]) == 2
    assert capsys.readouterr().err == f"cannot write {REQUEST_ID}-output.csv: it is a folder\n"


def test_a_server_that_cannot_be_reached_is_told_in_a_few_words(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """It was urllib3's whole chain: the pool, the retries, the connection object."""
    server = f"http://127.0.0.1:{free_port()}"
    assert main(["--server", server, "--api-key", "K.x", "status", REQUEST_ID]) == 2
    assert capsys.readouterr().err == f"cannot reach {server}: Connection refused\n"


def test_a_finished_request_whose_csv_cannot_be_fetched_still_gives_its_id(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Once a request has finished, an error saving its CSV lost its id from stdout. A
    stand-in for the service whose storage fails (the real one cannot be made to here)."""
    request_id = "5b0c1d2e-0000-4000-8000-000000000000"
    finished = {
        "status": "completed",
        "progress": {"total": 1, "succeeded": 1, "failed": 0, "cancelled": 0, "pending": 0},
        "output_csv_url": f"http://x/api/requests/{request_id}/output.csv",
        "products_url": "",
    }

    class StorageDown(Quiet):
        def do_GET(self) -> None:
            if self.path.endswith("output.csv"):
                json_answer(self, 500, {"error": "Storage unavailable.", "code": "server_error"})
            else:
                json_answer(self, 200, finished)

    with stand_in(StorageDown) as server_url:
        code = main(["--server", server_url, "--api-key", "K.x", "wait", request_id])
    out, err = capsys.readouterr()
    assert (code, out) == (2, f"{request_id}\n")
    assert (
        f"HTTP 500: Storage unavailable.\nthe request has finished: `imgsvc wait {request_id}`"
        in err
    )


def test_a_server_without_its_scheme_is_refused_naming_what_to_give(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """urllib3 warned of a deprecation, in its own words, and guessed http."""
    with pytest.raises(SystemExit) as exited:
        main(["--server", "127.0.0.1:8000", "list"])
    assert exited.value.code == 2
    assert "not an http:// or https:// address: '127.0.0.1:8000'" in capsys.readouterr().err


def test_list_takes_statuses_comma_separated_and_says_when_none_is_found(
    capsys: pytest.CaptureFixture[str],
) -> None:
    asked: list[str] = []

    class NoRequests(Quiet):
        def do_GET(self) -> None:
            asked.append(self.path)
            json_answer(self, 200, {"next": None, "previous": None, "results": []})

    with stand_in(NoRequests) as server_url:
        argv = ["--server", server_url, "--api-key", "K.x", "list", "--status", "failed,cancelled"]
        assert main(argv) == 0
    assert asked == ["/api/requests/?page_size=20&status=failed%2Ccancelled"]
    assert capsys.readouterr() == ("", "no requests in failed, cancelled\n")


def test_the_server_and_key_may_follow_the_command_and_a_rerun_can_turn_scoring_off(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`imgsvc rerun ID --server URL` was refused ("unrecognized arguments"), and a re-run
    of a scored request could not be made without scores: --score was a switch only."""
    asked: list[tuple[str, str | None, object]] = []
    source = "5b0c1d2e-0000-4000-8000-000000000000"

    class Accepts(Quiet):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            asked.append((self.path, self.headers["Authorization"], body))
            json_answer(self, 202, {"request_id": "new", "total_images": 1})

    with stand_in(Accepts) as server_url:
        argv = ["rerun", source, "--no-score", "--server", server_url, "--api-key", "K.after"]
        assert main(["--api-key", "K.before", *argv]) == 0
    assert asked == [(f"/api/requests/{source}/rerun/", "Bearer K.after", {"score": "false"})]
    assert capsys.readouterr().out == "new\n"


def test_list_names_each_requests_csv_or_the_request_it_re_runs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Its lines showed an id, a status, a time and counts: past requests could not be
    told apart, nor a re-upload that re-used its images from one made anew (a server from
    before the count sends no `outputs`)."""
    upload_id, rerun_id = (f"{n}b0c1d2e-0000-4000-8000-000000000000" for n in (5, 6))
    progress = {"total": 2, "succeeded": 2, "failed": 0, "cancelled": 0, "pending": 0}
    shared = {"status": "completed", "created_at": "2026-11-29T10:00:00Z", "progress": progress}
    results = [
        shared
        | {"request_id": rerun_id, "file_name": "", "source_request_id": upload_id}
        | {"outputs": {"compressed": 0, "reused": 2}},
        shared
        | {"request_id": upload_id, "file_name": "spring shoes.csv", "source_request_id": None},
    ]

    class TwoRequests(Quiet):
        def do_GET(self) -> None:
            json_answer(self, 200, {"next": None, "previous": None, "results": results})

    with stand_in(TwoRequests) as server_url:
        assert main(["--server", server_url, "--api-key", "K.x", "list"]) == 0
    done = "completed              2026-11-29T10:00:00Z  2/2 images"
    assert capsys.readouterr().out.splitlines() == [
        f"{rerun_id}  {done} (2 re-used)  re-run of 5b0c1d2e",
        f"{upload_id}  {done}  spring shoes.csv",
    ]


PRODUCTS = "S. No.,Product Name,Input Image Urls\n1,Lamp,https://shop.example/a.jpg\n"
REQUEST_ID = "5b0c1d2e-0000-4000-8000-000000000000"
COMPLETED = {
    "status": "completed",
    "progress": {"total": 1, "succeeded": 1, "failed": 0, "cancelled": 0, "pending": 0},
    "output_csv_url": f"http://x/api/requests/{REQUEST_ID}/output.csv",
    "products_url": "",
}


def test_an_upload_whose_answer_never_came_says_the_request_may_have_been_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It ended with urllib3's "('Connection aborted.', RemoteDisconnected(...))" and no
    word that the upload had probably been made."""
    keys: list[str | None] = []

    class LosesAnswers(Quiet):
        def do_POST(self) -> None:
            keys.append(self.headers["Idempotency-Key"])
            self.rfile.read(int(self.headers["Content-Length"]))
            self.close_connection = True  # and no answer

    csv_path = tmp_path / "products.csv"
    csv_path.write_text(PRODUCTS)
    with stand_in(LosesAnswers) as server_url:
        assert main(["--server", server_url, "--api-key", "K.x", "submit", str(csv_path)]) == 2
    assert len(keys) == 4  # sent again
    assert len(set(keys)) == 1  # under its one key
    assert capsys.readouterr().err == (
        f"{server_url} gave no answer: the connection closed before the whole answer came\n"
        "the request may have been made: `imgsvc list --limit 5` shows the newest\n"
    )


def test_an_https_address_of_a_plain_http_server_is_told_at_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """TLS errors were sent again for 43 s, then printed as "[SSL: ...]"."""
    with stand_in(Quiet) as server_url:
        address = server_url.replace("http://", "https://")
        started = time.monotonic()
        assert main(["--server", address, "--api-key", "K.x", "status", REQUEST_ID]) == 2
    assert time.monotonic() - started < 2
    assert capsys.readouterr().err == (
        f"cannot reach {address}: the TLS handshake failed: is the server plain http://?\n"
    )


def test_a_retry_after_waited_out_is_said(capsys: pytest.CaptureFixture[str]) -> None:
    """A GET answered 503 with a Retry-After waited it out without a word."""
    answers = [(503, {"error": "The database is unavailable."}, {"Retry-After": "1"})]

    class Restarting(Quiet):
        def do_GET(self) -> None:
            json_answer(self, *(answers.pop() if answers else (200, COMPLETED, {})))

    with stand_in(Restarting) as server_url:
        assert main(["--server", server_url, "--api-key", "K.x", "status", REQUEST_ID]) == 0
    assert capsys.readouterr().err == (
        "HTTP 503: waiting 1 s, as the service asks, before asking again\n"
    )


def test_a_connection_lost_fetching_the_output_csv_is_an_error_with_the_id(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It was a traceback (exit 1), without the request's id."""
    monkeypatch.chdir(tmp_path)

    class LosesTheCsv(Quiet):
        def do_GET(self) -> None:
            if self.path.endswith("output.csv"):
                self.close_connection = True
            else:
                json_answer(self, 200, COMPLETED)

    with stand_in(LosesTheCsv) as server_url:
        code = main(["--server", server_url, "--api-key", "K.x", "wait", REQUEST_ID])
    out, err = capsys.readouterr()
    assert (code, out) == (2, f"{REQUEST_ID}\n")
    assert err.endswith(
        f"cannot reach {server_url}: the connection closed before the whole answer came\n"
        f"the request has finished: `imgsvc wait {REQUEST_ID}` saves its CSV.\n"
    )


def gateway_page(handler: BaseHTTPRequestHandler, status: int = 502) -> None:
    page = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
    handler.send_response(status)
    handler.send_header("Content-Type", "text/html")
    handler.send_header("Content-Length", str(len(page)))
    handler.end_headers()
    handler.wfile.write(page)


def outage(gateway_pages: int, processing: int = 2) -> type[BaseHTTPRequestHandler]:
    """A stand-in for a service behind a gateway: a request processing (for as many
    askings as given), then as many of the gateway's 502 pages as given (all of them if 0),
    then the request completed. It accepts an upload of it."""
    asked = [0]

    class Restarting(Quiet):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            json_answer(self, 202, {"request_id": REQUEST_ID, "total_images": 1})

        def do_GET(self) -> None:
            if self.path.endswith("output.csv"):
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
                return
            asked[0] += 1
            if asked[0] <= processing:
                json_answer(
                    self, 200, {**COMPLETED, "status": "processing", "output_csv_url": None}
                )
            elif not gateway_pages or asked[0] <= processing + gateway_pages:
                gateway_page(self)
            else:
                json_answer(self, 200, COMPLETED)

    return Restarting


def test_following_a_request_rides_out_a_short_outage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A gateway's 502 during a deploy ended `wait` after ~3 s, a request of an hour with it."""
    monkeypatch.setattr("client.cli.OUTAGE_POLL_SECONDS", 0)
    output = tmp_path / "out.csv"
    with stand_in(outage(gateway_pages=3)) as server_url:
        argv = ["--server", server_url, "--api-key", "K.x", "wait", REQUEST_ID]
        assert main([*argv, "--output", str(output)]) == 0
    out, err = capsys.readouterr()
    assert out == f"{REQUEST_ID}\n"
    assert err.count("cannot reach the service; retrying for up to 5 minutes…") == 1
    assert "the service answers again\n" in err
    assert output.read_text() == "ok"


@pytest.mark.parametrize("command", ["wait", "submit"])
def test_following_rides_out_an_outage_from_its_first_asking(
    command: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`wait` asked for the status once before following, and a gateway's 502 then (the
    service restarting as the user typed it) ended it at once, without the id or how to
    follow again; later askings wait up to five minutes."""
    monkeypatch.setattr("client.cli.OUTAGE_POLL_SECONDS", 0)
    output = tmp_path / "out.csv"
    csv_path = tmp_path / "products.csv"
    csv_path.write_text(PRODUCTS)
    given = {"wait": [REQUEST_ID], "submit": [str(csv_path)]}[command]
    with stand_in(outage(gateway_pages=2, processing=0)) as server_url:
        argv = ["--server", server_url, "--api-key", "K.x", command, *given]
        assert main([*argv, "--output", str(output)]) == 0
    out, err = capsys.readouterr()
    assert out == f"{REQUEST_ID}\n"
    assert err.count("cannot reach the service; retrying for up to 5 minutes…") == 1
    assert "the service answers again\n" in err
    assert output.read_text() == "ok"


def test_an_outage_that_lasts_ends_following_with_the_id_and_how_to_follow_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """It gave no id on stdout, though finished() promised one whatever happens."""
    monkeypatch.setattr("client.cli.OUTAGE_POLL_SECONDS", 0.05)
    monkeypatch.setattr("client.cli.OUTAGE_SECONDS", 0.2)
    output = tmp_path / "out.csv"
    with stand_in(outage(gateway_pages=0)) as server_url:
        argv = ["--server", server_url, "--api-key", "K.x", "wait", REQUEST_ID]
        assert main([*argv, "--output", str(output)]) == 2
    out, err = capsys.readouterr()
    assert out == f"{REQUEST_ID}\n"
    assert err.endswith(
        f"stopped following request {REQUEST_ID}; it goes on. "
        f"`imgsvc wait {REQUEST_ID} --output {output}` follows it again.\n"
    )


def test_a_csv_whose_name_is_not_utf8_is_sent_under_a_name_that_is(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Latin-1 "café.csv" was a UnicodeEncodeError's traceback (exit 1)."""
    bodies: list[bytes] = []

    class Accepts(Quiet):
        def do_POST(self) -> None:
            bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
            json_answer(self, 202, {"request_id": REQUEST_ID, "total_images": 1})

    csv_path = tmp_path / os.fsdecode(b"caf\xe9.csv")
    csv_path.write_text(PRODUCTS)
    with stand_in(Accepts) as server_url:
        assert main(["--server", server_url, "--api-key", "K.x", "submit", str(csv_path)]) == 0
    assert 'filename="caf\ufffd.csv"'.encode() in bodies[0]
    assert capsys.readouterr().out == f"{REQUEST_ID}\n"


def test_an_answer_that_is_not_the_apis_json_is_an_error_naming_the_url(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A captive portal's page, answered 200, was a JSONDecodeError's traceback."""

    class Portal(Quiet):
        def do_GET(self) -> None:
            page = b"<html>Sign in to the hotel's Wi-Fi</html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

    with stand_in(Portal) as server_url:
        assert main(["--server", server_url, "--api-key", "K.x", "status", REQUEST_ID]) == 2
    assert capsys.readouterr().err == (
        f"GET {server_url}/api/status/{REQUEST_ID}/ answered HTTP 200 with text/html, not the "
        f"API's JSON: is {server_url} the service's address?\n"
    )


def test_an_answer_without_a_field_is_an_error_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It was a KeyError's traceback (exit 1, which means "finished otherwise")."""

    class Lacking(Quiet):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            json_answer(self, 202, {"request_id": REQUEST_ID})

    csv_path = tmp_path / "products.csv"
    csv_path.write_text(PRODUCTS)
    with stand_in(Lacking) as server_url:
        assert main(["--server", server_url, "--api-key", "K.x", "submit", str(csv_path)]) == 2
    assert capsys.readouterr().err == (
        f"the answer of {server_url}/api/upload/ has no 'total_images': is the server this "
        "client's service, and as new?\n"
    )


def test_a_finished_request_with_null_fields_is_told_with_what_it_has(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A stand-in for a broken or older server, whose fields that may be left out are null
    (the service's own give them, or null only where its schema says): `wait` was a
    TypeError's traceback (exit 1, "finished otherwise") at the sizes, the score or the
    failed images."""
    finished = {
        "status": "completed_with_errors",
        "progress": {"total": 8, "succeeded": 1, "failed": 6, "cancelled": None, "pending": None},
        "bytes": {"input": 1000, "output": None},
        "score": {"median": 71.25, "p5": None},
        "output_csv_url": None,
        "products_url": None,
        "error": None,
    }
    failed = {"status": "failed", "input_url": "https://shop.example/a.jpg", "error_code": "x"}
    products = [{"serial_number": 1, "product_name": "Lamp", "images": [{**failed, "error": None}]}]

    class Older(Quiet):
        def do_GET(self) -> None:
            if "/products/" in self.path:
                json_answer(self, 200, {"next": None, "results": products})
            else:
                json_answer(self, 200, finished)

    with stand_in(Older) as server_url:
        argv = ["--server", server_url, "--api-key", "K.x", "wait", REQUEST_ID]
        assert main([*argv, "--output", str(tmp_path / "out.csv")]) == 1
    assert capsys.readouterr() == (
        f"{REQUEST_ID}\n",
        "completed_with_errors: 1 compressed, 6 failed\n"
        "score (SSIMULACRA2): median 71.2\n"
        "  1 Lamp: https://shop.example/a.jpg: x: no reason given\n"
        "  and 5 more\n",
    )


@pytest.mark.parametrize(
    ("command", "null"),
    [("wait", "progress"), ("wait", "status"), ("list", "progress"), ("list", "results")],
)
def test_a_null_where_the_client_needs_a_value_is_an_error_naming_it(
    command: str, null: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A stand-in for a broken server: `wait` and `list` were a TypeError's traceback
    (exit 1), as a field it lacks was a KeyError's."""
    row = {**COMPLETED, "request_id": REQUEST_ID, "created_at": "2026-11-29T10:00:00Z"}
    listing = {"next": None, "results": [row]}

    class Broken(Quiet):
        def do_GET(self) -> None:
            if self.path.startswith("/api/requests/?"):
                if null == "results":
                    json_answer(self, 200, {**listing, "results": None})
                else:
                    json_answer(self, 200, {**listing, "results": [{**row, null: None}]})
            else:
                json_answer(self, 200, {**COMPLETED, null: None})

    with stand_in(Broken) as server_url:
        argv = ["--server", server_url, "--api-key", "K.x", command]
        code = main([*argv, REQUEST_ID] if command == "wait" else argv)
        path = f"/api/status/{REQUEST_ID}/" if command == "wait" else "/api/requests/?page_size=20"
    assert code == 2
    assert capsys.readouterr().err.startswith(
        f"the answer of {server_url}{path} has '{null}' null: is the server this client's "
        "service, and as new?\n"
    )


@pytest.mark.e2e  # the command in a process of its own, its stdout a pipe
def test_a_reader_that_goes_ends_the_command_quietly() -> None:
    """`imgsvc list | head -1` printed a BrokenPipeError's traceback."""
    listed = {**COMPLETED, "request_id": REQUEST_ID, "created_at": "2026-11-29T10:00:00Z"}

    class Listing(Quiet):
        def do_GET(self) -> None:
            json_answer(self, 200, {"next": None, "previous": None, "results": [listed] * 20})

    reading, writing = os.pipe()
    os.close(reading)  # the reader has gone before the first line
    checkout = Path(__file__).resolve().parents[2]
    with stand_in(Listing) as server_url:
        listing = subprocess.run(
            [sys.executable, "-m", "client.cli", "--server", server_url, "--api-key", "K.x",
             "list"],
            stdout=writing, stderr=subprocess.PIPE, cwd=checkout, timeout=60, check=False,
            env={**os.environ, "PYTHONPATH": str(checkout)},
        )  # fmt: skip
    os.close(writing)
    assert (listing.returncode, listing.stderr) == (141, b"")


@pytest.mark.parametrize(
    ("server", "why"),
    [
        ("http://127.0.0.1:99999", "(Port out of range 0-65535)"),
        ("http://[::1", "(Invalid IPv6 URL)"),
    ],
)
def test_a_server_address_that_cannot_be_parsed_is_refused_saying_why(
    server: str, why: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A port past 65535 was refused by each call ("cannot reach ...: Failed to parse"),
    after the retries; a broken IPv6 address was argparse's "invalid server_url value"."""
    with pytest.raises(SystemExit) as exited:
        main(["--server", server, "list"])
    assert exited.value.code == 2
    assert f"argument --server: not an address: '{server}' {why}\n" in capsys.readouterr().err


def test_a_server_with_a_query_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """The API's paths went after the query: every answer was the service's page."""
    with pytest.raises(SystemExit) as exited:
        main(["--server", "http://127.0.0.1:8000?x=1", "list"])
    assert exited.value.code == 2
    assert "an address without ? or #, not 'http://127.0.0.1:8000?x=1'" in capsys.readouterr().err


def test_an_output_that_is_the_input_csv_is_refused_before_anything_is_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The output CSV silently took the input's place. No server at this address."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "products.csv").write_text(PRODUCTS)
    argv = ["--server", "http://127.0.0.1:9", "submit", "products.csv"]
    assert main([*argv, "--output", str(tmp_path / "products.csv")]) == 2
    assert capsys.readouterr().err == (
        f"--output {tmp_path / 'products.csv'} is the input CSV: it would be overwritten\n"
    )
    assert (tmp_path / "products.csv").read_text() == PRODUCTS


def test_a_request_that_failed_as_a_whole_says_why_and_how_to_finish_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It printed "failed: 2 compressed, 0 failed" alone."""
    failed = {
        **COMPLETED,
        "status": "failed",
        "error": "The results could not be written: disk full.",
        "output_csv_url": None,
    }

    class Failed(Quiet):
        def do_GET(self) -> None:
            json_answer(self, 200, failed)

    output = tmp_path / "out.csv"
    with stand_in(Failed) as server_url:
        argv = ["--server", server_url, "--api-key", "K.x", "wait", REQUEST_ID]
        assert main([*argv, "--output", str(output)]) == 1
    assert capsys.readouterr().err.endswith(
        "failed: 1 compressed, 0 failed\n"
        "the request failed: The results could not be written: disk full.\n"
        "no output CSV was written\n"
        f"`imgsvc retry {REQUEST_ID} --output {output}` finishes it again\n"
    )
    assert not output.exists()


def test_a_retry_of_a_request_that_failed_as_a_whole_says_its_csv_is_written_anew(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """It said "0 of 1 images queued again", as though nothing would happen."""
    failed = {**COMPLETED, "status": "failed", "error": "disk full", "output_csv_url": None}

    class Failed(Quiet):
        def do_GET(self) -> None:
            json_answer(self, 200, failed)

        def do_POST(self) -> None:
            json_answer(self, 202, {**failed, "status": "processing"})

    with stand_in(Failed) as server_url:
        assert main(["--server", server_url, "--api-key", "K.x", "retry", REQUEST_ID]) == 0
    said = capsys.readouterr()
    assert said.err == (
        f"request {REQUEST_ID}: no image queued again: its output CSV is written anew\n"
    )
    assert said.out == f"{REQUEST_ID}\n"


def test_following_without_a_terminal_draws_no_progress_bar(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cron job's log got a frame of the bar every half second."""
    monkeypatch.setattr("client.cli.OUTAGE_POLL_SECONDS", 0)
    output = tmp_path / "out.csv"
    with stand_in(outage(gateway_pages=1)) as server_url:
        argv = ["--server", server_url, "--api-key", "K.x", "wait", REQUEST_ID]
        assert main([*argv, "--output", str(output)]) == 0
    assert capsys.readouterr().err.splitlines()[1:] == [
        "cannot reach the service; retrying for up to 5 minutes…",
        "the service answers again",
        f"output CSV saved to {output}",
        "completed: 1 compressed, 0 failed",
    ]


def test_the_proxy_the_environment_names_is_used_but_not_for_this_machine(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """HTTP_PROXY, HTTPS_PROXY and NO_PROXY were ignored: behind a company's proxy the
    service could not be reached."""
    asked: list[tuple[str, str | None]] = []

    class Proxy(Quiet):
        def do_GET(self) -> None:
            asked.append((self.path, self.headers["Proxy-Authorization"]))
            json_answer(self, 200, COMPLETED)

    monkeypatch.setattr("client.api.READING_RETRIES", urllib3.Retry(0))  # refused at once
    with stand_in(Proxy) as proxy_url:
        monkeypatch.setenv("HTTP_PROXY", proxy_url.replace("http://", "http://me:s%40id@"))
        monkeypatch.setenv("NO_PROXY", "direct.example")
        argv = ["--api-key", "K.x", "status", REQUEST_ID]
        assert main(["--server", "http://images.example", *argv]) == 0
        # This machine, and NO_PROXY's hosts, are reached without it: no proxy answers.
        assert main(["--server", f"http://127.0.0.1:{free_port()}", *argv]) == 2
        assert main(["--server", f"http://direct.example:{free_port()}", *argv]) == 2
    assert asked == [
        (f"http://images.example/api/status/{REQUEST_ID}/", "Basic bWU6c0BpZA=="),  # me:s@id
    ]


def self_signed(host: str, folder: Path) -> tuple[Path, Path]:
    """A certificate for host, signed by itself (an authority of its own, as a company's
    is), and its key: their files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@contextlib.contextmanager
def tunnelling_proxy(upstream_port: int, asked: list[bytes]) -> Iterator[str]:
    """A proxy that takes CONNECT, as a company's does for https://, and tunnels every
    connection to 127.0.0.1:upstream_port whatever host it names; what each CONNECT sent
    (its line and headers) goes into asked. Its address."""

    class Tunnel(StreamRequestHandler):
        def handle(self) -> None:
            head = b"".join(iter(self.rfile.readline, b"\r\n"))
            asked.append(head)
            if not head.startswith(b"CONNECT "):
                self.wfile.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                return
            with (
                socket.create_connection(("127.0.0.1", upstream_port)) as upstream,
                contextlib.suppress(OSError),  # a client that hung up: a refused certificate
            ):
                self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                ends = {self.connection: upstream, upstream: self.connection}
                while True:
                    readable, _, _ = select.select(list(ends), [], [], 10)
                    chunks = [(end, end.recv(65536)) for end in readable]
                    if not readable or any(not chunk for _, chunk in chunks):
                        return
                    for end, chunk in chunks:
                        ends[end].sendall(chunk)

    proxy = ThreadingTCPServer(("127.0.0.1", 0), Tunnel)
    proxy.daemon_threads = True
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{proxy.server_address[1]}"
    finally:
        proxy.shutdown()
        proxy.server_close()


def test_an_https_server_is_reached_through_the_proxys_tunnel_trusting_ssl_cert_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """HTTPS_PROXY for an https:// server was untested. The proxy is asked to CONNECT, with
    its login and never the API key; the key goes through the tunnel, over TLS, to the
    server, whose certificate a company's own authority signed: trusted where SSL_CERT_FILE
    names it, refused in plain words where not."""
    cert_file, key_file = self_signed("images.example", tmp_path)
    seen: list[tuple[str, str | None, str | None]] = []

    class Service(Quiet):
        def do_GET(self) -> None:
            headers = self.headers
            seen.append((self.path, headers["Authorization"], headers["Proxy-Authorization"]))
            json_answer(self, 200, COMPLETED)

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    connects: list[bytes] = []
    with stand_in(Service) as plain_url:
        server = ThreadingHTTPServer(("127.0.0.1", 0), Service)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            with tunnelling_proxy(server.server_address[1], connects) as proxy_url:
                monkeypatch.setenv("HTTPS_PROXY", proxy_url.replace("http://", "http://me:pw@"))
                monkeypatch.setenv("HTTP_PROXY", plain_url)  # for http:// only
                argv = ["--server", "https://images.example", "--api-key", "K.x"]
                monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))
                trusted = main([*argv, "status", REQUEST_ID])
                monkeypatch.delenv("SSL_CERT_FILE")
                refused = main([*argv, "status", REQUEST_ID])
        finally:
            server.shutdown()
            server.server_close()
    assert (trusted, refused) == (0, 2)
    assert seen == [(f"/api/status/{REQUEST_ID}/", "Bearer K.x", None)]
    assert len(connects) == 2
    for head in connects:
        assert head.startswith(b"CONNECT images.example:443 HTTP/1.")
        assert b"\r\nproxy-authorization: basic bwu6chc=\r\n" in head.lower()  # me:pw
        assert b"bearer" not in head.lower()
    out, err = capsys.readouterr()
    assert json.loads(out)["status"] == "completed"
    assert err == (
        "cannot reach https://images.example: its TLS certificate was refused (self-signed "
        "certificate); if an authority of your own signed it, set SSL_CERT_FILE to its PEM "
        "file\n"
    )


@pytest.mark.parametrize("scheme", ["https", "http"])
def test_a_proxy_that_fails_is_blamed_not_the_server(
    scheme: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A proxy that was down was told as the server refusing ("cannot reach
    https://images.example: Connection refused"); one asking for a login as urllib3's
    tuple ("('Unable to connect to proxy', OSError(...))") or as "not the API's answer"."""

    class AsksForLogin(StreamRequestHandler):
        def handle(self) -> None:
            while self.rfile.readline() not in (b"\r\n", b""):
                pass
            self.wfile.write(
                b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                b'Proxy-Authenticate: Basic realm="office"\r\nContent-Length: 0\r\n\r\n'
            )

    variable = f"{scheme.upper()}_PROXY"
    monkeypatch.setattr("client.api.READING_RETRIES", urllib3.Retry(0))
    proxy = ThreadingTCPServer(("127.0.0.1", 0), AsksForLogin)
    proxy.daemon_threads = True
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    down = f"http://127.0.0.1:{free_port()}"
    argv = ["--server", f"{scheme}://images.example", "--api-key", "K.x", "status", REQUEST_ID]
    try:
        monkeypatch.setenv(variable, f"http://me:pw@127.0.0.1:{proxy.server_address[1]}")
        asks = main(argv)
        asking = capsys.readouterr().err
        monkeypatch.setenv(variable, down)
        refused = main(argv)
    finally:
        proxy.shutdown()
        proxy.server_close()
    login = (
        f"  the proxy asks for a login: give it in {variable} as http://user:password@host:port\n"
    )
    assert (asks, refused) == (2, 2)
    assert asking.endswith(login)
    assert "me:pw" not in asking
    if scheme == "https":
        assert asking.startswith(
            f"cannot reach https://images.example through the proxy http://127.0.0.1:"
            f"{proxy.server_address[1]} (HTTPS_PROXY): Tunnel connection failed: 407 Proxy "
            "Authentication Required\n"
        )
    assert capsys.readouterr().err == (
        f"cannot reach {scheme}://images.example through the proxy {down} ({variable}): "
        "Connection refused\n"
    )


def test_a_redirect_is_not_followed_but_names_the_server_to_give(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A proxy in front sends http:// on to https:// (as the README's deployment does):
    urllib3 followed it without the key, so every call was a 401 blaming the key, and an
    upload sent its CSV there too. A stand-in for the proxy, which sends every call on
    to https://images.example."""
    asked: list[tuple[str, str]] = []

    class SendsOn(Quiet):
        def answer(self) -> None:
            asked.append((self.command, self.path))
            self.send_response(301)
            self.send_header("Location", f"https://images.example{self.path}")
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = answer

    csv_path = tmp_path / "products.csv"
    csv_path.write_text(PRODUCTS)
    with stand_in(SendsOn) as server_url:
        argv = ["--server", server_url, "--api-key", "K.x"]
        assert main([*argv, "status", REQUEST_ID]) == 2
        assert main([*argv, "submit", str(csv_path)]) == 2
    assert asked == [("GET", f"/api/status/{REQUEST_ID}/"), ("POST", "/api/upload/")]
    assert capsys.readouterr().err == (
        f"HTTP 301: {server_url}/api/status/{REQUEST_ID}/ is sent on to "
        f"https://images.example/api/status/{REQUEST_ID}/; give --server https://images.example\n"
        f"HTTP 301: {server_url}/api/upload/ is sent on to https://images.example/api/upload/; "
        "give --server https://images.example\n"
    )


def test_a_404_names_the_url_asked_for(capsys: pytest.CaptureFixture[str]) -> None:
    """A --server with a wrong path gave "HTTP 404: Not found." alone: the service answers
    every path it has no route for so."""

    class NoSuchRoute(Quiet):
        def do_GET(self) -> None:
            json_answer(self, 404, {"error": "Not found.", "code": "not_found"})

    with stand_in(NoSuchRoute) as server_url:
        argv = ["--server", f"{server_url}/imgsvc", "--api-key", "K.x", "status", REQUEST_ID]
        assert main(argv) == 2
    assert capsys.readouterr().err == (
        f"HTTP 404: Not found.\n  asked for {server_url}/imgsvc/api/status/{REQUEST_ID}/\n"
    )


def test_a_wrong_imgsvc_url_is_blamed_on_it_and_an_empty_one_is_the_default(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """It was told as --server's, which was not given."""
    monkeypatch.setenv("IMGSVC_URL", "127.0.0.1:8000")
    with pytest.raises(SystemExit) as exited:
        main(["list"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "error: IMGSVC_URL: not an http:// or https:// address: '127.0.0.1:8000'" in err
    assert "--server:" not in err
    assert server_from({"IMGSVC_URL": " "}) == server_from({}) == DEFAULT_SERVER


def test_a_request_id_that_is_not_a_uuid_is_refused_before_it_goes_into_a_url(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`status "x/../../../api/requests/?"` asked for the list of requests. No server at
    this address: nothing is sent."""
    with pytest.raises(SystemExit) as exited:
        main(["--server", "http://127.0.0.1:9", "status", "x/../../../api/requests/?"])
    assert exited.value.code == 2
    assert (
        "not a request id: 'x/../../../api/requests/?' (a UUID, as `imgsvc list` shows)"
        in capsys.readouterr().err
    )


def test_help_shows_the_whole_usage_every_setting_and_the_exit_statuses(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The top-level --help gave the docstring's first line alone; --quality and
    --quality-mode had no help; no --help told the exit statuses."""
    for argv in (["--help"], ["submit", "--help"], ["rerun", "--help"]):
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 0
        shown = " ".join(capsys.readouterr().out.split())
        assert "exit status: 0 done (a request followed: every image compressed)" in shown
        if argv == ["--help"]:
            assert "imgsvc wait REQUEST_ID [--output out.csv]" in shown
            assert "--output implies --wait." in shown
        else:
            default = "the source request's" if argv[0] == "rerun" else "the service's"
            assert "--quality QUALITY the encoder's quality, 1-95" in shown
            assert f"(default: {default}" in shown
            assert "relative: half each source's estimated quality" in shown
