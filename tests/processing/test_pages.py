"""The web page, in a real browser: Debian's chromium driven by Playwright against the
service's own processes (gunicorn, a Celery worker) and an image origin on 127.0.0.1."""

import csv
import io
import json
import re
import threading
import time
import uuid
from datetime import datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
import urllib3
from django.test import Client
from django.utils import timezone
from playwright.sync_api import Browser, ConsoleMessage, Dialog, Locator, Page, expect

from accounts.models import Account
from processing import intake, pages, queue, tasks, webhooks
from processing.exceptions import server_error_view
from processing.models import ProcessingRequest, ProductImage
from processing.outcomes import CANCELLED
from processing.queue import QueuedTask
from tests.harness.origin import Origin, image_answer
from tests.harness.proxy import AnswerLosingProxy
from tests.harness.service import Service
from tests.support import (
    api_request,
    encoded,
    multipart_upload,
    photo,
    wait_for_finish,
    wait_until,
)

CHROMIUM = "/usr/bin/chromium"
HEADER = "S. No.,Product Name,Input Image Urls\n"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    # Debian's chromium, installed by the Makefile, instead of a browser Playwright downloads.
    return {**browser_type_launch_args, "executable_path": CHROMIUM}


@pytest.fixture
def console_errors(page: Page) -> list[str]:
    """Every error the page logs to the console or throws; a test ends with none."""
    found: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            found.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: found.append(str(error)))
    return found


@pytest.fixture
def logged_in(embedded_service: Service, page: Page) -> Page:
    """The browser, logged in to the page by a one-time link, as a person of the account."""
    page.goto(embedded_service.login_link(embedded_service.person()))
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(embedded_service.base_url + "/")
    return page


def products_csv(origin: Origin, *, missing: bool = False) -> str:
    run = uuid.uuid4().hex[:8]
    urls = [
        origin.add(f"/page-{run}/{n}.jpg", encoded(photo(320, 240, n), "JPEG", quality=92))
        for n in range(3)
    ]
    lamp = [urls[0], urls[1]]
    if missing:
        lamp.append(f"{origin.base_url}/page-{run}/gone.jpg")
    return HEADER + f'1,Lamp,"{",".join(lamp)}"\n2,Chair,{urls[2]}\n'


@pytest.mark.e2e
def test_upload_watch_the_bar_reach_100_see_thumbnails_and_download_the_csv(
    embedded_service: Service,
    origin: Origin,
    logged_in: Page,
    console_errors: list[str],
    tmp_path: Path,
) -> None:
    page = logged_in
    # Given a CSV with three images and one URL that answers 404
    source = tmp_path / "products.csv"
    source.write_text(products_csv(origin, missing=True))

    # When a person picks it on the page and uploads it
    page.goto(embedded_service.base_url + "/")
    page.get_by_label("Drop a CSV here, or pick one").set_input_files(source)
    page.get_by_label(re.compile(r"^Quality")).fill("40")
    # (the box beside a hidden "false" sent the field twice, which the API refuses)
    page.get_by_role("checkbox", name=re.compile("Score every output")).check()
    page.get_by_role("button", name="Upload and start").click()

    # Then the request's page opens and its bar reaches 100%
    expect(page).to_have_url(re.compile(r"/requests/[0-9a-f-]{36}/$"))
    request_id = page.url.rstrip("/").rsplit("/", 1)[1]
    expect(page.get_by_role("progressbar")).to_have_attribute(
        "aria-valuenow", "100", timeout=60_000
    )
    expect(page.locator("#status")).to_have_text("Completed with errors")
    assert "quality 40 · every output scored" in page.locator("#request").inner_text()

    # And every compressed image shows before and after, with its saving
    after = page.locator("img[alt^='After']")
    expect(after).to_have_count(3)
    for thumbnail in after.all():
        thumbnail.scroll_into_view_if_needed()
        expect(thumbnail).to_have_js_property("complete", True)
        assert thumbnail.evaluate("image => image.naturalWidth") == 320
    expect(page.locator("img[alt^='Before']")).to_have_count(3)
    expect(page.locator(".saving")).to_have_count(3)
    # and the request's total saving
    expect(page.locator("#bytes")).to_contain_text(re.compile(r"of outputs: \d+% smaller"))

    # And the failed image says what went wrong in words
    failed = page.locator(".image-failed")
    expect(failed).to_have_count(1)
    expect(failed).to_contain_text("The image's server answered 404.")

    # And the output CSV downloads, pairing every input URL with its output
    with page.expect_download() as download:
        page.get_by_role("link", name="Download the output CSV").click()
    rows = list(csv.reader(io.StringIO(Path(download.value.path()).read_text())))
    assert rows[0][-1] == "Output Image Urls"
    assert [len(row[-1].split(",")) for row in rows[1:]] == [3, 1]
    assert rows[1][-1].split(",")[2] == ""  # the failed image's place stays empty

    # And the home page lists the request with its status
    page.goto(embedded_service.base_url + "/")
    listed = page.locator("table.recent tr", has_text=request_id)
    expect(listed).to_contain_text("Completed with errors")
    assert console_errors == []


@pytest.mark.e2e
def test_upload_at_half_each_sources_quality_or_at_a_perceptual_target_from_the_page(
    embedded_service: Service,
    origin: Origin,
    logged_in: Page,
    console_errors: list[str],
    tmp_path: Path,
) -> None:
    """The form offered a perceptual target or the quality typed in: half each source's own
    quality, which the API offers, could not be asked for from the page."""
    page = logged_in
    source = tmp_path / "products.csv"
    source.write_text(products_csv(origin))
    for choice, summary in [
        ("relative", "half the source's quality (else quality 50)"),
        ("perceptual:low", "perceptual target low (SSIMULACRA2 60"),
    ]:
        # Given a person on the home page, with a CSV of JPEGs at quality 92
        page.goto(embedded_service.base_url + "/")
        page.get_by_label("Drop a CSV here, or pick one").set_input_files(source)

        # When they choose how each image's quality is found, and upload
        page.get_by_label("Each image's quality").select_option(choice)
        page.get_by_role("button", name="Upload and start").click()

        # Then the request is made that way
        expect(page).to_have_url(re.compile(r"/requests/[0-9a-f-]{36}/$"))
        expect(page.locator("#status")).to_have_text("Completed", timeout=60_000)
        assert summary in page.locator("#request").inner_text()
    # and the last one's images were each given a quality of their own, with a score
    expect(page.locator(".quality")).to_have_count(3)
    assert all("score" in text for text in page.locator(".quality").all_inner_texts())
    assert console_errors == []


@pytest.mark.e2e
def test_an_upload_whose_answer_was_lost_is_sent_again_and_opens_the_request_it_made(
    embedded_service: Service, origin: Origin, logged_in: Page, tmp_path: Path
) -> None:
    page = logged_in
    source = tmp_path / "products.csv"
    source.write_text(products_csv(origin))
    # Given a person reaching the service through a network that loses the first upload's
    # answer (the session's cookie holds for the proxy's port too: cookies ignore ports)
    newest_before = list_requests(embedded_service)[:1]
    proxy = AnswerLosingProxy(upstream_port=urlsplit(embedded_service.base_url).port or 80)
    proxy.start()
    try:
        page.goto(proxy.base_url + "/")
        page.get_by_label("Drop a CSV here, or pick one").set_input_files(source)

        # When they upload
        opened = page_opened_after_a_lost_answer(
            page,
            button="Upload and start",
            opened=rf"^{proxy.base_url}/requests/([0-9a-f-]{{36}})/$",
            told=("#upload-result", "did not reach the service"),
        )
    finally:
        proxy.stop()

    # Then the answer was lost once, and the page opened the one request that was made
    assert proxy.lost == 1
    assert list_requests(embedded_service)[:2] == [opened, *newest_before]
    expect(page.locator("#status")).to_have_text("Completed", timeout=60_000)


@pytest.mark.e2e
def test_the_upload_button_stays_disabled_while_the_request_it_made_opens(
    embedded_service: Service, origin: Origin, logged_in: Page, tmp_path: Path
) -> None:
    page = logged_in
    source = tmp_path / "products.csv"
    source.write_text(products_csv(origin))
    # Given a request page that never comes (answered 204, which leaves the page in place)
    page.route(re.compile(r"/requests/[0-9a-f-]{36}/$"), lambda route: route.fulfill(status=204))
    page.goto(embedded_service.base_url + "/")
    page.get_by_label("Drop a CSV here, or pick one").set_input_files(source)

    # When the upload has been answered and its page is on its way
    page.get_by_role("button", name="Upload and start").click()
    expect(page.locator("#upload-result")).to_have_text("Uploaded: opening the request…")

    # Then a second click cannot make a second request
    expect(page.get_by_role("button", name="Upload and start")).to_be_disabled()


@pytest.mark.e2e
def test_an_upload_sent_again_after_back_opens_the_request_it_made(
    embedded_service: Service, origin: Origin, logged_in: Page, tmp_path: Path
) -> None:
    """Back after an upload, then Upload again, silently made a second request."""
    page = logged_in
    source = tmp_path / "products.csv"
    source.write_text(products_csv(origin))
    newest_before = list_requests(embedded_service)[:1]
    # Given a person who uploaded a CSV and saw its request's page open
    page.goto(embedded_service.base_url + "/")
    page.get_by_label("Drop a CSV here, or pick one").set_input_files(source)
    page.get_by_role("button", name="Upload and start").click()
    expect(page).to_have_url(re.compile(r"/requests/[0-9a-f-]{36}/$"))
    made = page.url

    # When they go Back and upload the same form again (the same file picked again where
    # the browser did not keep it)
    page.go_back()
    expect(page).to_have_url(embedded_service.base_url + "/")
    if not page.locator("#csv-file").evaluate("input => input.files.length"):
        page.get_by_label("Drop a CSV here, or pick one").set_input_files(source)
    page.get_by_role("button", name="Upload and start").click()

    # Then the request it made opens again, and no second one was made
    expect(page).to_have_url(made)
    assert list_requests(embedded_service)[:2] == [
        made.rstrip("/").rsplit("/", 1)[1],
        *newest_before,
    ]

    # But the same file uploaded again from the page visited afresh is a new upload (its
    # key replayed the first request, even once that had been deleted)
    page.goto(embedded_service.base_url + "/")
    page.get_by_label("Drop a CSV here, or pick one").set_input_files(source)
    page.get_by_role("button", name="Upload and start").click()
    expect(page).to_have_url(re.compile(r"/requests/[0-9a-f-]{36}/$"))
    assert page.url != made


@pytest.mark.e2e
def test_an_upload_sent_again_after_back_once_its_request_was_deleted_makes_a_new_one(
    embedded_service: Service, origin: Origin, logged_in: Page, tmp_path: Path
) -> None:
    """Its key replayed the deleted request: the person landed on "Request deleted"."""
    page = logged_in
    source = tmp_path / "products.csv"
    source.write_text(products_csv(origin))
    # Given a person who uploaded a CSV, saw its request finish, and deleted it
    page.goto(embedded_service.base_url + "/")
    page.get_by_label("Drop a CSV here, or pick one").set_input_files(source)
    page.get_by_role("button", name="Upload and start").click()
    expect(page).to_have_url(re.compile(r"/requests/[0-9a-f-]{36}/$"))
    made = page.url
    expect(page.locator("#status")).to_have_text("Completed", timeout=60_000)
    deleted = made.rstrip("/").rsplit("/", 1)[1]
    gone = api_request("DELETE", f"{embedded_service.base_url}/api/requests/{deleted}/")
    assert gone.status == 202

    # When they go Back and upload the same form again
    page.go_back()
    expect(page).to_have_url(embedded_service.base_url + "/")
    if not page.locator("#csv-file").evaluate("input => input.files.length"):
        page.get_by_label("Drop a CSV here, or pick one").set_input_files(source)
    page.get_by_role("button", name="Upload and start").click()

    # Then a new request is made and opens, not the deleted one
    expect(page).to_have_url(re.compile(r"/requests/[0-9a-f-]{36}/$"))
    expect(page).not_to_have_url(made)
    assert list_requests(embedded_service)[0] == page.url.rstrip("/").rsplit("/", 1)[1]
    expect(page.locator("#status")).to_have_text("Completed", timeout=60_000)


@pytest.mark.e2e
def test_a_form_of_a_page_shown_before_logging_out_and_in_again_says_to_reload(
    embedded_service: Service, origin: Origin, logged_in: Page, tmp_path: Path
) -> None:
    """It said "CSRF Failed: CSRF token from POST incorrect."."""
    page = logged_in
    source = tmp_path / "products.csv"
    source.write_text(products_csv(origin))
    finished = multipart_upload(embedded_service.base_url, products_csv(origin)).json()
    wait_for_finish(embedded_service.base_url, finished["request_id"])
    # Given the upload form and a request's page, shown in two tabs
    page.goto(embedded_service.base_url + "/")
    page.get_by_label("Drop a CSV here, or pick one").set_input_files(source)
    request_tab = page.context.new_page()
    request_tab.goto(f"{embedded_service.base_url}/requests/{finished['request_id']}/")

    # When the person logs out and in again in a third tab
    other = page.context.new_page()
    other.goto(embedded_service.base_url + "/")
    other.get_by_role("button", name="Log out").click()
    expect(other).to_have_url(re.compile(r"/login/$"))
    other.goto(embedded_service.login_link(embedded_service.person()))
    other.get_by_role("button", name="Log in").click()
    expect(other).to_have_url(embedded_service.base_url + "/")

    # Then the first tabs' forms say to reload the page
    reload = "This page is out of date (you logged out and in again since it was shown)"
    page.get_by_role("button", name="Upload and start").click()
    expect(page.locator("#upload-result")).to_contain_text(reload)
    request_tab.get_by_role("button", name="Re-run with these settings").click()
    expect(request_tab.locator("#action-result")).to_contain_text(reload)


@pytest.mark.e2e
def test_without_javascript_the_forms_are_disabled_not_sent_to_the_json_api(
    embedded_service: Service, origin: Origin, browser: Browser
) -> None:
    """They posted to the API, which showed raw JSON (and a re-run made a request)."""
    request_id = multipart_upload(embedded_service.base_url, products_csv(origin)).json()[
        "request_id"
    ]
    wait_for_finish(embedded_service.base_url, request_id)
    # Given a person whose browser runs no JavaScript
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(embedded_service.login_link(embedded_service.person()))
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(embedded_service.base_url + "/")

    # Then the upload form and the request page's forms cannot be sent
    expect(page.get_by_role("button", name="Upload and start")).to_be_disabled()
    page.goto(f"{embedded_service.base_url}/requests/{request_id}/")
    expect(page.get_by_role("button", name="Re-run with these settings")).to_be_disabled()
    # (deleting, a page of its own, is still offered)
    expect(page.get_by_role("link", name="Delete the results…")).to_be_visible()
    context.close()


@pytest.mark.e2e
def test_a_rerun_whose_answer_was_lost_opens_the_one_rerun_it_made(
    embedded_service: Service, origin: Origin, logged_in: Page
) -> None:
    page = logged_in
    # Given a finished request, and a network that loses the answer to its re-run
    source = multipart_upload(embedded_service.base_url, products_csv(origin)).json()["request_id"]
    proxy = AnswerLosingProxy(
        upstream_port=urlsplit(embedded_service.base_url).port or 80,
        losing=f"POST /api/requests/{source}/rerun/".encode(),
    )
    proxy.start()
    try:
        page.goto(f"{proxy.base_url}/requests/{source}/")
        expect(page.locator("#status")).to_have_text("Completed", timeout=60_000)

        # When the person re-runs it at another quality
        page.locator("#rerun-form input[name=quality]").fill("30")
        opened = page_opened_after_a_lost_answer(
            page,
            button="Re-run with these settings",
            opened=rf"^{proxy.base_url}/requests/(?!{source})([0-9a-f-]{{36}})/$",
            told=("#action-result", "could not be reached"),
        )
    finally:
        proxy.stop()

    # Then the page opened the one re-run that was made
    assert proxy.lost == 1
    assert list_requests(embedded_service)[:2] == [opened, source]


def page_opened_after_a_lost_answer(
    page: Page, *, button: str, opened: str, told: tuple[str, str]
) -> str:
    """Click button, whose answer the network loses, and return the id of the request
    page it opens (the group in opened): Chromium sends a POST again by itself when a
    kept connection fails; where it did not, the page says so (told: where and what) and
    the person clicks again."""
    page.get_by_role("button", name=button).click()
    address = re.compile(opened)
    try:
        expect(page).to_have_url(address, timeout=10_000)
    except AssertionError:
        expect(page.locator(told[0])).to_contain_text(told[1])
        page.get_by_role("button", name=button).click()
        expect(page).to_have_url(address)
    shown = address.match(page.url)
    assert shown is not None
    return shown[1]


def list_requests(service: Service) -> list[str]:
    """The account's requests' ids, newest first."""
    response = api_request("GET", f"{service.base_url}/api/requests/?page_size=5")
    assert response.status == 200
    return [row["request_id"] for row in response.json()["results"]]


@pytest.mark.e2e
def test_retry_the_failed_image_then_rerun_at_another_quality_and_format_from_the_page(
    embedded_service: Service, origin: Origin, logged_in: Page, console_errors: list[str]
) -> None:
    page = logged_in
    # Given a finished request whose one image was missing from the origin
    csv_text = products_csv(origin, missing=True)
    request_id = multipart_upload(embedded_service.base_url, csv_text).json()["request_id"]
    page.goto(f"{embedded_service.base_url}/requests/{request_id}/")
    expect(page.locator("#status")).to_have_text("Completed with errors", timeout=60_000)
    expect(page.locator(".image-failed")).to_have_count(1)

    # When the origin starts answering for it and the person retries it
    gone = re.search(r"http://[^,\"]*/gone\.jpg", csv_text)
    assert gone is not None
    origin.add(gone[0].removeprefix(origin.base_url), encoded(photo(320, 240, 9), "JPEG"))
    page.get_by_role("button", name="Retry the 1 image not compressed").click()

    # Then the same request completes, every image compressed
    expect(page.locator("#status")).to_have_text("Completed", timeout=60_000)
    expect(page.locator("img[alt^='After']")).to_have_count(4)
    expect(page.get_by_role("button", name=re.compile("^Retry"))).to_have_count(0)

    # And a re-run at quality 30 in WebP opens the new request's page, naming where it
    # came from, its images WebPs
    page.get_by_label(re.compile(r"^Quality")).fill("30")
    page.locator("#rerun-form").get_by_label("Output format").select_option("webp")
    page.get_by_role("button", name="Re-run with these settings").click()
    expect(page).not_to_have_url(re.compile(request_id))
    expect(page.locator("#request")).to_contain_text(f"re-run of {request_id}")
    expect(page.locator("#status")).to_have_text("Completed", timeout=60_000)
    assert "quality 30 · as WebP" in page.locator("#request").inner_text()
    after = page.locator("img[alt^='After']")
    expect(after).to_have_count(4)
    assert all(".webp" in (image.get_attribute("src") or "") for image in after.all())

    # And a re-run of that at the medium perceptual target, keeping the credits, shows
    # its target, each image's quality and score, and the request's scores
    webp_request = page.url
    page.locator("#rerun-form").get_by_label("Perceptual target").select_option("medium")
    page.locator("#rerun-form").get_by_label("Metadata").select_option("copyright")
    page.get_by_role("button", name="Re-run with these settings").click()
    expect(page).not_to_have_url(webp_request)
    expect(page.locator("#status")).to_have_text("Completed", timeout=60_000)
    summary = page.locator("#request").inner_text()
    assert "perceptual target medium (SSIMULACRA2 70" in summary
    assert "credits kept" in summary
    expect(page.locator("#score")).to_contain_text("Scores (SSIMULACRA2")
    expect(page.locator(".quality")).to_have_count(4)
    assert all("score" in text for text in page.locator(".quality").all_inner_texts())
    assert console_errors == []


@pytest.mark.e2e
def test_a_keyboard_user_keeps_their_place_when_the_page_loads_again(
    embedded_service: Service, origin: Origin, logged_in: Page, console_errors: list[str]
) -> None:
    """The page loads again after a retry (or a cancel) and once the request finishes: the
    focus went back to the top of the page, a screen reader's place lost."""
    page = logged_in
    # Given a request of six images that take a while each, and one that is missing
    run = uuid.uuid4().hex[:8]
    body = encoded(photo(64, 48), "JPEG")

    def slowly(handler: BaseHTTPRequestHandler) -> None:
        time.sleep(0.8)
        image_answer(handler, body)

    def slowly_missing(handler: BaseHTTPRequestHandler) -> None:
        time.sleep(0.8)
        handler.send_error(404)

    urls = [origin.add(f"/focus-{run}/{n}.jpg", serve=slowly) for n in range(6)]
    urls.append(origin.add(f"/focus-{run}/gone.jpg", serve=slowly_missing))
    csv_text = HEADER + "".join(f"{n + 1},Item {n},{url}\n" for n, url in enumerate(urls))
    request_id = multipart_upload(embedded_service.base_url, csv_text).json()["request_id"]
    page.goto(f"{embedded_service.base_url}/requests/{request_id}/")

    # When the person moves to a field of the re-run form while it runs
    quality = page.locator("#rerun-form input[name=quality]")
    quality.focus()
    expect(page.locator("#request")).to_have_attribute("data-finished", "false")

    # Then the field keeps the focus once the request has finished and the page has
    # loaded again
    expect(page.locator("#status")).to_have_text("Completed with errors", timeout=60_000)
    expect(quality).to_be_focused()

    # When they press Retry with the keyboard
    retry = page.get_by_role("button", name="Retry the 1 image not compressed")
    retry.focus()
    page.keyboard.press("Enter")

    # Then, the page loaded again without the button, the focus is on the request's
    # status, which a screen reader reads out
    expect(retry).to_have_count(0)
    status_line = page.locator("p", has=page.locator("#status"))
    expect(status_line).to_be_focused()
    expect(status_line).to_contain_text(re.compile(r"Status: (Pending|Processing)"))
    # and stays there once the retry has ended and the page has loaded again
    expect(retry).to_have_count(1, timeout=60_000)
    expect(status_line).to_be_focused()
    assert console_errors == []


@pytest.mark.e2e
def test_a_tab_of_a_request_deleted_elsewhere_says_so_and_its_download_shows_when(
    embedded_service: Service, origin: Origin, logged_in: Page
) -> None:
    """A stale tab kept its buttons: Retry said nothing useful, and the output CSV's
    download answered 410 to a link with `download`, which failed without a word."""
    page = logged_in
    # Given a finished request with a failed image, its page open in three tabs
    csv_text = products_csv(origin, missing=True)
    request_id = multipart_upload(embedded_service.base_url, csv_text).json()["request_id"]
    wait_for_finish(embedded_service.base_url, request_id)
    url = f"{embedded_service.base_url}/requests/{request_id}/"
    left = page.context.new_page()
    left.clock.install()  # a tab left open: its minutes pass at once
    tabs = [left, page.context.new_page(), page.context.new_page()]
    for tab in tabs[1:]:  # (tabs that have not asked yet, whatever they are asked)
        tab.route(re.compile(r"/api/status/"), lambda route: route.abort())
    for tab in tabs:
        tab.goto(url)
        expect(tab.get_by_role("link", name="Download the output CSV")).to_be_visible()
    left, retrying, downloading = tabs

    # When the request is deleted from the first tab
    page.goto(url)
    page.get_by_role("link", name="Delete the results…").click()
    page.get_by_role("button", name=re.compile("^Delete")).click()
    expect(page).to_have_url(embedded_service.base_url + "/")
    gone = re.compile(r"deleted on \d{4}-\d\d-\d\d \d\d:\d\d UTC, at the account's request")

    # Then a tab left open says so within a minute, in words read out, and its buttons
    # and links no longer offer what is gone
    left.clock.run_for(61_000)
    told = left.locator("#request-gone")
    expect(told).to_contain_text(gone)
    expect(told).to_have_attribute("role", "alert")
    for name in ["Retry the 1 image not compressed", "Re-run with these settings"]:
        expect(left.get_by_role("button", name=name)).to_be_disabled()
    expect(left.get_by_role("link", name="Download the output CSV")).to_have_count(0)
    expect(left.get_by_role("link", name="Delete the results…")).to_have_count(0)

    # And a tab that had not noticed yet says so once its Retry is pressed
    retrying.get_by_role("button", name="Retry the 1 image not compressed").click()
    expect(retrying.locator("#request-gone")).to_contain_text(gone)
    expect(retrying.get_by_role("button", name="Re-run with these settings")).to_be_disabled()

    # And the output CSV asked for from a tab that still offers it shows a page that says
    # it was deleted, and when
    downloading.get_by_role("link", name="Download the output CSV").click()
    expect(downloading.get_by_role("heading", name="Request deleted")).to_be_visible()
    expect(downloading.locator("main")).to_contain_text("output CSV")
    expect(downloading.locator("main")).to_contain_text(
        re.compile(r"were deleted on\s+\w+ \d+, \d{4}")
    )


@pytest.mark.e2e
def test_a_tab_of_a_finished_request_retried_elsewhere_follows_the_retry(
    embedded_service: Service, origin: Origin, logged_in: Page, console_errors: list[str]
) -> None:
    """A finished request's tab asked once a minute whether it was gone, and nothing else:
    retried from the API (or another tab, or retry_failed), it stayed "Completed with
    errors", its Retry refused, until reloaded by hand."""
    page = logged_in
    page.clock.install()  # a tab left open: its minutes pass at once
    # Given a finished request whose one image was missing, its page open
    csv_text = products_csv(origin, missing=True)
    request_id = multipart_upload(embedded_service.base_url, csv_text).json()["request_id"]
    wait_for_finish(embedded_service.base_url, request_id)
    page.goto(f"{embedded_service.base_url}/requests/{request_id}/")
    expect(page.locator("#status")).to_have_text("Completed with errors")
    page.evaluate("window.shownOnce = true")

    # When a minute passes with nothing changed, the page stays as it is (not loaded again)
    with page.expect_response(re.compile(r"/api/status/")) as asked:
        page.clock.run_for(61_000)
    assert asked.value.status == 304
    assert page.evaluate("window.shownOnce") is True

    # When the image is mended and the request retried through the API, and has finished
    missing = re.search(r"http://[^,\"]*/gone\.jpg", csv_text)
    assert missing is not None
    origin.add(missing[0].removeprefix(origin.base_url), encoded(photo(320, 240, 9), "JPEG"))
    retried = api_request("POST", f"{embedded_service.base_url}/api/requests/{request_id}/retry/")
    assert retried.status == 202
    wait_for_finish(embedded_service.base_url, request_id)

    # Then within a minute the page shows it anew: every image compressed, no Retry
    page.clock.run_for(61_000)
    expect(page.locator("#status")).to_have_text("Completed")
    expect(page.locator("img[alt^='After']")).to_have_count(4)
    expect(page.get_by_role("button", name=re.compile("^Retry"))).to_have_count(0)
    assert console_errors == []


@pytest.mark.e2e
def test_a_webhook_whose_receiver_failed_is_sent_again_from_the_page(
    embedded_service: Service, origin: Origin, logged_in: Page, console_errors: list[str]
) -> None:
    page = logged_in
    # Given a finished request whose receiver failed every attempt, then was mended
    hook = f"/page-hook-{uuid.uuid4().hex[:8]}"
    origin.post_statuses[hook] = [500] * 10
    request_id = multipart_upload(
        embedded_service.base_url, products_csv(origin), webhook_url=origin.base_url + hook
    ).json()["request_id"]
    wait_for_finish(embedded_service.base_url, request_id)  # the page then stays as it is
    page.goto(f"{embedded_service.base_url}/requests/{request_id}/")

    def webhook_says(words: str) -> bool:
        page.reload()  # the page follows the request, not its webhook: looked at again
        return words in page.locator("#webhook").inner_text()

    wait_until(lambda: webhook_says("failed after"), timeout=60, interval=0.5, what="failure")
    origin.post_statuses[hook] = []

    # When the person sends it again from the page, which then loads again
    with page.expect_navigation():
        page.get_by_role("button", name="Send the webhook again").click()

    # Then the page says it is on its way, and once delivered (the person looking again),
    # says so; under the event's one id
    expect(page.locator("#webhook")).not_to_contain_text("failed after")
    wait_until(lambda: webhook_says("delivered"), timeout=60, interval=0.5, what="delivery")
    assert len({headers["webhook-id"] for headers, _ in origin.posts_to(hook)}) == 1
    assert console_errors == []


@pytest.mark.e2e
def test_a_rerun_of_half_the_sources_quality_uses_a_quality_typed_in_and_keeps_an_emptied_one(
    embedded_service: Service, origin: Origin, logged_in: Page, console_errors: list[str]
) -> None:
    page = logged_in
    # Given a finished request at half each source's quality
    request_id = multipart_upload(
        embedded_service.base_url, products_csv(origin), quality_mode="relative"
    ).json()["request_id"]
    source_page = f"{embedded_service.base_url}/requests/{request_id}/"
    page.goto(source_page)
    expect(page.locator("#status")).to_have_text("Completed", timeout=60_000)
    qualities = sorted(page.locator(".quality").all_inner_texts())

    # When a quality the API refuses is sent (by a browser that does not check the form
    # itself), the API's reason is shown by field
    page.locator("#rerun-form").evaluate("form => { form.noValidate = true; }")
    quality = page.locator("#rerun-form").get_by_label(re.compile(r"^Quality"))
    quality.fill("96")
    page.get_by_role("button", name="Re-run with these settings").click()
    expect(page.locator("#action-result")).to_contain_text(
        "quality: Ensure this value is less than or equal to 95."
    )

    # When they type a quality and re-run
    quality.fill("30")
    page.get_by_role("button", name="Re-run with these settings").click()

    # Then the new request runs at that quality, not at half the sources' again
    expect(page).not_to_have_url(re.compile(request_id))
    expect(page.locator("#status")).to_have_text("Completed", timeout=60_000)
    assert "· quality 30" in page.locator("#request").inner_text()
    assert set(page.locator(".quality").all_inner_texts()) == {"quality 30"}

    # And a re-run of the source with the quality emptied keeps the source's, half each
    # image's own, as a re-run through the API that gives none (the page sent "", which
    # the API refused: "A valid integer is required")
    page.goto(source_page)
    page.locator("#rerun-form").get_by_label(re.compile(r"^Quality")).fill("")
    page.get_by_role("button", name="Re-run with these settings").click()
    expect(page).not_to_have_url(source_page)
    expect(page.locator("#status")).to_have_text("Completed", timeout=60_000)
    assert "half the source's quality (else quality 50)" in page.locator("#request").inner_text()
    assert sorted(page.locator(".quality").all_inner_texts()) == qualities
    assert console_errors == [
        "Failed to load resource: the server responded with a status of 400 (Bad Request)"
    ]


@pytest.mark.e2e
def test_a_request_cancelled_from_its_page_ends_cancelled(
    embedded_service: Service, origin: Origin, logged_in: Page, console_errors: list[str]
) -> None:
    page = logged_in
    # Given a request of 240 images on an origin that takes a second for each
    run = uuid.uuid4().hex[:8]
    body = encoded(photo(64, 48), "JPEG")

    def slowly(handler: BaseHTTPRequestHandler) -> None:
        time.sleep(1.0)
        image_answer(handler, body)

    urls = [origin.add(f"/cancel-{run}/{n}.jpg", serve=slowly) for n in range(240)]
    csv_text = HEADER + "".join(f"{n + 1},Item {n},{url}\n" for n, url in enumerate(urls))
    request_id = multipart_upload(embedded_service.base_url, csv_text).json()["request_id"]
    page.goto(f"{embedded_service.base_url}/requests/{request_id}/")

    # Then, while it runs, the images that have ended show their results without a reload
    expect(page.locator(".image-succeeded").first).to_be_visible(timeout=30_000)
    expect(page.locator("#status")).to_have_text("Processing")
    expect(page.get_by_role("button", name="Cancel the request")).to_have_count(1)
    # (a change of status is read out by a screen reader)
    expect(page.locator("p", has=page.locator("#status"))).to_have_attribute("aria-live", "polite")
    # and a person going through them with the keyboard keeps their place as they change
    # (each refresh sent the focus back to the top of the page)
    source = page.locator("#products a.source").first
    source.focus()
    href = source.get_attribute("href")
    page.evaluate("window.productsBefore = document.getElementById('products')")
    page.wait_for_function(
        "() => document.getElementById('products') !== window.productsBefore", timeout=30_000
    )
    assert page.evaluate("document.activeElement.getAttribute('href')") == href

    # (and the counts are read out, and in the bar's value)
    expect(page.locator("#progress-said")).to_contain_text(re.compile(r"\d+ compressed"))
    expect(page.get_by_role("progressbar")).to_have_attribute(
        "aria-valuetext", re.compile(r"^\d+%: \d+ compressed, 0 failed, \d+ to go$")
    )

    # When the status cannot be asked for a while, the page says so until it can again
    status_api = re.compile(r"/api/status/")
    page.route(status_api, lambda route: route.abort("connectionrefused"))
    expect(page.locator("#poll-problem")).to_have_text("Cannot reach the service; retrying…")
    page.unroute(status_api)
    expect(page.locator("#poll-problem")).to_have_text("")

    # When the person presses Cancel and answers no, nothing is cancelled
    asked: list[str] = []

    def answer(accept: bool) -> None:
        def reply(dialog: Dialog) -> None:
            asked.append(dialog.message)
            dialog.accept() if accept else dialog.dismiss()

        page.once("dialog", reply)

    answer(False)
    page.get_by_role("button", name="Cancel the request").click()
    assert asked == [
        "Cancel the request? The images not started yet are not processed; the ones under "
        "way finish. You can retry them afterwards."
    ]
    expect(page.get_by_role("button", name="Cancel the request")).to_be_enabled()
    expect(page.locator("#status")).to_have_text("Processing")

    # When the person, having typed a quality for a re-run, cancels it while it runs
    rerun_quality = page.locator("#rerun-form input[name=quality]")
    rerun_quality.fill("22")
    answer(True)
    page.get_by_role("button", name="Cancel the request").click()

    # Then the page says it is cancelling, and then that it was cancelled
    expect(page.locator("#status")).to_have_text("Cancelled", timeout=60_000)
    # and what they typed is still there (the page's reload reset it)
    expect(rerun_quality).to_have_value("22")
    expect(page.locator("#progress-text")).to_contain_text("cancelled")
    assert page.locator("#progress").get_attribute("aria-valuenow") != "100"
    expect(page.get_by_role("button", name="Cancel the request")).to_have_count(0)
    # and the images never started say so, on whichever of the twelve pages they are
    shown = []
    for number in range(1, 13):
        page.goto(f"{embedded_service.base_url}/requests/{request_id}/?page={number}")
        shown += page.locator(".image-cancelled .placeholder").all_inner_texts()
    said = int(page.locator("#progress-text").inner_text().split()[4])  # "… N cancelled"
    assert shown.count("cancelled") == said > 0  # each one's "after", never made
    # (the status the page could not ask for, aside)
    assert set(console_errors) <= {"Failed to load resource: net::ERR_CONNECTION_REFUSED"}


@pytest.mark.e2e
def test_a_catalogue_uploaded_again_shows_its_re_used_images_apart_as_it_runs_and_once_done(
    embedded_service: Service, origin: Origin, logged_in: Page, console_errors: list[str]
) -> None:
    """The counts said "N compressed" of images re-used unchanged, nothing encoded."""
    page = logged_in
    # Given a first run of eight sources (a first batch's worth)
    run = uuid.uuid4().hex[:8]
    urls = [
        origin.add(f"/again-{run}/{n}.jpg", encoded(photo(64, 48, n), "JPEG")) for n in range(8)
    ]
    rows = "".join(f"{n + 1},Item {n},{url}\n" for n, url in enumerate(urls))
    first = multipart_upload(embedded_service.base_url, HEADER + rows).json()["request_id"]
    assert wait_for_finish(embedded_service.base_url, first)["status"] == "completed"

    # When they are uploaded again with eight new ones, which the origin holds back
    released = threading.Event()
    body = encoded(photo(64, 48, 99), "JPEG")

    def later(handler: BaseHTTPRequestHandler) -> None:
        released.wait(60)
        image_answer(handler, body)

    held = [origin.add(f"/again-{run}/new-{n}.jpg", serve=later) for n in range(8)]
    rows += "".join(f"{n + 9},New {n},{url}\n" for n, url in enumerate(held))
    again = multipart_upload(embedded_service.base_url, HEADER + rows).json()["request_id"]
    page.goto(f"{embedded_service.base_url}/requests/{again}/")

    # Then while it runs, the counts under the bar tell the re-used apart
    try:
        expect(page.locator("#progress-text")).to_have_text(
            "0 compressed, 8 re-used unchanged, 0 failed, 8 to go", timeout=30_000
        )
    finally:
        released.set()

    # And once it has finished too
    expect(page.locator("#status")).to_have_text("Completed", timeout=60_000)
    expect(page.locator("#progress-text")).to_have_text(
        "8 compressed, 8 re-used unchanged, 0 failed, 0 to go"
    )
    assert console_errors == []


@pytest.mark.e2e
def test_a_file_past_the_limit_is_refused_before_it_is_sent(
    embedded_service: Service, logged_in: Page
) -> None:
    """The service refused it only once all of it had arrived: 13 s of a 12 MB file on a
    slow line, with the limit said nowhere on the page."""
    page = logged_in
    sent: list[str] = []
    page.on("request", lambda request: sent.append(request.url))
    page.goto(embedded_service.base_url + "/")
    expect(page.locator("#upload-heading + p")).to_contain_text("up to 10 MB and 10,000 products")

    # When a person drops a file one byte past the limit and uploads it
    dropped = page.evaluate_handle(
        """size => {
            const transfer = new DataTransfer();
            transfer.items.add(new File([new Uint8Array(size)], "big.csv", {type: "text/csv"}));
            return transfer;
        }""",
        10 * 1024 * 1024 + 1,
    )
    page.dispatch_event("#drop-zone", "drop", {"dataTransfer": dropped})
    page.get_by_role("button", name="Upload and start").click()

    # Then it is told at once, and nothing went to the service
    expect(page.get_by_role("alert")).to_contain_text(
        "The file is larger than the limit of 10,485,760 bytes"
    )
    assert not [url for url in sent if "/api/upload/" in url]


@pytest.mark.e2e
def test_a_refused_setting_is_named_as_the_form_labels_it(
    embedded_service: Service, logged_in: Page, tmp_path: Path
) -> None:
    """The problems' table named the API's field: "webhook_url", under "Column"."""
    page = logged_in
    source = tmp_path / "products.csv"
    source.write_text(HEADER + "1,Lamp,https://shop.example/a.jpg\n")
    page.goto(embedded_service.base_url + "/")
    page.get_by_label("Drop a CSV here, or pick one").set_input_files(source)
    page.get_by_label("Webhook URL (optional)").fill("https://10.0.0.1/hooks")
    page.get_by_role("button", name="Upload and start").click()
    expect(page.locator(".problems-table tbody tr td").nth(1)).to_have_text(
        "Webhook URL (optional)"
    )


@pytest.mark.e2e
def test_a_dropped_invalid_csv_shows_every_problem_by_row_and_column(
    embedded_service: Service, logged_in: Page, console_errors: list[str]
) -> None:
    page = logged_in
    # Given a CSV with a repeated serial number, an empty name and a URL that is not http(s)
    text = HEADER + (
        "1,Lamp,https://shop.example/a.jpg\n"
        "1,Chair,https://shop.example/b.jpg\n"
        "4,,ftp://shop.example/c.jpg\n"
    )

    # When a person drops it on the page and uploads it
    page.goto(embedded_service.base_url + "/")
    dropped = page.evaluate_handle(
        """text => {
            const transfer = new DataTransfer();
            transfer.items.add(new File([text], "bad.csv", {type: "text/csv"}));
            return transfer;
        }""",
        text,
    )
    page.dispatch_event("#drop-zone", "drop", {"dataTransfer": dropped})
    expect(page.locator("#drop-label")).to_have_text("bad.csv")
    page.get_by_role("button", name="Upload and start").click()

    # Then every problem is listed with its row and column, and nothing was uploaded
    expect(page.get_by_role("alert")).to_contain_text("Invalid CSV.")
    rows = page.locator(".problems-table tbody tr")
    expect(rows).to_have_count(3)
    assert [row.locator("td").all_inner_texts() for row in rows.all()] == [
        ["3", "S. No.", "S. No. 1 is already used on row 2."],
        ["4", "Product Name", "Product Name is empty."],
        ["4", "Input Image Urls", "'ftp://shop.example/c.jpg' is not an absolute http(s) URL."],
    ]
    expect(page).to_have_url(embedded_service.base_url + "/")
    # Chromium logs every 4xx answer to fetch() in the console; that 400 is the API's
    # answer, which the page shows. Nothing else may be there.
    assert console_errors == [
        "Failed to load resource: the server responded with a status of 400 (Bad Request)"
    ]


@pytest.mark.e2e
def test_a_request_page_and_the_list_of_requests_fit_a_phone_screen(
    embedded_service: Service, origin: Origin, logged_in: Page, console_errors: list[str]
) -> None:
    page = logged_in
    # Given a finished request, on a phone 360 pixels wide
    page.set_viewport_size({"width": 360, "height": 740})
    page.goto(embedded_service.base_url + "/")
    page.get_by_label("Drop a CSV here, or pick one").set_input_files(
        {"name": "p.csv", "mimeType": "text/csv", "buffer": products_csv(origin).encode()}
    )
    page.get_by_role("button", name="Upload and start").click()
    expect(page.locator("#status")).to_have_text("Completed", timeout=60_000)

    # Then nothing is wider than the screen, on the request's page or the list of requests
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    page.goto(embedded_service.base_url + "/")
    expect(page.locator("table.recent")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    # and each request's last column is on the screen, not scrolled out of sight
    assert right_edge(page.locator("table.recent td")) <= 360
    assert console_errors == []


def right_edge(cells: Locator) -> float:
    """Where the rightmost of the cells ends, in pixels from the page's left."""
    edges = cells.evaluate_all("cells => cells.map(cell => cell.getBoundingClientRect().right)")
    return float(max(edges))


@pytest.mark.e2e
def test_a_person_makes_a_key_on_the_account_page_and_revokes_it_and_the_api_follows(
    embedded_service: Service, logged_in: Page, console_errors: list[str]
) -> None:
    page = logged_in
    page.set_viewport_size({"width": 360, "height": 740})

    def api_status(key: str) -> int:
        answer = urllib3.request(
            "GET",
            embedded_service.base_url + "/api/requests/",
            headers={"Authorization": f"Bearer {key}"},
        )
        return int(answer.status)

    # Given the account page, reached from the header
    page.get_by_role("link", name="tests", exact=True).click()
    expect(page.get_by_role("heading", name="API keys")).to_be_visible()
    # When a person makes a key, it is shown once and the API takes it
    page.get_by_label("Label (what the key is for)").fill("from the browser")
    page.get_by_role("button", name="Make a key").click()
    key = page.locator("#new-key").inner_text()
    assert api_status(key) == 200
    # and Copy puts the whole key on the clipboard (a double-click selected the part after
    # its dot alone, which is no key); a double-click selects it whole too
    page.context.grant_permissions(
        ["clipboard-read", "clipboard-write"], origin=embedded_service.base_url
    )
    page.get_by_role("button", name="Copy").click()
    expect(page.get_by_text("Copied.")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == key
    page.evaluate("window.getSelection().removeAllRanges()")
    page.locator("#new-key").dblclick()
    assert page.evaluate("window.getSelection().toString()") == key
    # and where the clipboard is refused (plain http), Copy selects the whole key
    page.evaluate(
        """() => {
            navigator.clipboard.writeText = () => Promise.reject(new Error("refused"));
            window.getSelection().removeAllRanges();
            document.querySelector("[data-copied-for]").textContent = "";
        }"""
    )
    page.get_by_role("button", name="Copy").click()
    expect(page.locator("[data-copied-for]")).not_to_be_empty()
    assert page.evaluate("window.getSelection().toString()") == key
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    # and every column of the keys is on the screen, its last use a date and time now
    page.goto(embedded_service.base_url + "/account/")
    assert right_edge(page.locator("table.keys td")) <= 360
    # And revoked after confirming, the API refuses it (each web process within 10 s)
    page.get_by_role("row", name=re.compile("from the browser")).get_by_role(
        "link", name="Revoke…"
    ).click()
    page.get_by_role("button", name="Revoke it").click()
    expect(page.get_by_role("row", name=re.compile("from the browser"))).to_contain_text("revoked")
    deadline = time.monotonic() + 15
    while api_status(key) != 401:
        assert time.monotonic() < deadline, "the revoked key is still taken"
        time.sleep(0.2)
    # The secret is shown on request, and rotated after confirming
    page.get_by_text("Show the secret").click()
    before = page.locator("#webhook-secret").inner_text()
    assert before.startswith("whsec_")
    page.get_by_role("link", name="Rotate the secret…").click()
    page.get_by_role("button", name="Rotate it").click()
    page.get_by_text("Show the secret").click()
    expect(page.locator("#webhook-secret")).not_to_have_text(before)
    expect(page.get_by_text("The previous secret signs too until")).to_be_visible()
    assert console_errors == []


@pytest.mark.e2e
def test_a_visitor_logs_in_sees_only_their_accounts_requests_and_logs_out(
    embedded_service: Service, origin: Origin, page: Page, console_errors: list[str]
) -> None:
    # Given a request of the person's account and one of another account
    service = embedded_service
    ours = multipart_upload(service.base_url, products_csv(origin)).json()["request_id"]
    other_key = service.manage("apikey", "create", "--account", "other-shop").splitlines()[-1]
    theirs = urllib3.request(
        "POST",
        f"{service.base_url}/api/upload/",
        fields={"file": ("p.csv", products_csv(origin).encode(), "text/csv")},
        headers={"Authorization": f"Bearer {other_key}"},
    ).json()["request_id"]
    username = service.person(password="a-long-enough-secret-9")

    # When a visitor opens the page, they are sent to log in
    page.goto(service.base_url + "/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/$"))
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill("a wrong password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("enter a correct username and password")
    page.get_by_label("Password").fill("a-long-enough-secret-9")
    page.get_by_role("button", name="Log in").click()

    # Then the home page lists their account's request and not the other's
    expect(page).to_have_url(service.base_url + "/")
    expect(page.locator("table.recent")).to_contain_text(ours)
    assert theirs not in page.content()
    # and the other's request page is not found
    page.goto(f"{service.base_url}/requests/{theirs}/")
    expect(page.locator("h1")).to_contain_text("not found")

    # When they log out, the page asks them to log in again
    page.goto(service.base_url + "/")
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/login/$"))
    expect(page.get_by_role("status")).to_have_text("You are logged out.")
    page.goto(service.base_url + "/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/$"))
    # Chromium logs the other's page's 404 in the console; nothing else may be there.
    assert console_errors == [
        "Failed to load resource: the server responded with a status of 404 (Not Found)"
    ]


@pytest.mark.e2e
def test_times_are_shown_in_the_readers_own_zone_with_utc_kept_in_the_title(
    embedded_service: Service, origin: Origin, browser: Browser
) -> None:
    """They read UTC, which a reader in Kolkata had to add five and a half hours to."""
    # Given a request, and a reader whose browser is set to Kolkata's time
    request_id = multipart_upload(embedded_service.base_url, products_csv(origin)).json()[
        "request_id"
    ]
    context = browser.new_context(timezone_id="Asia/Kolkata", locale="en-GB")
    page = context.new_page()
    page.goto(embedded_service.login_link(embedded_service.person()))
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(embedded_service.base_url + "/")

    # Then the list and the request's page give its upload time in that zone
    row = page.locator("table.recent tr", has_text=request_id).locator("time")
    status = urllib3.request(
        "GET",
        f"{embedded_service.base_url}/api/status/{request_id}/",
        headers={"Authorization": f"Bearer {embedded_service.api_key}"},
    ).json()
    uploaded = datetime.fromisoformat(status["created_at"].replace("Z", "+00:00"))
    local = uploaded.astimezone(ZoneInfo("Asia/Kolkata"))
    expect(row).to_have_text(re.compile(rf"{local:%H:%M} GMT\+5:30$"))
    assert row.get_attribute("title") == f"{uploaded:%Y-%m-%d %H:%M} UTC"
    page.goto(f"{embedded_service.base_url}/requests/{request_id}/")
    expect(page.locator("time").first).to_have_text(re.compile(rf"{local:%H:%M:%S} GMT\+5:30$"))
    context.close()


# --- Without a browser: what the server renders ------------------------------------------


def stored_request(account: Account, rows: str, **options: Any) -> ProcessingRequest:
    """A request of the account over rows (after the header), stored and not started."""
    return intake.request_create(
        account=account,
        csv_data=(HEADER + rows).encode(),
        public_base_url="http://testserver",
        **options,
    )


@pytest.mark.django_db
def test_an_unknown_request_page_is_a_404_page(member_client: Client) -> None:
    response = member_client.get(f"/requests/{uuid.uuid4()}/")
    assert response.status_code == 404
    assert b"Request not found" in response.content


@pytest.mark.django_db
def test_the_output_csv_of_a_request_not_finished_or_unknown_is_a_page_that_says_so(
    member_client: Client, account: Account
) -> None:
    running = stored_request(account, "1,Lamp,https://example.com/a.jpg\n")
    response = member_client.get(f"/requests/{running.pk}/output.csv", follow=True)
    assert response.redirect_chain == [(f"/requests/{running.pk}/", 302)]
    assert b"The request has no output CSV: it is not finished, or failed." in response.content
    assert member_client.get(f"/requests/{uuid.uuid4()}/output.csv").status_code == 404


@pytest.mark.django_db
def test_a_request_that_failed_as_a_whole_offers_to_finish_again_not_to_retry_no_image(
    member_client: Client, account: Account
) -> None:
    """Its button read "Retry the 0 images not compressed", as though it would do nothing."""
    # Given a request whose every image succeeded, failed as a whole (its output CSV could
    # not be written), and one with an image failed
    whole = stored_request(account, "1,Lamp,https://shop.example/a.jpg\n")
    ProductImage.objects.filter(request=whole).update(status="succeeded")
    ProcessingRequest.objects.filter(pk=whole.pk).update(
        status="failed", error="The storage refused the output CSV."
    )
    one = stored_request(account, "1,Lamp,https://shop.example/b.jpg\n")
    ProductImage.objects.filter(request=one).update(status="failed", error_code="http_404")
    ProcessingRequest.objects.filter(pk=one.pk).update(
        status="completed_with_errors", failed_images=1
    )

    # When each page is opened
    finished_again = member_client.get(f"/requests/{whole.pk}/").content.decode()
    retried = member_client.get(f"/requests/{one.pk}/").content.decode()

    # Then the first offers to finish it again, the second to retry its image
    assert ">Finish it again: write its output CSV anew</button>" in finished_again
    assert "Retry the 0" not in finished_again
    assert ">Retry the 1 image not compressed</button>" in retried


@pytest.mark.django_db
def test_the_upload_form_ticks_score_every_output_where_the_service_scores_all(
    member_client: Client, settings: Any
) -> None:
    # Given a service that scores every output, the box starts ticked
    settings.IMAGE_SCORE_ALL_MODES = True
    ticked = '<input type="checkbox" name="score" value="true" checked>'
    assert ticked in member_client.get("/").content.decode()

    # And an unticked box still says so: the form sends false before the box's true
    page = member_client.get("/").content.decode()
    assert page.index('<input type="hidden" name="score" value="false">') < page.index(ticked)

    # And where the service does not, it starts unticked
    settings.IMAGE_SCORE_ALL_MODES = False
    assert ticked not in member_client.get("/").content.decode()


@pytest.mark.django_db
def test_pages_allow_scripts_only_from_the_site(member_client: Client, account: Account) -> None:
    stored_request(account, "1,Lamp,https://shop.example/a.jpg\n")
    response = member_client.get("/")
    assert response.status_code == 200
    assert "default-src 'self'" in response["Content-Security-Policy"]
    assert b"<script>" not in response.content  # inline scripts would be refused


@pytest.mark.django_db
def test_a_link_cut_short_is_a_page_not_found_page_and_the_api_still_answers_json(
    member_client: Client,
) -> None:
    page = member_client.get("/requests/5b0c-cut-short/", HTTP_ACCEPT="text/html")
    api = member_client.get("/api/nowhere/", HTTP_ACCEPT="text/html,application/json")

    assert page.status_code == api.status_code == 404
    assert b"<h1>Page not found</h1>" in page.content
    assert b"<code>/requests/5b0c-cut-short/</code>" in page.content
    assert api.json() == {"error": "Not found.", "code": "not_found"}


def test_a_server_error_is_a_page_for_a_browser_and_json_for_the_api(rf: Any) -> None:
    """A page's 500 was the API's JSON, shown raw in the browser."""
    page = server_error_view(rf.get("/requests/5b0c/", HTTP_ACCEPT="text/html"))
    api = server_error_view(rf.get("/api/status/5b0c/", HTTP_ACCEPT="text/html"))
    assert page.status_code == api.status_code == 500
    assert b"<h1>Something went wrong</h1>" in page.content
    assert json.loads(api.content) == {"error": "Internal server error.", "code": "server_error"}


@pytest.mark.django_db
def test_the_rerun_form_offers_the_upload_forms_choices_in_the_same_words(
    member_client: Client, account: Account
) -> None:
    request = stored_request(
        account, "1,Lamp,https://shop.example/a.jpg\n", output_format="webp", score=True
    )
    home = member_client.get("/").content.decode()
    page = member_client.get(f"/requests/{request.pk}/").content.decode()

    for words in (
        "As the source (JPEG, WebP, AVIF stay so; others JPEG, or WebP where transparent; "
        "a PNG, GIF or BMP kept where smaller)",
        "AVIF (smallest, slower)",
        "Keep the credits (artist, copyright, credit line)",
    ):
        assert words in home
        assert words in page
    assert '<option value="webp" selected>WebP</option>' in page
    assert "· as WebP ·" in " ".join(page.split())  # the menu's name, not "WEBP"
    assert '<input type="checkbox" name="score" value="true" checked>' in page
    assert "· every output scored" in page


@pytest.mark.django_db
def test_the_upload_form_comes_set_to_the_services_own_quality_defaults(
    member_client: Client, settings: Any
) -> None:
    """The form said "None: the quality above for every image" and sent no mode: where
    IMAGE_QUALITY_MODE was perceptual, that upload was perceptual."""
    settings.IMAGE_QUALITY_MODE, settings.IMAGE_QUALITY_TARGET = "perceptual", "high"
    settings.IMAGE_QUALITY = 60
    home = " ".join(member_client.get("/").content.decode().split())
    chosen = re.findall(r'<option value="([^"]*)" selected>', home)
    assert chosen == ["perceptual:high", "same", "strip"]
    assert "Perceptual target high (SSIMULACRA2 80; else the quality above)" in home
    assert 'name="quality" min="1" max="95" placeholder="60"' in home


@pytest.mark.django_db
def test_the_upload_form_comes_set_to_the_services_own_metadata_mode(
    member_client: Client, settings: Any
) -> None:
    """The Metadata menu came set to "None" whatever IMAGE_METADATA said: where the service
    kept the credits, every upload from the page sent metadata=strip."""
    # Given a service that keeps the credits where a request does not say
    settings.IMAGE_METADATA = "copyright"

    # When the person opens the upload page, then the menu comes set to keep them
    home = " ".join(member_client.get("/").content.decode().split())
    metadata_menu = home[home.index('<select name="metadata">') :]
    chosen = re.findall(r'<option value="([^"]*)" selected>', metadata_menu)
    assert chosen == ["copyright"]

    # And where it strips them, to strip
    settings.IMAGE_METADATA = "strip"
    home = " ".join(member_client.get("/").content.decode().split())
    assert re.findall(r'<option value="([^"]*)" selected>', home)[-1] == "strip"


@pytest.mark.django_db
def test_the_upload_form_says_how_many_of_the_accounts_images_may_be_pending(
    member_client: Client, account: Account, settings: Any
) -> None:
    """An upload past ACCOUNT_MAX_PENDING_IMAGES was a 429 with nothing on the page to say
    the account's limits, or how near it was to them."""
    # Given an account with a request of three images under way, one of them ended, and
    # a finished one, which counts for nothing
    settings.ACCOUNT_MAX_PENDING_IMAGES = 5_000
    settings.ACCOUNT_UPLOAD_RATE_LIMIT = "30/minute"
    rows = '1,P,https://shop.example/1.jpg\n2,Q,"https://shop.example/2.jpg,https://shop.example/3.jpg"\n'
    running = stored_request(account, rows)
    ProcessingRequest.objects.filter(pk=running.pk).update(succeeded_images=1)
    finished = stored_request(account, "1,P,https://shop.example/4.jpg\n")
    ProcessingRequest.objects.filter(pk=finished.pk).update(status="completed")

    # When the person opens the upload page, then it says so beside the form
    home = " ".join(member_client.get("/").content.decode().split())
    assert (
        f'<p id="account-limits" class="detail">2 of 5,000 images pending for {account.name}: '
        "an upload, re-run or retry that would pass 5,000 is refused until some have finished. "
        "The account may send 30 CSVs a minute (uploads and re-runs).</p>" in home
    )
    # and a limit of a day, in the words of the page, alone where the other is off
    settings.ACCOUNT_MAX_PENDING_IMAGES = 0
    settings.ACCOUNT_UPLOAD_RATE_LIMIT = "1000/day"
    assert (
        '<p id="account-limits" class="detail">The account may send 1,000 CSVs a day '
        "(uploads and re-runs).</p>" in member_client.get("/").content.decode()
    )
    # and with neither limit set, it says nothing of them
    settings.ACCOUNT_MAX_PENDING_IMAGES = 0
    settings.ACCOUNT_UPLOAD_RATE_LIMIT = ""
    assert 'id="account-limits"' not in member_client.get("/").content.decode()


@pytest.mark.django_db
def test_a_cancelled_requests_bar_shows_what_was_processed_and_its_webhook_is_shown(
    member_client: Client, account: Account
) -> None:
    request = stored_request(
        account,
        "".join(f"{n},P{n},https://shop.example/{n}.jpg\n" for n in range(1, 5)),
        webhook_url="https://hooks.shop.example/images",
    )
    ProcessingRequest.objects.filter(pk=request.pk).update(
        status="cancelled", succeeded_images=1, cancelled_images=3
    )
    ProductImage.objects.filter(request=request).exclude(input_url__endswith="/1.jpg").update(
        status="cancelled", error_code="cancelled", error_message=CANCELLED.message
    )

    page = member_client.get(f"/requests/{request.pk}/").content.decode()

    assert 'class="bar bar-stopped"' in page
    assert 'aria-valuenow="25"' in page  # one image of four, not a full bar
    assert "Webhook to <code>https://hooks.shop.example/images</code>" in page
    # each cancelled image says why once, not in the advice and again in its message
    assert page.count("The request was cancelled before this image was processed.") == 3
    assert CANCELLED.message not in page


@pytest.mark.django_db
def test_a_cancel_that_came_after_every_image_had_started_is_still_told(
    member_client: Client, account: Account
) -> None:
    """The request ends as its images did, completed, and the page had no word of the
    cancel: its owner could think it had been lost."""
    request = stored_request(account, "1,P1,https://shop.example/1.jpg\n")
    asked = timezone.now()
    ProcessingRequest.objects.filter(pk=request.pk).update(
        status="completed", succeeded_images=1, cancel_requested_at=asked, finished_at=asked
    )

    page = " ".join(member_client.get(f"/requests/{request.pk}/").content.decode().split())

    when = asked.strftime("%Y-%m-%d %H:%M:%S")
    assert f"{when} UTC</time>, after every image had started: each ran to its end." in page
    assert "Cancelling:" not in page


@pytest.mark.django_db
def test_a_webhook_sent_to_the_services_own_address_is_shown_without_it(
    member_client: Client, account: Account, settings: Any
) -> None:
    """The status API showed its delivery; the page showed nothing, as if none were made."""
    settings.WEBHOOK_URL = "https://hooks.operator.example/all"
    request = stored_request(account, "1,P1,https://shop.example/1.jpg\n")
    ProcessingRequest.objects.filter(pk=request.pk).update(status="completed", succeeded_images=1)
    request.refresh_from_db()
    webhooks.webhook_schedule(request=request)

    page = member_client.get(f"/requests/{request.pk}/").content.decode()

    assert "Webhook (the service's own): sending" in page
    assert "hooks.operator.example" not in page


@pytest.mark.django_db
def test_a_finished_request_is_deleted_from_its_page_after_a_confirmation(
    member_client: Client,
    account: Account,
    settings: Any,
    tmp_path: Path,
    django_capture_on_commit_callbacks: Any,
) -> None:
    # Given a finished request with an output CSV in storage, and one still under way
    settings.MEDIA_ROOT = tmp_path
    finished = stored_request(account, "1,Lamp,https://shop.example/a.jpg\n")
    ProcessingRequest.objects.filter(pk=finished.pk).update(
        status="completed", finished_at=timezone.now()
    )
    csv_file = tmp_path / "output_images" / str(finished.pk) / "output.csv"
    csv_file.parent.mkdir(parents=True)
    csv_file.write_text("S. No.\n")
    running = stored_request(account, "1,Lamp,https://shop.example/a.jpg\n")
    # The request's page offers it; asking shows what goes and deletes nothing
    assert 'id="delete-link"' in member_client.get(f"/requests/{finished.pk}/").content.decode()
    asked = member_client.get(f"/requests/{finished.pk}/delete/")
    assert asked.status_code == 200
    assert "This cannot be undone." in asked.content.decode()
    assert csv_file.exists()
    # A form from elsewhere, without the page's token, deletes nothing either
    assert member_client.post(f"/requests/{finished.pk}/delete/").status_code == 403
    assert csv_file.exists()

    # When the person confirms
    token = str(asked.context["csrf_token"])
    with django_capture_on_commit_callbacks(execute=False) as queued:
        deleted = member_client.post(
            f"/requests/{finished.pk}/delete/", {"csrfmiddlewaretoken": token}, follow=True
        )

    # Then the list of requests says so and marks it; its page is a 410
    assert deleted.redirect_chain == [("/", 302)]
    text = " ".join(deleted.content.decode().split())
    assert f"Request {finished.pk} deleted: its outputs, output CSV and products are going" in text
    assert "(deleted)" in text
    # And the workers are asked to delete its files, which go
    assert queued == [QueuedTask(queue.RESULTS_DELETE, (str(finished.pk),))]
    tasks.results_delete(str(finished.pk))
    assert not csv_file.exists()
    gone = member_client.get(f"/requests/{finished.pk}/")
    assert gone.status_code == 410
    assert "at the account's request" in gone.content.decode()
    # And a request under way is not offered, nor deleted by a crafted GET or POST
    assert 'id="delete-link"' not in member_client.get(f"/requests/{running.pk}/").content.decode()
    assert member_client.get(f"/requests/{running.pk}/delete/").status_code == 302
    member_client.post(f"/requests/{running.pk}/delete/", {"csrfmiddlewaretoken": token})
    running.refresh_from_db()
    assert running.expired_at is None


@pytest.mark.django_db
def test_a_big_requests_failed_images_are_listed_alone_a_page_at_a_time(
    member_client: Client, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its few failures were somewhere on its hundred pages: ?status=failed was ignored."""
    # Given a request of five products, two a page, whose 1st, 3rd and 5th images failed
    monkeypatch.setattr(pages, "PRODUCTS_PER_PAGE", 2)
    request = stored_request(
        account, "".join(f"{n},P{n},https://shop.example/{n}.jpg\n" for n in range(1, 6))
    )
    ProcessingRequest.objects.filter(pk=request.pk).update(
        status="completed_with_errors", succeeded_images=2, failed_images=3
    )
    failed = [f"https://shop.example/{n}.jpg" for n in (1, 3, 5)]
    images = ProductImage.objects.filter(request=request)
    images.filter(input_url__in=failed).update(status="failed", error_code="http_404")
    images.exclude(input_url__in=failed).update(status="succeeded")

    # When the person follows the link beside the counts
    page = member_client.get(f"/requests/{request.pk}/").content.decode()
    assert '<a href="?status=failed">Show the 3 failed</a>' in page
    first = member_client.get(f"/requests/{request.pk}/?status=failed").content.decode()

    # Then the products with a failed image alone are listed, paged, the filter kept
    def names(html: str) -> list[str]:
        return re.findall(r'<span class="serial">\d+</span> (P\d)</h3>', html)

    assert names(first) == ["P1", "P3"]
    assert 'Products with a failed image <span class="count">(3)</span>' in first
    assert '<a href="?status=failed&amp;page=2">Next</a>' in first
    second = member_client.get(f"/requests/{request.pk}/?status=failed&page=2").content.decode()
    assert names(second) == ["P5"]
    assert '<a href="?status=failed&amp;page=1">Previous</a>' in second
    # and every product is a link away
    assert '<a href="?">Show every product</a>' in first


@pytest.mark.django_db
def test_a_requests_products_are_filtered_by_every_image_status_the_api_takes(
    member_client: Client, account: Account, api_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """?status=cancelled listed every product, as did any status but failed: the products
    API takes them all."""
    # Given a request of five products, two a page: the 1st, 3rd and 5th images cancelled,
    # the 2nd failed, the 4th succeeded
    monkeypatch.setattr(pages, "PRODUCTS_PER_PAGE", 2)
    request = stored_request(
        account, "".join(f"{n},P{n},https://shop.example/{n}.jpg\n" for n in range(1, 6))
    )
    images = ProductImage.objects.filter(request=request)
    cancelled = [f"https://shop.example/{n}.jpg" for n in (1, 3, 5)]
    images.filter(input_url__in=cancelled).update(status="cancelled", error_code="cancelled")
    images.filter(input_url__endswith="/2.jpg").update(status="failed", error_code="http_404")
    images.filter(input_url__endswith="/4.jpg").update(status="succeeded")
    url = f"/requests/{request.pk}/"

    def names(html: str) -> list[str]:
        return re.findall(r'<span class="serial">\d+</span> (P\d)</h3>', html)

    def api_names(query: str) -> list[str]:
        answer = Client().get(
            f"/api/requests/{request.pk}/products/?{query}",
            HTTP_AUTHORIZATION=f"Bearer {api_key}",
        )
        assert answer.status_code == 200
        return [product["product_name"] for product in answer.json()["results"]]

    # When the person picks "Cancelled" among the filters above the products
    every = member_client.get(url).content.decode()
    assert '<a href="?" aria-current="true">All</a>' in every
    assert '<a href="?status=cancelled">Cancelled</a>' in every
    first = member_client.get(f"{url}?status=cancelled").content.decode()

    # Then the products with a cancelled image alone are listed, as the API lists them,
    # paged with the filter kept, the choice shown
    assert names(first) == ["P1", "P3"]
    assert '<a href="?status=cancelled" aria-current="true">Cancelled</a>' in first
    assert 'Products with a cancelled image <span class="count">(3)</span>' in first
    assert '<a href="?status=cancelled&amp;page=2">Next</a>' in first
    second = member_client.get(f"{url}?status=cancelled&page=2").content.decode()
    assert names(second) == ["P5"]
    assert '<a href="?status=cancelled&amp;page=1">Previous</a>' in second
    # and every status the API takes, comma-separated or given twice, means what it does there
    for query, listed in [
        ("status=succeeded", ["P4"]),
        ("status=pending", []),
        ("status=failed,succeeded", ["P2", "P4"]),
        ("status=failed&status=succeeded", ["P2", "P4"]),
    ]:
        page = member_client.get(f"{url}?{query}").content.decode()
        assert names(page) == listed == api_names(query)[:2], query
    assert (
        "No products with a pending image."
        in member_client.get(f"{url}?status=pending").content.decode()
    )
    both = member_client.get(f"{url}?status=failed,succeeded").content.decode()
    assert 'Products with a succeeded or failed image <span class="count">(2)</span>' in both

    # And a status that is none is a 400 page that says so, in the API's words
    wrong = member_client.get(f"{url}?status=canceled")
    assert wrong.status_code == 400
    said = " ".join(wrong.content.decode().split())
    assert (
        "<p>Not a status: &#x27;canceled&#x27;. "
        "One of: pending, processing, succeeded, failed, cancelled.</p>" in said
    )
    assert names(said) == []
    assert '<a href="?status=cancelled">Cancelled</a>' in said
    assert member_client.get(f"{url}?status=").status_code == 400


@pytest.mark.django_db
def test_a_requests_page_holds_the_status_apis_etag_of_what_it_shows(
    member_client: Client, account: Account, api_key: str
) -> None:
    """What its script asks the status API with, once the request has finished: a 304
    while nothing has changed, and the page shown anew once something has."""
    request = stored_request(account, "1,P1,https://shop.example/1.jpg\n")
    ProcessingRequest.objects.filter(pk=request.pk).update(
        status="completed_with_errors", failed_images=1, finished_at=timezone.now()
    )
    page = member_client.get(f"/requests/{request.pk}/").content.decode()
    shown = re.search(r'data-status-etag="([^"]*)"', page)
    assert shown is not None
    etag = shown[1].replace("&quot;", '"')

    def status(if_none_match: str = "") -> Any:
        headers = {"Authorization": f"Bearer {api_key}", "If-None-Match": if_none_match}
        return Client().get(f"/api/status/{request.pk}/", headers=headers)

    assert status()["ETag"] == etag
    assert status(etag).status_code == 304
    # and once retried, another
    ProcessingRequest.objects.filter(pk=request.pk).update(status="processing", failed_images=0)
    assert status(etag).status_code == 200


@pytest.mark.django_db
def test_a_big_requests_last_page_is_one_link_away(
    member_client: Client, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only Previous and Next: the last of a 250-page request was 249 clicks, and
    ?page=last (the products API's) showed the first."""
    # Given a request of nine products, two a page
    monkeypatch.setattr(pages, "PRODUCTS_PER_PAGE", 2)
    request = stored_request(
        account, "".join(f"{n},P{n},https://shop.example/{n}.jpg\n" for n in range(1, 10))
    )

    # When its first page is shown, then the last is a link away
    first = member_client.get(f"/requests/{request.pk}/").content.decode()
    assert '<a href="?page=last">Last</a>' in first
    assert ">First</a>" not in first

    # and ?page=last shows the last page, with the first a link away
    last = member_client.get(f"/requests/{request.pk}/?page=last").content.decode()
    assert "Page 5 of 5" in last
    assert re.findall(r'<span class="serial">\d+</span> (P\d)</h3>', last) == ["P9"]
    assert '<a href="?page=1">First</a>' in last
    assert ">Last</a>" not in last


@pytest.mark.django_db
def test_a_request_whose_every_image_failed_has_a_failed_bar_read_out_in_words(
    member_client: Client, account: Account
) -> None:
    """Its full blue bar looked like a success, and said nothing but a number."""
    request = stored_request(
        account, "1,P1,https://shop.example/1.jpg\n2,P2,https://shop.example/2.jpg\n"
    )
    ProcessingRequest.objects.filter(pk=request.pk).update(
        status="completed_with_errors", failed_images=2, finished_at=timezone.now()
    )

    page = member_client.get(f"/requests/{request.pk}/").content.decode()

    assert 'class="bar bar-failed"' in page
    assert 'aria-valuetext="100%: 0 compressed, 2 failed, 0 to go"' in page
    # (the alerts are alerts, not also polite live regions)
    assert '<div id="action-result" role="alert"></div>' in page


@pytest.mark.django_db
def test_the_list_of_requests_names_each_ones_csv_or_what_it_re_ran_and_its_settings(
    member_client: Client, account: Account
) -> None:
    """It showed an id, a date, a status and a count: past requests could not be told
    apart."""
    # Given an upload of "spring shoes.csv" at quality 40, re-run as WebP at a target
    shoes = stored_request(
        account, "1,Shoe,https://shop.example/a.jpg\n", file_name="spring shoes.csv", quality=40
    )
    rerun = intake.request_rerun(
        source=shoes, public_base_url="http://testserver", target="high", output_format="webp"
    )

    # When the person opens the home page
    page = " ".join(member_client.get("/").content.decode().split())

    # Then each row says what it was made from, and its settings in short
    rows = re.findall(r"<tr>(.*?)</tr>", page)[1:]
    assert f'<a href="/requests/{rerun.pk}/"><code>{rerun.pk}</code></a>' in rows[0]
    assert (
        f'<span>re-run of <a href="/requests/{shoes.pk}/"><code>{str(shoes.pk)[:8]}</code>'
        in rows[0]
    )
    assert '<td data-label="Settings">perceptual high · WebP</td>' in rows[0]
    assert f"/requests/{shoes.pk}/" in rows[1]
    assert 'title="spring shoes.csv">spring shoes.csv</span>' in rows[1]
    assert '<td data-label="Settings">quality 40 · same format</td>' in rows[1]
    # and the request's own page names its file
    assert (
        " UTC</time> from spring shoes.csv"
        in member_client.get(f"/requests/{shoes.pk}/").content.decode()
    )


@pytest.mark.django_db
def test_the_list_of_requests_is_filtered_by_status_a_page_at_a_time(
    member_client: Client, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/?status=failed listed every request: the filter the API has was not on the page."""
    # Given three failed requests, two a page, and one completed
    monkeypatch.setattr(pages, "REQUESTS_PER_PAGE", 2)
    made = [
        stored_request(account, "1,P,https://shop.example/a.jpg\n", file_name=f"{n}.csv")
        for n in range(4)
    ]
    ProcessingRequest.objects.filter(pk__in=[row.pk for row in made[:3]]).update(status="failed")
    ProcessingRequest.objects.filter(pk=made[3].pk).update(status="completed")

    def names(html: str) -> list[str]:
        return re.findall(r'title="(\d).csv"', html)

    # When the person picks "Failed" above the list
    home = member_client.get("/").content.decode()
    assert '<a href="?status=failed">Failed</a>' in home
    assert '<a href="?" aria-current="true">All</a>' in home
    first = member_client.get("/?status=failed").content.decode()

    # Then the failed requests alone are listed, newest first, the filter kept on the pages
    assert names(first) == ["2", "1"]
    assert '<a href="?status=failed" aria-current="true">Failed</a>' in first
    assert '<span class="count">(3 failed)</span>' in first
    assert '<a href="?status=failed&amp;page=2" rel="next">Older</a>' in first
    second = member_client.get("/?status=failed&page=2").content.decode()
    assert names(second) == ["0"]
    assert '<a href="?status=failed&amp;page=1" rel="prev">Newer</a>' in second
    # and "last" is the last page, as the API and a request's page take it
    assert names(member_client.get("/?status=failed&page=last").content.decode()) == ["0"]
    # and the statuses the API takes filter alike, comma-separated
    assert names(member_client.get("/?status=completed,cancelled").content.decode()) == ["3"]
    # And a status with no request says so, with the way back to every request
    none = " ".join(member_client.get("/?status=cancelled").content.decode().split())
    assert '<p>No requests cancelled. <a href="?">Show every request</a></p>' in none


def test_the_list_of_requests_says_how_many_of_each_requests_images_were_re_used(
    member_client: Client, account: Account
) -> None:
    """A re-upload that re-used its outputs read "2 of 2" as one made anew did."""
    # Given a request re-uploaded, its two images re-used unchanged, and one made anew
    again = stored_request(account, "1,P,https://shop.example/a.jpg\n", file_name="again.csv")
    ProcessingRequest.objects.filter(pk=again.pk).update(
        status="completed", total_images=2, succeeded_images=2, reused_images=2
    )
    made = stored_request(account, "1,P,https://shop.example/b.jpg\n", file_name="new.csv")
    ProcessingRequest.objects.filter(pk=made.pk).update(status="completed", succeeded_images=1)

    # When the person opens the list, then each row says how many of its images were re-used
    cells = re.findall(
        r'<td data-label="Images">([^<]*)</td>', member_client.get("/").content.decode()
    )
    assert cells == ["1 of 1", "2 of 2 (2 re-used)"]


def test_the_list_of_requests_refuses_a_status_it_does_not_know_saying_so(
    member_client: Client, account: Account
) -> None:
    """/?status=canceled listed every request, as though the filter had been taken: the
    request's page and the API refuse it."""
    stored_request(account, "1,P,https://shop.example/a.jpg\n", file_name="0.csv")

    # When the person asks for a status misspelt, or for none
    wrong = member_client.get("/?status=completed,canceled")
    empty = member_client.get("/?status=")

    # Then the page says which, with the statuses it takes, lists no request, and keeps
    # the upload form and the filters
    assert wrong.status_code == 400
    said = " ".join(wrong.content.decode().split())
    assert "Not a status: &#x27;canceled&#x27;. One of: pending, processing," in said
    assert 'title="0.csv"' not in said
    assert '<a href="?status=cancelled">Cancelled</a>' in said
    assert 'name="file"' in said
    assert empty.status_code == 400
    assert "Empty. One or more of: pending," in empty.content.decode()
