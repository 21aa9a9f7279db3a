"""A catalogue's life in process: the same CSV again served from the first run's outputs,
cancel, retry, re-run and expiry, through the API where a user acts, with the database
and the storage real and only the download stubbed at the net seam (in_process.Downloads).
The same behaviours on the production stack, with real workers and a real origin, are in
test_catalogue_life_e2e.py."""

import codecs
import csv
import errno
import io
import os
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone
from PIL import Image
from prometheus_client import REGISTRY
from rest_framework.test import APIClient

import net
from accounts import services
from accounts.models import Account
from imaging import encode, score
from imaging.metadata import EXIF_ARTIST, EXIF_COPYRIGHT, Credits, credits_of
from processing import expiry, finalize, intake, pipeline, queue, results, sweep, webhooks
from processing.models import (
    ProcessingRequest,
    ProductImage,
    SourceCache,
    SourceOutput,
    WebhookDelivery,
)
from processing.queue import QueuedTask
from processing.selectors import timestamp
from tests.processing.in_process import HEADER, Capture, Downloads, images_of, started
from tests.support import encoded, noisy_photo, photo

pytestmark = pytest.mark.django_db

JPEG = encoded(photo(160, 120), "JPEG", quality=90)
CHANGED = encoded(photo(160, 120, seed=7), "JPEG", quality=90)
# Large enough to be scored on tiles, busy enough to show JPEG's artefacts.
PERCEPTUAL_JPEG = encoded(noisy_photo(640, 480, shapes=150), "JPEG", quality=92)
URLS = [f"https://shop.example/{n}.jpg" for n in range(4)]
ROWS = "".join(f"{n + 1},Lamp {n},{url}\n" for n, url in enumerate(URLS))


@pytest.fixture(autouse=True)
def storage(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = tmp_path
    settings.IMAGE_MAX_ATTEMPTS = 2
    settings.REQUEST_WINDOW_BATCHES, settings.IMAGE_BATCH_SIZE = 1, 2
    settings.IMAGE_BATCH_MAX_SIZE = 2
    return tmp_path


def drain(capture: Capture, callbacks: list[Any]) -> list[QueuedTask]:
    """Run what transactions left for their commit as a worker and the broker would: image
    batches, finalisations and deletions, with what each queues in turn, until none is left, and the
    other callbacks (a file to delete) at once. The other tasks (webhooks), not run."""
    todo, rest = list(callbacks), []
    while todo:
        task = todo.pop(0)
        if not isinstance(task, QueuedTask):
            task()
            continue
        with capture(execute=False) as queued_now:
            if task.name == queue.IMAGES_PROCESS:
                pipeline.images_process(image_ids=task.args[0])
            elif task.name == queue.REQUEST_FINALIZE:
                finalize.request_finalize(request_id=uuid.UUID(task.args[0]))
            elif task.name == queue.RESULTS_DELETE:
                expiry.results_delete(request_id=uuid.UUID(task.args[0]))
            else:
                rest.append(task)
        todo += queued_now
    return rest


def run(account: Account, capture: Capture, rows: str = ROWS, **options: Any) -> ProcessingRequest:
    """A request of rows, started and run to its end."""
    request, batches = started(account, rows, capture, **options)
    drain(capture, [QueuedTask(queue.IMAGES_PROCESS, (batch,)) for batch in batches])
    request.refresh_from_db()
    return request


def start_and_drain(capture: Capture, request: ProcessingRequest) -> None:
    """Run a request that was queued (a re-run) as a worker would, to its end."""
    with capture(execute=False) as started_callbacks:
        intake.request_start(request_id=request.pk)
    drain(capture, list(started_callbacks))


def encodes() -> float:
    return REGISTRY.get_sample_value("imgsvc_image_stage_seconds_count", {"stage": "encode"}) or 0


def ran_and_re_run(capture: Capture, request: ProcessingRequest) -> list[ProcessingRequest]:
    """A stored request run to its end, and a re-run of it at another quality run too."""
    start_and_drain(capture, request)
    rerun = intake.request_rerun(source=request, public_base_url="http://testserver", quality=30)
    start_and_drain(capture, rerun)
    return [request, rerun]


def output_csv_bytes(api: APIClient, request: ProcessingRequest) -> bytes:
    """The request's output CSV as sent, asked for as the schema names it (it was answered
    406)."""
    response = api.get(f"/api/requests/{request.pk}/output.csv", HTTP_ACCEPT="text/csv")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    return b"".join(response.streaming_content)  # type: ignore[attr-defined]


def output_csv(api: APIClient, request: ProcessingRequest) -> list[list[str]]:
    return list(csv.reader(io.StringIO(output_csv_bytes(api, request).decode())))


def listing(request: ProcessingRequest) -> list[tuple[int, str, str]]:
    return [
        (image.product.serial_number, image.product.product_name, image.input_url)
        for image in images_of(request)
    ]


# --- The output CSV ----------------------------------------------------------------------


def test_a_csv_excel_wrote_with_semicolons_and_a_mark_gets_its_output_written_alike(
    downloads: Downloads,
    django_capture_on_commit_callbacks: Capture,
    account: Account,
    api: APIClient,
) -> None:
    # Given the CSV Excel writes where the comma is the decimal mark
    downloads.answers = dict.fromkeys(URLS[:2], JPEG)
    data = (
        codecs.BOM_UTF8
        + (
            f"S. No.;Product Name;Input Image Urls\r\n1;Lamp, brass;{URLS[0]},{URLS[1]}\r\n"
        ).encode()
    )
    request = intake.request_create(
        account=account, csv_data=data, public_base_url="http://testserver"
    )

    # When it has run, and a re-run of it too
    finished = ran_and_re_run(django_capture_on_commit_callbacks, request)

    # Then each output CSV is written as the input was, for Excel to open it the same way
    for body in (output_csv_bytes(api, each) for each in finished):
        header, row, end = body.split(b"\r\n")
        assert header == codecs.BOM_UTF8 + b"S. No.;Product Name;Input Image Urls;Output Image Urls"
        assert end == b""
        serial, name, inputs, outputs = row.decode().split(";")
        assert (serial, name, inputs) == ("1", "Lamp, brass", f"{URLS[0]},{URLS[1]}")
        assert all(url.startswith("http://testserver/media/") for url in outputs.split(","))


def test_a_csv_declaring_its_separator_gets_an_output_csv_declaring_it_too(
    downloads: Downloads,
    django_capture_on_commit_callbacks: Capture,
    account: Account,
    api: APIClient,
) -> None:
    """Read with its "sep=;" line, its output had none: Excel, which needed it, opened the
    output with every row in one column."""
    # Given a CSV whose first line declares its separator, as Excel writes for Excel
    downloads.answers = dict.fromkeys(URLS[:1], JPEG)
    data = f"sep=;\r\nS. No.;Product Name;Input Image Urls\r\n1;Lamp;{URLS[0]}\r\n".encode()
    request = intake.request_create(
        account=account, csv_data=data, public_base_url="http://testserver"
    )

    # When it has run, and a re-run of it too
    finished = ran_and_re_run(django_capture_on_commit_callbacks, request)

    # Then each output CSV declares it first, and is separated by it
    for body in (output_csv_bytes(api, each) for each in finished):
        declared, header, row, end = body.decode().split("\r\n")
        assert (declared, header) == (
            "sep=;",
            "S. No.;Product Name;Input Image Urls;Output Image Urls",
        )
        assert row.startswith(f"1;Lamp;{URLS[0]};http://testserver/media/")
        assert end == ""


def test_a_serial_number_written_with_leading_zeros_is_shown_as_written_everywhere(
    downloads: Downloads,
    django_capture_on_commit_callbacks: Capture,
    account: Account,
    api: APIClient,
    member_client: Client,
) -> None:
    """A shop's "007" came back "7" in its output CSV, the API and the page."""
    # Given a CSV whose S. No. are padded with zeros
    downloads.answers = dict.fromkeys(URLS[:2], JPEG)
    rows = f"007,Lamp,{URLS[0]}\n0010,Shade,{URLS[1]}\n"

    request = intake.request_create(
        account=account, csv_data=(HEADER + rows).encode(), public_base_url="http://testserver"
    )

    # When it has run, and a re-run of it too
    finished = ran_and_re_run(django_capture_on_commit_callbacks, request)

    # Then each output CSV carries them as written
    for each in finished:
        assert [row[0] for row in output_csv(api, each)] == ["S. No.", "007", "0010"]
    # and the products API gives them so beside the number, and the page shows them so
    products = api.get(f"/api/requests/{request.pk}/products/").json()["results"]
    assert [(p["serial_number"], p["serial_text"]) for p in products] == [(7, "007"), (10, "0010")]
    page = member_client.get(f"/requests/{request.pk}/").content.decode()
    assert '<span class="serial">007</span> Lamp' in page


def test_a_status_poll_is_answered_304_until_anything_in_its_body_changes(
    downloads: Downloads,
    django_capture_on_commit_callbacks: Capture,
    account: Account,
    api: APIClient,
) -> None:
    """No ETag: a client polling a request of 10,000 images read the whole body each time
    to learn that nothing had moved."""
    # Given a request under way, its first batch not done
    downloads.answers = dict.fromkeys(URLS, JPEG)
    request, batches = started(account, ROWS, django_capture_on_commit_callbacks)
    url = f"/api/status/{request.pk}/"
    first = api.get(url)
    etag = first["ETag"]
    assert etag.startswith('W/"')

    # When it is asked again with its ETag, then 304, without a body, with the same tag,
    # and without a length: RFC 9110 allows only the 200's, and CommonMiddleware gave it 0
    unchanged = api.get(url, HTTP_IF_NONE_MATCH=etag)
    assert (unchanged.status_code, unchanged.content, unchanged["ETag"]) == (304, b"", etag)
    assert "Content-Length" not in unchanged
    assert "Content-Length" in first
    # as is a HEAD's (HeadWithoutBodyMiddleware gives a HEAD the length of its body)
    headed = api.head(url, HTTP_IF_NONE_MATCH=etag)
    assert (headed.status_code, "Content-Length" in headed) == (304, False)

    # When a batch finishes, then the same ETag gets the new body, and a new tag
    with django_capture_on_commit_callbacks(execute=False):  # the next batch left queued
        pipeline.images_process(image_ids=batches[0])
    moved = api.get(url, HTTP_IF_NONE_MATCH=etag)
    assert moved.status_code == 200
    assert moved.json()["progress"]["succeeded"] == 2
    assert moved["ETag"] != etag
    assert api.get(url, HTTP_IF_NONE_MATCH=f'"x", {moved["ETag"]}').status_code == 304

    # And a change no counter shows (a cancel asked) changes the tag too
    cancelled = api.post(f"/api/requests/{request.pk}/cancel/")
    assert cancelled.status_code == 202
    assert api.get(url, HTTP_IF_NONE_MATCH=moved["ETag"]).status_code == 200


def test_the_output_csv_is_answered_304_until_a_retry_writes_it_anew(
    downloads: Downloads,
    django_capture_on_commit_callbacks: Capture,
    account: Account,
    api: APIClient,
) -> None:
    # Given a finished request whose second source answered 404
    downloads.answers = dict.fromkeys(URLS, JPEG)
    downloads.answers[URLS[1]] = net.NetError("http_404", "The server answered 404.")
    request = run(account, django_capture_on_commit_callbacks)
    url = f"/api/requests/{request.pk}/output.csv"
    first = api.get(url)
    etag = first["ETag"]
    assert b"".join(first.streaming_content).startswith(b"S. No.,")  # type: ignore[attr-defined]

    # When it is downloaded again with its ETag, then 304, without a body or a length
    unchanged = api.get(url, HTTP_IF_NONE_MATCH=etag)
    assert (unchanged.status_code, unchanged.content, unchanged["ETag"]) == (304, b"", etag)
    assert "Content-Length" not in unchanged

    # When the source is fixed and the request retried to its end, then the new CSV
    downloads.answers[URLS[1]] = JPEG
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert api.post(f"/api/requests/{request.pk}/retry/").status_code == 202
    drain(django_capture_on_commit_callbacks, list(callbacks))
    changed = api.get(url, HTTP_IF_NONE_MATCH=etag)
    assert changed.status_code == 200
    assert changed["ETag"] != etag
    body = b"".join(changed.streaming_content)  # type: ignore[attr-defined]
    assert all(row[3] for row in list(csv.reader(io.StringIO(body.decode())))[1:])


# --- Skip what has not changed --------------------------------------------------------


def test_the_same_csv_again_downloads_no_body_encodes_nothing_and_re_uses_every_output(
    downloads: Downloads,
    django_capture_on_commit_callbacks: Capture,
    account: Account,
    api: APIClient,
    storage: Path,
) -> None:
    # Given a first run of a CSV, every source answering with an ETag
    downloads.answers = dict.fromkeys(URLS, JPEG)
    first = run(account, django_capture_on_commit_callbacks)
    assert first.status == "completed"
    assert downloads.bodies_sent == 4
    encoded_before = encodes()

    # When the same CSV is uploaded again
    second = run(account, django_capture_on_commit_callbacks)

    # Then every source answered 304: no body, no encode, every output re-used
    assert second.status == "completed"
    assert downloads.bodies_sent == 4
    assert len(downloads.calls) == 8
    assert encodes() == encoded_before
    images = api.get(f"/api/requests/{second.pk}/products/").json()["results"]
    assert [image["reused"] for product in images for image in product["images"]] == [True] * 4
    # and the status says so, as it says the first run compressed every image
    outputs = {
        run.pk: api.get(f"/api/status/{run.pk}/").json()["outputs"] for run in (first, second)
    }
    assert outputs == {
        first.pk: {"compressed": 4, "reused": 0},
        second.pk: {"compressed": 0, "reused": 4},
    }
    # each output a name of its own, in the second request's folder, the first's bytes
    for old, new in zip(images_of(first), images_of(second), strict=True):
        assert new.output_name.startswith(f"output_images/{second.pk}/")
        assert (storage / new.output_name).read_bytes() == (storage / old.output_name).read_bytes()
        assert (new.width, new.height, new.output_bytes) == (
            old.width,
            old.height,
            old.output_bytes,
        )
    assert all(row[3] for row in output_csv(api, second)[1:])


def test_a_request_whose_batches_a_worker_older_than_the_re_used_count_recorded_ends_counted(
    downloads: Downloads,
    django_capture_on_commit_callbacks: Capture,
    account: Account,
    api: APIClient,
) -> None:
    """A deploy migrates first: workers of the code before went on recording batches that
    added nothing to the count, and the request said every image was compressed."""
    # Given the same CSV again, its batches recorded as such a worker leaves them
    downloads.answers = dict.fromkeys(URLS, JPEG)
    run(account, django_capture_on_commit_callbacks)
    request, batches = started(account, ROWS, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=False) as queued:
        for batch in batches:
            pipeline.images_process(image_ids=batch)
    ProcessingRequest.objects.filter(pk=request.pk).update(reused_images=0)

    # When it finishes
    drain(django_capture_on_commit_callbacks, list(queued))

    # Then it counts what its images' rows say
    assert api.get(f"/api/status/{request.pk}/").json()["outputs"] == {
        "compressed": 0,
        "reused": 4,
    }


def test_a_catalogue_uploaded_again_is_told_how_many_images_were_re_used_and_how_many_new(
    downloads: Downloads,
    django_capture_on_commit_callbacks: Capture,
    account: Account,
    api: APIClient,
    member_client: Client,
) -> None:
    """Only each image's `reused` said it: a re-upload of 10,000 images had to page the
    products to learn how many were new."""
    # Given a first run of a CSV whose last URL two products share
    rows = ROWS + f"5,Lamp 3 again,{URLS[3]}\n"
    downloads.answers = dict.fromkeys(URLS, JPEG)
    run(account, django_capture_on_commit_callbacks, rows=rows)

    # When it is uploaded again, with its first source changed and its second gone
    downloads.answers[URLS[0]] = CHANGED
    downloads.answers[URLS[1]] = net.NetError("http_404", "The server answered 404.")
    again = run(
        account,
        django_capture_on_commit_callbacks,
        rows=rows,
        webhook_url="https://hooks.example/x",
    )

    # Then its status says one image compressed and three re-used (the shared URL's two),
    # beside progress, whose counts still add up to the total
    status = api.get(f"/api/status/{again.pk}/").json()
    assert status["progress"] == {
        "total": 5,
        "succeeded": 4,
        "failed": 1,
        "cancelled": 0,
        "pending": 0,
    }
    assert status["outputs"] == {"compressed": 1, "reused": 3}
    # as its images' rows say, its webhook's event and its row in the list too
    assert sum(image.reused for image in images_of(again)) == 3
    event = WebhookDelivery.objects.get(request=again).payload
    assert event["outputs"] == {"compressed": 1, "reused": 3}
    listed = api.get(f"/api/requests/{again.pk}/").json()
    assert listed["outputs"] == {"compressed": 1, "reused": 3}
    # and its page, under the bar
    page = member_client.get(f"/requests/{again.pk}/").content.decode()
    assert '<p id="progress-text">1 compressed, 3 re-used unchanged, 1 failed, 0 to go</p>' in page

    # When the gone source is back, unchanged, and the failed image is retried
    downloads.answers[URLS[1]] = JPEG
    etag = api.get(f"/api/status/{again.pk}/")["ETag"]
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert api.post(f"/api/requests/{again.pk}/retry/").status_code == 202
    drain(django_capture_on_commit_callbacks, list(callbacks))

    # Then it is counted among the re-used, the others kept, and a poll sees the change
    answer = api.get(f"/api/status/{again.pk}/", HTTP_IF_NONE_MATCH=etag)
    assert answer.status_code == 200
    assert answer.json()["progress"]["succeeded"] == 5
    assert answer.json()["outputs"] == {"compressed": 1, "reused": 4}
    assert sum(image.reused for image in images_of(again)) == 4


def test_re_used_outputs_outlive_the_request_they_came_from_and_are_never_written_through(
    downloads: Downloads,
    django_capture_on_commit_callbacks: Capture,
    account: Account,
    storage: Path,
    settings: Any,
) -> None:
    # Given a first run, and a second that re-used its outputs
    settings.RETENTION_DAYS = 30
    downloads.answers = dict.fromkeys(URLS, JPEG)
    first = run(account, django_capture_on_commit_callbacks)
    second = run(account, django_capture_on_commit_callbacks)
    assert [image.reused for image in images_of(second)] == [True] * 4
    old, new = images_of(first)[0].output_name, images_of(second)[0].output_name
    old_bytes = (storage / old).read_bytes()
    kept = {
        image.output_name: (storage / image.output_name).read_bytes()
        for image in images_of(second)[1:]
    }

    # When an output of the second is written again (a task run again stores its name anew)
    default_storage.save(new, ContentFile(b"written again"))

    # Then the first request's output keeps its bytes
    assert (storage / old).read_bytes() == old_bytes
    assert (storage / new).read_bytes() == b"written again"

    # And when the first request expires, the second's other outputs stay, whole
    ProcessingRequest.objects.filter(pk=first.pk).update(
        finished_at=timezone.now() - timedelta(days=31)
    )
    call_command("expire", stdout=io.StringIO())
    assert not (storage / old).exists()
    assert {name: (storage / name).read_bytes() for name in kept} == kept


def test_where_the_storage_cannot_link_files_re_used_outputs_are_copied(
    downloads: Downloads,
    django_capture_on_commit_callbacks: Capture,
    account: Account,
    storage: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a storage folder on a file system without hard links (faked: os.link refuses,
    # as across devices; no such file system is mounted here)
    def refuse(*_: Any) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", refuse)
    downloads.answers = dict.fromkeys(URLS, JPEG)
    first = run(account, django_capture_on_commit_callbacks)

    # When the same CSV runs again
    second = run(account, django_capture_on_commit_callbacks)

    # Then every output is re-used as a copy of its own
    assert [image.reused for image in images_of(second)] == [True] * 4
    for old, new in zip(images_of(first), images_of(second), strict=True):
        assert (storage / new.output_name).read_bytes() == (storage / old.output_name).read_bytes()
        assert not (storage / new.output_name).samefile(storage / old.output_name)


def test_a_source_found_as_the_cache_says_is_written_again_only_once_its_check_is_old(
    downloads: Downloads, django_capture_on_commit_callbacks: Capture, account: Account
) -> None:
    # Given a first run, whose sources the cache now knows
    downloads.answers = dict.fromkeys(URLS, JPEG)
    run(account, django_capture_on_commit_callbacks)
    checked = dict(SourceCache.objects.values_list("url", "checked_at"))
    assert checked.keys() == set(URLS)

    # When the same CSV runs again within the hour: the rows stay as they are (a re-run
    # writes no cache row it does not have to), and every output is re-used all the same
    second = run(account, django_capture_on_commit_callbacks)
    assert second.status == "completed"
    assert dict(SourceCache.objects.values_list("url", "checked_at")) == checked

    # When their check is older than that, the next run records it anew
    SourceCache.objects.update(checked_at=timezone.now() - timedelta(hours=2))
    third = run(account, django_capture_on_commit_callbacks)
    assert third.status == "completed"
    assert all(
        when > timezone.now() - timedelta(minutes=5)
        for when in SourceCache.objects.values_list("checked_at", flat=True)
    )
    assert SourceOutput.objects.filter(request=third).count() == len(URLS)


def test_a_server_without_etags_sending_the_same_bytes_is_re_used_and_a_changed_one_is_not(
    downloads: Downloads, django_capture_on_commit_callbacks: Capture, account: Account
) -> None:
    # Given a first run against a server that ignores conditional requests
    downloads.conditional = False
    downloads.answers = dict.fromkeys(URLS, JPEG)
    run(account, django_capture_on_commit_callbacks)
    encoded_before = encodes()

    # When one source changed before the second run
    downloads.answers[URLS[0]] = CHANGED
    second = run(account, django_capture_on_commit_callbacks)

    # Then the bodies came again, the three same ones re-used and the changed one encoded
    assert downloads.bodies_sent == 8
    assert encodes() == encoded_before + 1
    assert [image.reused for image in images_of(second)] == [False, True, True, True]

    # And a third run re-uses the changed source's new output
    third = run(account, django_capture_on_commit_callbacks)
    assert [image.reused for image in images_of(third)] == [True] * 4
    assert images_of(third)[0].output_bytes == images_of(second)[0].output_bytes


def test_other_settings_or_another_account_do_not_re_use_an_output(
    downloads: Downloads, django_capture_on_commit_callbacks: Capture, account: Account
) -> None:
    downloads.answers = dict.fromkeys(URLS, JPEG)
    run(account, django_capture_on_commit_callbacks)

    # Another quality: the source is asked again in full (its 304 could not be used)
    other_quality = run(account, django_capture_on_commit_callbacks, quality=70)
    assert [image.reused for image in images_of(other_quality)] == [False] * 4
    assert {image.quality for image in images_of(other_quality)} == {70}

    # Another account knows nothing of this one's sources
    other, _ = services.account_get_or_create(name=f"other-{uuid.uuid4().hex[:8]}")
    theirs = run(other, django_capture_on_commit_callbacks)
    assert [image.reused for image in images_of(theirs)] == [False] * 4
    assert downloads.bodies_sent == 12


def test_a_catalogue_asked_for_as_avif_then_re_run_as_webp_gets_each_and_shares_no_output(
    downloads: Downloads,
    django_capture_on_commit_callbacks: Capture,
    account: Account,
    api: APIClient,
    storage: Path,
) -> None:
    # Given a first run in the formats of the sources (JPEG)
    downloads.answers = dict.fromkeys(URLS, JPEG)
    run(account, django_capture_on_commit_callbacks)

    # When the same CSV is asked for as AVIF
    avif = run(account, django_capture_on_commit_callbacks, output_format="avif")

    # Then every output is an AVIF made anew (the JPEGs were not re-used), in the output
    # CSV, on the products route and on disk
    assert avif.status == "completed"
    images = images_of(avif)
    assert [(image.output_format, image.reused) for image in images] == [("AVIF", False)] * 4
    assert all(image.output_name.endswith(".avif") for image in images)
    assert all((storage / image.output_name).read_bytes()[4:12] == b"ftypavif" for image in images)
    assert all(row[3].endswith(".avif") for row in output_csv(api, avif)[1:])
    listed = api.get(f"/api/requests/{avif.pk}/products/").json()["results"]
    assert {image["output_format"] for product in listed for image in product["images"]} == {"AVIF"}

    # And re-run as WebP from the API, it makes WebPs, keeping the other settings
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = api.post(
            f"/api/requests/{avif.pk}/rerun/", {"output_format": "webp"}, format="json"
        )
    assert response.status_code == 202, response.json()
    webp = ProcessingRequest.objects.get(pk=response.json()["request_id"])
    assert (webp.output_format, webp.quality) == ("webp", avif.quality)
    assert [task.name for task in callbacks] == [queue.REQUEST_START]
    start_and_drain(django_capture_on_commit_callbacks, webp)
    assert {(image.output_format, image.reused) for image in images_of(webp)} == {("WEBP", False)}

    # And the AVIF catalogue again re-uses its AVIFs
    again = run(account, django_capture_on_commit_callbacks, output_format="avif")
    assert {(image.output_format, image.reused) for image in images_of(again)} == {("AVIF", True)}


def test_a_perceptual_request_reports_each_images_quality_score_and_tries(
    downloads: Downloads,
    django_capture_on_commit_callbacks: Capture,
    account: Account,
    api: APIClient,
) -> None:
    # Given a catalogue asked for at the high perceptual target
    downloads.answers = dict.fromkeys(URLS, PERCEPTUAL_JPEG)
    high = run(account, django_capture_on_commit_callbacks, target="high")

    # Then it ran in perceptual mode at the settings' score for high
    assert (high.status, high.quality_mode, high.quality_target) == (
        "completed",
        "perceptual",
        "high",
    )
    assert high.target_score == 80.0
    # and every image says what it was encoded at, how it scored and in how many encodes
    listed = api.get(f"/api/requests/{high.pk}/products/").json()["results"]
    images = [image for product in listed for image in product["images"]]
    for image in images:
        assert image["target_met"] is True, image
        assert image["score"] >= 80
        assert 1 <= image["tries"] <= 6
        assert 1 <= image["quality"] <= 95
    # and the status gives the settings and the scores' 5th percentile and median
    status = api.get(f"/api/status/{high.pk}/").json()
    assert status["settings"] == {
        "quality": 50,
        "quality_mode": "perceptual",
        "target": "high",
        "target_score": 80.0,
        "output_format": "same",
        "metadata": "strip",
        "score": True,
    }
    scores = sorted(image["score"] for image in images)
    assert status["score"] == {"p5": scores[0], "median": scores[1]}

    # When it is re-run at the low target, it is searched again (nothing re-used), smaller
    response = api.post(f"/api/requests/{high.pk}/rerun/", {"target": "low"}, format="json")
    assert response.status_code == 202, response.json()
    low = ProcessingRequest.objects.get(pk=response.json()["request_id"])
    assert (low.quality_mode, low.quality_target, low.target_score) == ("perceptual", "low", 60.0)
    start_and_drain(django_capture_on_commit_callbacks, low)
    low.refresh_from_db()
    assert {image.reused for image in images_of(low)} == {False}
    assert all((image.score or 0) >= 60 for image in images_of(low))
    assert low.output_bytes < high.output_bytes

    # And a re-run at a fixed quality leaves the perceptual mode
    response = api.post(f"/api/requests/{high.pk}/rerun/", {"quality_mode": "fixed"}, format="json")
    fixed = ProcessingRequest.objects.get(pk=response.json()["request_id"])
    assert (fixed.quality_mode, fixed.quality_target, fixed.target_score) == ("fixed", "", None)


def test_fixed_quality_outputs_are_scored_where_the_request_or_the_settings_say(
    downloads: Downloads,
    django_capture_on_commit_callbacks: Capture,
    account: Account,
    settings: Any,
    api: APIClient,
) -> None:
    downloads.answers = dict.fromkeys(URLS, PERCEPTUAL_JPEG)
    unscored = run(account, django_capture_on_commit_callbacks)
    assert {(image.score, image.tries) for image in images_of(unscored)} == {(None, 1)}
    assert (unscored.score_p5, unscored.score_median) == (None, None)

    # A re-run asking for scores gets them, not the unscored outputs copied
    response = api.post(f"/api/requests/{unscored.pk}/rerun/", {"score": True}, format="json")
    assert response.status_code == 202, response.json()
    asked = ProcessingRequest.objects.get(pk=response.json()["request_id"])
    start_and_drain(django_capture_on_commit_callbacks, asked)
    assert {image.reused for image in images_of(asked)} == {False}
    assert None not in {image.score for image in images_of(asked)}
    assert api.get(f"/api/status/{asked.pk}/").json()["settings"]["score"] is True

    # And IMAGE_SCORE_ALL_MODES scores every request that does not say
    settings.IMAGE_SCORE_ALL_MODES = True
    scored = run(account, django_capture_on_commit_callbacks, quality=60)
    scores = {image.score for image in images_of(scored)}
    assert len(scores) == 1
    (score,) = scores
    assert score is not None
    assert 50 < score < 95
    assert (scored.score_p5, scored.score_median) == (score, score)
    assert {image.target_met for image in images_of(scored)} == {None}


def test_a_request_keeping_the_copyright_gets_outputs_with_credits_and_no_gps(
    downloads: Downloads,
    django_capture_on_commit_callbacks: Capture,
    account: Account,
    storage: Path,
) -> None:
    # Given photos whose EXIF names their artist and copyright, beside a GPS position
    exif = Image.Exif()
    exif[EXIF_ARTIST], exif[EXIF_COPYRIGHT] = "Ana Lima", "(C) 2026 Lima Studio"
    exif.get_ifd(0x8825).update({1: "N", 2: (52.0, 22.0, 3.5)})
    downloads.answers = dict.fromkeys(URLS, encoded(photo(320, 240), "JPEG", quality=95, exif=exif))

    # When they are compressed keeping the copyright, then by default
    kept = run(account, django_capture_on_commit_callbacks, metadata="copyright")
    stripped = run(account, django_capture_on_commit_callbacks)

    # Then the first's outputs carry the credits and no GPS; the second's nothing, and
    # were not copied from the first's (other settings)
    assert kept.metadata == "copyright"
    for image in images_of(kept):
        output = (storage / image.output_name).read_bytes()
        with Image.open(io.BytesIO(output)) as opened:
            assert credits_of(opened) == Credits(
                artist="Ana Lima", copyright="(C) 2026 Lima Studio"
            )
            assert not opened.getexif().get_ifd(0x8825)
    for image in images_of(stripped):
        assert not image.reused
        with Image.open(storage / image.output_name) as opened:
            assert credits_of(opened) == Credits()


def test_an_output_made_from_older_bytes_is_not_re_used_after_the_source_changed(
    downloads: Downloads, django_capture_on_commit_callbacks: Capture, account: Account
) -> None:
    # Given a run at quality 50 of the first version of the sources
    downloads.answers = dict.fromkeys(URLS, JPEG)
    run(account, django_capture_on_commit_callbacks)

    # When a source changes and a run at another quality sees the change first
    downloads.answers[URLS[0]] = CHANGED
    at_70 = run(account, django_capture_on_commit_callbacks, quality=70)
    assert [image.reused for image in images_of(at_70)] == [False] * 4

    # Then a later run at 50 encodes the changed source again, and re-uses the others
    encoded_before = encodes()
    at_50 = run(account, django_capture_on_commit_callbacks)
    assert [image.reused for image in images_of(at_50)] == [False, True, True, True]
    assert encodes() == encoded_before + 1


def test_outputs_a_score_shaped_are_made_again_once_the_score_s_rules_change(
    downloads: Downloads,
    django_capture_on_commit_callbacks: Capture,
    account: Account,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a catalogue run at the medium target, at a fixed quality scored, and unscored
    downloads.answers = dict.fromkeys(URLS, PERCEPTUAL_JPEG)
    capture = django_capture_on_commit_callbacks
    for options in ({"target": "medium"}, {"score": True}, {}):
        run(account, capture, **options)
    # each re-used while the score's rules stay the same
    for options in ({"target": "medium"}, {"score": True}):
        assert {image.reused for image in images_of(run(account, capture, **options))} == {True}

    # When the service is upgraded to other rules of the score
    monkeypatch.setattr(score, "VERSION", score.VERSION + 1)

    # Then the perceptual catalogue is searched again (its qualities were the old score's)
    # and the scored one encoded again (its scores were)
    encoded_before = encodes()
    for options in ({"target": "medium"}, {"score": True}):
        again = run(account, capture, **options)
        assert [image.reused for image in images_of(again)] == [False] * 4
    assert encodes() == encoded_before + 8
    # while the unscored outputs, which no score shaped, are re-used
    fixed = run(account, capture)
    assert [image.reused for image in images_of(fixed)] == [True] * 4


def test_no_output_is_re_used_once_the_rules_that_make_outputs_change(
    downloads: Downloads,
    django_capture_on_commit_callbacks: Capture,
    account: Account,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Outputs made by earlier rules may hold what the new ones drop (a kept original's
    GPS): the upgraded service makes them again, once."""
    downloads.answers = dict.fromkeys(URLS, PERCEPTUAL_JPEG)
    capture = django_capture_on_commit_callbacks
    run(account, capture)
    assert {image.reused for image in images_of(run(account, capture))} == {True}

    monkeypatch.setattr(encode, "OUTPUT_RULES", encode.OUTPUT_RULES + 1)

    assert [image.reused for image in images_of(run(account, capture))] == [False] * 4
    assert {image.reused for image in images_of(run(account, capture))} == {True}


# --- Cancel ---------------------------------------------------------------------------


def test_cancel_ends_the_images_not_started_and_the_request_as_cancelled_with_its_csv(
    downloads: Downloads,
    django_capture_on_commit_callbacks: Capture,
    account: Account,
    api: APIClient,
) -> None:
    # Given a request of 4 images in batches of 2, whose first batch has run
    downloads.answers = dict.fromkeys(URLS, JPEG)
    request, batches = started(
        account, ROWS, django_capture_on_commit_callbacks, webhook_url="https://hooks.example/x"
    )
    with django_capture_on_commit_callbacks(execute=False) as after_first:
        pipeline.images_process(image_ids=batches[0])

    # When its owner cancels it
    with django_capture_on_commit_callbacks(execute=False) as after_cancel:
        response = api.post(f"/api/requests/{request.pk}/cancel/")

    # Then the answer is the status, the images not started are cancelled at once
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["cancel_requested_at"] is not None
    assert body["progress"] == {
        "total": 4,
        "succeeded": 2,
        "failed": 0,
        "cancelled": 2,
        "pending": 0,
    }
    assert [image.status for image in images_of(request)] == [
        "succeeded",
        "succeeded",
        "cancelled",
        "cancelled",
    ]
    assert images_of(request)[2].error_code == "cancelled"

    # And the batch queued before the cancel finds nothing to do; the request finishes
    webhooks = drain(django_capture_on_commit_callbacks, [*after_first, *after_cancel])
    assert sorted(downloads.calls) == sorted(URLS[:2])
    request.refresh_from_db()
    assert request.status == "cancelled"
    rows = output_csv(api, request)
    assert [bool(row[3]) for row in rows[1:]] == [True, True, False, False]
    assert [task.name for task in webhooks] == [queue.WEBHOOK_SEND]
    assert WebhookDelivery.objects.get(request=request).payload["status"] == "cancelled"

    # And a finished request cannot be cancelled
    again = api.post(f"/api/requests/{request.pk}/cancel/")
    assert again.status_code == 409
    assert again.json()["code"] == "already_finished"


def test_an_image_failing_after_the_cancel_is_not_retried(
    monkeypatch: pytest.MonkeyPatch,
    downloads: Downloads,
    django_capture_on_commit_callbacks: Capture,
    account: Account,
    api: APIClient,
) -> None:
    # Given a batch whose download will time out (a transient failure), claimed
    downloads.answers = dict.fromkeys(URLS, JPEG)
    downloads.answers[URLS[0]] = net.NetError("timeout", "No answer in time.", transient=True)
    request, batches = started(account, ROWS, django_capture_on_commit_callbacks)

    # When the request is cancelled while that batch runs: just before it records, with
    # the real record wrapped to time the cancel (nothing of it is replaced)
    record = results.images_record

    def cancel_then_record(**kwargs: Any) -> None:
        api.post(f"/api/requests/{request.pk}/cancel/")
        record(**kwargs)

    monkeypatch.setattr(pipeline, "images_record", cancel_then_record)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        pipeline.images_process(image_ids=batches[0])

    # Then the timed-out image ends cancelled, not queued again, and the request ends
    assert [task.name for task in callbacks if task.name == queue.IMAGES_PROCESS] == []
    first = images_of(request)[0]
    assert (first.status, first.error_code) == ("cancelled", "cancelled")
    assert "Not retried" in first.error_message
    drain(django_capture_on_commit_callbacks, list(callbacks))
    request.refresh_from_db()
    assert (request.status, request.succeeded_images, request.cancelled_images) == (
        "cancelled",
        1,
        3,
    )


@pytest.mark.parametrize(("during", "succeeded"), [("encode", 1), ("download", 0)])
def test_a_batch_under_way_ends_its_images_not_processed_yet_once_its_request_is_cancelled(
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    downloads: Downloads,
    django_capture_on_commit_callbacks: Capture,
    account: Account,
    api: APIClient,
    during: str,
    succeeded: int,
) -> None:
    # Given a batch of 2 claimed and running, looking for a cancel before each image and
    # once each download has come, and the request cancelled while its first image
    # encodes, or as its first download comes: the real encoder or wait wrapped to time
    # the cancel (nothing of either is replaced)
    settings.IMAGE_CANCEL_CHECK_SECONDS = 0
    downloads.answers = dict.fromkeys(URLS, JPEG)
    request, batches = started(account, ROWS, django_capture_on_commit_callbacks)
    compress, take = pipeline._compress, pipeline._Work.download_take

    def cancel() -> None:
        assert api.post(f"/api/requests/{request.pk}/cancel/").status_code == 202

    def compress_then_cancel(*args: Any) -> Any:
        compressed = compress(*args)
        cancel()
        return compressed

    def take_then_cancel(item: Any, cancels: Any) -> Any:
        taken = take(item, cancels)
        cancel()
        return taken

    if during == "encode":
        monkeypatch.setattr(pipeline, "_compress", compress_then_cancel)
    else:
        monkeypatch.setattr(pipeline._Work, "download_take", take_then_cancel)
    encoded_before = encodes()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        pipeline.images_process(image_ids=batches[0])

    # Then no image of the batch is encoded after the cancel (in whichever order the batch
    # took them): it ends cancelled, as do the two not claimed, and the request ends
    # cancelled with the outputs made before
    assert encodes() - encoded_before == succeeded
    batch = sorted((image.status, image.error_message) for image in images_of(request)[:2])
    cancelled = ("cancelled", "Cancelled before it was compressed.")
    assert batch == sorted([cancelled] * (2 - succeeded) + [("succeeded", "")] * succeeded)
    assert {image.status for image in images_of(request)[2:]} == {"cancelled"}
    drain(django_capture_on_commit_callbacks, list(callbacks))
    request.refresh_from_db()
    assert (request.status, request.succeeded_images, request.cancelled_images) == (
        "cancelled",
        succeeded,
        4 - succeeded,
    )
    assert sum(row[3] != "" for row in output_csv(api, request)[1:]) == succeeded


# --- Find what failed -----------------------------------------------------------------


def test_the_products_with_a_failed_image_are_listed_alone_page_after_page(
    downloads: Downloads,
    django_capture_on_commit_callbacks: Capture,
    account: Account,
    api: APIClient,
) -> None:
    # Given a finished request whose first and last sources answered 404
    downloads.answers = dict.fromkeys(URLS, JPEG)
    for url in (URLS[0], URLS[3]):
        downloads.answers[url] = net.NetError("http_404", "The server answered 404.")
    request = run(account, django_capture_on_commit_callbacks)
    assert request.failed_images == 2

    # When its owner lists its products with a failed image, one a page
    first = api.get(f"/api/requests/{request.pk}/products/?status=failed&page_size=1").json()
    second = api.get(first["next"]).json()

    # Then those two come, in input order, the filter kept by the next link, each with
    # its images and why they failed
    assert first["count"] == 2
    assert second["next"] is None
    images = [product["images"] for product in (*first["results"], *second["results"])]
    assert [[image["input_url"] for image in each] for each in images] == [[URLS[0]], [URLS[3]]]
    assert {image["error_code"] for each in images for image in each} == {"http_404"}
    # and every product with statuses given together
    both = api.get(f"/api/requests/{request.pk}/products/?status=failed,succeeded").json()
    assert both["count"] == 4


# --- Retry ----------------------------------------------------------------------------


def test_retry_queues_only_what_failed_and_finishes_again_with_a_new_event_and_csv(
    downloads: Downloads,
    django_capture_on_commit_callbacks: Capture,
    account: Account,
    api: APIClient,
    storage: Path,
) -> None:
    # Given a finished request whose second source answered 404
    downloads.answers = dict.fromkeys(URLS, JPEG)
    downloads.answers[URLS[1]] = net.NetError("http_404", "The server answered 404.")
    request = run(
        account, django_capture_on_commit_callbacks, webhook_url="https://hooks.example/x"
    )
    assert request.status == "completed_with_errors"
    first_event = WebhookDelivery.objects.get(request=request).event_id
    kept = {image.pk: image.output_name for image in images_of(request) if image.output_name}
    old_csv = storage / request.output_csv_name

    # When the source is fixed and the owner retries
    downloads.answers[URLS[1]] = JPEG
    downloads.calls.clear()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = api.post(f"/api/requests/{request.pk}/retry/")

    # Then the request is processing again, with only the failed image to do
    assert response.status_code == 202, response.json()
    assert response.json()["status"] == "processing"
    assert response.json()["progress"]["pending"] == 1
    assert api.get(f"/api/requests/{request.pk}/output.csv").status_code == 409
    drain(django_capture_on_commit_callbacks, list(callbacks))
    assert downloads.calls == [URLS[1]]

    # And it finishes completed, the others' outputs untouched, with a new CSV and event
    request.refresh_from_db()
    assert request.status == "completed"
    assert {i.pk: i.output_name for i in images_of(request) if i.pk in kept} == kept
    assert all(row[3] for row in output_csv(api, request)[1:])
    new_csv = storage / request.output_csv_name
    assert new_csv != old_csv  # a new name, no one's guess
    assert new_csv.parent == old_csv.parent
    assert new_csv.is_file()
    assert not old_csv.exists()  # the old one deleted
    assert WebhookDelivery.objects.get(request=request).event_id != first_event

    # And with nothing failed, there is nothing to retry
    again = api.post(f"/api/requests/{request.pk}/retry/")
    assert (again.status_code, again.json()["code"]) == (409, "nothing_to_retry")


def test_retry_of_a_request_under_way_is_refused(
    django_capture_on_commit_callbacks: Capture, account: Account, api: APIClient
) -> None:
    request, _ = started(account, ROWS, django_capture_on_commit_callbacks)
    response = api.post(f"/api/requests/{request.pk}/retry/")
    assert (response.status_code, response.json()["code"]) == (409, "not_finished")


def test_retry_counts_against_the_accounts_quota(
    downloads: Downloads,
    django_capture_on_commit_callbacks: Capture,
    account: Account,
    api: APIClient,
    settings: Any,
) -> None:
    # Given a finished request whose 4 images failed, and another of the account under way
    downloads.answers = dict.fromkeys(URLS, net.NetError("http_404", "The server answered 404."))
    failed = run(account, django_capture_on_commit_callbacks)
    assert failed.failed_images == 4
    started(account, ROWS, django_capture_on_commit_callbacks)

    # When retrying would take the account past its pending images
    settings.ACCOUNT_MAX_PENDING_IMAGES = 6
    over = api.post(f"/api/requests/{failed.pk}/retry/")

    # Then it is refused as an upload would be, and nothing was queued again
    assert (over.status_code, over.json()["code"]) == (429, "quota_exceeded")
    assert "retry's 4" in over.json()["error"]
    failed.refresh_from_db()
    assert (failed.status, failed.failed_images) == ("completed_with_errors", 4)


# --- Re-run ---------------------------------------------------------------------------


def test_rerun_makes_a_new_request_over_the_same_products_with_the_settings_given(
    downloads: Downloads,
    django_capture_on_commit_callbacks: Capture,
    account: Account,
    api: APIClient,
) -> None:
    # Given a finished request at quality 50 with a webhook
    downloads.answers = dict.fromkeys(URLS, JPEG)
    source = run(
        account,
        django_capture_on_commit_callbacks,
        rows='1,Lamp,"' + ",".join(URLS[:2]) + '"\n2,Chair,' + URLS[2] + "\n",
        webhook_url="https://hooks.example/x",
    )

    # When it is re-run at quality 30
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = api.post(f"/api/requests/{source.pk}/rerun/", {"quality": 30}, format="json")

    # Then a new request is accepted, naming its source, with the same products and URLs
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["source_request_id"] == str(source.pk)
    assert (body["total_products"], body["total_images"]) == (2, 3)
    rerun = ProcessingRequest.objects.get(pk=body["request_id"])
    assert (rerun.quality, rerun.webhook_url) == (30, "https://hooks.example/x")
    assert [
        (i.product.serial_number, i.product.product_name, i.input_url) for i in images_of(rerun)
    ] == [(i.product.serial_number, i.product.product_name, i.input_url) for i in images_of(source)]
    assert [task.name for task in callbacks] == [queue.REQUEST_START]

    # And it runs as an upload does, its status naming the source
    start_and_drain(django_capture_on_commit_callbacks, rerun)
    status = api.get(f"/api/status/{rerun.pk}/").json()
    assert (status["status"], status["source_request_id"]) == ("completed", str(source.pk))
    assert {image.quality for image in images_of(rerun)} == {30}


def test_rerun_validates_its_settings_and_counts_against_the_quota(
    django_capture_on_commit_callbacks: Capture, account: Account, api: APIClient, settings: Any
) -> None:
    source, _ = started(account, ROWS, django_capture_on_commit_callbacks)

    bad = api.post(f"/api/requests/{source.pk}/rerun/", {"quality": 0}, format="json")
    assert bad.status_code == 400
    assert "quality" in str(bad.json()["details"])

    settings.ACCOUNT_MAX_PENDING_IMAGES = 6
    over = api.post(f"/api/requests/{source.pk}/rerun/", {}, format="json")
    assert (over.status_code, over.json()["code"]) == (429, "quota_exceeded")
    assert "re-run's 4" in over.json()["error"]
    assert ProcessingRequest.objects.filter(account=account).count() == 1


# --- Expire ---------------------------------------------------------------------------


def test_expiry_deletes_old_results_leaves_a_tombstone_and_re_use_forgets_them(
    downloads: Downloads,
    django_capture_on_commit_callbacks: Capture,
    account: Account,
    api: APIClient,
    storage: Path,
    settings: Any,
) -> None:
    # Given a request finished 31 days ago, and one finished now
    settings.RETENTION_DAYS = 30
    downloads.answers = dict.fromkeys(URLS, JPEG)
    old = run(account, django_capture_on_commit_callbacks)
    ProcessingRequest.objects.filter(pk=old.pk).update(
        finished_at=timezone.now() - timedelta(days=31)
    )
    recent = run(account, django_capture_on_commit_callbacks, quality=70)
    status = api.get(f"/api/status/{recent.pk}/").json()
    assert status["expires_at"] is not None
    old_files = list((storage / "output_images" / str(old.pk)).iterdir())
    assert len(old_files) == 5  # 4 images and the CSV

    # When the policy is applied
    call_command("expire", stdout=io.StringIO())

    # Then the old request's files, products and images are gone; the recent one's stay
    assert not any(path.exists() for path in old_files)
    assert not (storage / "output_images" / str(old.pk)).exists()  # nor its empty folder
    assert not ProductImage.objects.filter(request=old).exists()
    assert ProductImage.objects.filter(request=recent).count() == 4
    assert not SourceOutput.objects.filter(request=old).exists()

    # And every route of the old request answers 410 expired, naming when
    old.refresh_from_db()
    for method, path in [
        ("get", f"/api/status/{old.pk}/"),
        ("get", f"/api/requests/{old.pk}/products/"),
        ("get", f"/api/requests/{old.pk}/webhook/"),
        ("get", f"/api/requests/{old.pk}/output.csv"),
        ("post", f"/api/requests/{old.pk}/webhook/"),
        ("post", f"/api/requests/{old.pk}/cancel/"),
        ("post", f"/api/requests/{old.pk}/retry/"),
        ("post", f"/api/requests/{old.pk}/rerun/"),
    ]:
        response = getattr(api, method)(path)
        assert response.status_code == 410, (method, path)
        assert response.json()["code"] == "expired"
        assert response.json()["details"] == [{"expired_at": timestamp(old.expired_at)}]

    # And a run stopped between marking it and deleting its rows is finished by the next
    ProductImage.objects.filter(request=recent).update(status="succeeded")
    ProcessingRequest.objects.filter(pk=recent.pk).update(expired_at=timezone.now())
    call_command("expire", stdout=io.StringIO())
    assert not ProductImage.objects.filter(request=recent).exists()

    # And the same CSV at the old request's settings is downloaded and encoded anew
    downloads.calls.clear()
    again = run(account, django_capture_on_commit_callbacks)
    assert [image.reused for image in images_of(again)] == [False] * 4
    assert all((storage / image.output_name).is_file() for image in images_of(again))


def test_expiry_keeps_everything_without_a_retention_and_what_runs_always(
    django_capture_on_commit_callbacks: Capture, account: Account, settings: Any
) -> None:
    running, _ = started(account, ROWS, django_capture_on_commit_callbacks)
    ProcessingRequest.objects.filter(pk=running.pk).update(
        created_at=timezone.now() - timedelta(days=90)
    )
    settings.RETENTION_DAYS = 0.0001
    call_command("expire", stdout=io.StringIO())
    running.refresh_from_db()
    assert running.expired_at is None

    settings.RETENTION_DAYS = None
    ProcessingRequest.objects.filter(pk=running.pk).update(
        status="completed", finished_at=timezone.now() - timedelta(days=900)
    )
    call_command("expire", stdout=io.StringIO())
    running.refresh_from_db()
    assert running.expired_at is None


def test_a_finished_request_deleted_by_its_account_is_gone_at_once_and_its_re_run_keeps_its_own(
    downloads: Downloads,
    django_capture_on_commit_callbacks: Capture,
    account: Account,
    api: APIClient,
    storage: Path,
    settings: Any,
) -> None:
    # Given a finished request, a re-run of it whose outputs are links to its files, and
    # no retention at all (so that only the account's word deletes anything)
    settings.RETENTION_DAYS = None
    downloads.answers = dict.fromkeys(URLS, JPEG)
    first = run(account, django_capture_on_commit_callbacks)
    rerun_id = api.post(f"/api/requests/{first.pk}/rerun/", {}).json()["request_id"]
    rerun = ProcessingRequest.objects.get(pk=rerun_id)
    start_and_drain(django_capture_on_commit_callbacks, rerun)
    first_folder = storage / "output_images" / str(first.pk)
    assert len(list(first_folder.iterdir())) == 5  # 4 images and the CSV

    # When its account deletes it
    with django_capture_on_commit_callbacks(execute=False) as queued:
        deleted = api.delete(f"/api/requests/{first.pk}/")

    # Then it answers 202 with the request as the list shows it: expired, by its account
    assert deleted.status_code == 202
    first.refresh_from_db()
    assert deleted.json() == api.get("/api/requests/").json()["results"][1]
    assert deleted.json()["expired_at"] == timestamp(first.expired_at)
    assert deleted.json()["expired_by"] == "account"
    assert deleted.json()["expires_at"] is None
    # And once the workers have run, its files, products and images are gone
    drain(django_capture_on_commit_callbacks, queued)
    assert not first_folder.exists()
    assert not ProductImage.objects.filter(request=first).exists()
    assert not SourceOutput.objects.filter(request=first).exists()
    # And every route of it answers 410, saying it was the account's doing; so does a second delete
    first.refresh_from_db()
    assert first.deleted_by_owner
    for method, path in [
        ("get", f"/api/status/{first.pk}/"),
        ("get", f"/api/requests/{first.pk}/output.csv"),
        ("delete", f"/api/requests/{first.pk}/"),
    ]:
        gone = getattr(api, method)(path)
        assert gone.status_code == 410, (method, path)
        assert gone.json() == {
            "error": f"The request's outputs, products and images were deleted on "
            f"{first.expired_at:%Y-%m-%d %H:%M} UTC, at the account's request.",
            "code": "expired",
            "details": [{"expired_at": timestamp(first.expired_at)}],
        }
    # And it is still listed, with when
    listed = api.get("/api/requests/").json()["results"]
    assert [(row["request_id"], row["expired_at"]) for row in listed] == [
        (str(rerun.pk), None),
        (str(first.pk), timestamp(first.expired_at)),
    ]
    # And the re-run's outputs, links to the same bytes, are whole
    assert [image.reused for image in images_of(rerun)] == [True] * 4
    assert all((storage / image.output_name).read_bytes() for image in images_of(rerun))
    assert len(output_csv(api, rerun)) == 5


def test_a_request_whose_output_csv_the_storage_has_no_room_for_fails_saying_so_and_retries(
    downloads: Downloads,
    django_capture_on_commit_callbacks: Capture,
    account: Account,
    api: APIClient,
    storage: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """It failed with "The results could not be written: [Errno 28] No space left on
    device". Faked: the full disk, as the storage's refusal of the CSV (a disk cannot be
    filled without root; tests/processing/test_faults.py fills a worker's room)."""
    downloads.answers = dict.fromkeys(URLS, JPEG)
    real_save = default_storage.save
    full = True

    def save_unless_csv(name: str, content: Any, max_length: int | None = None) -> str:
        if full and name.endswith(".csv"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(name, content, max_length)

    # Given a storage with room for the images but not for the output CSV
    monkeypatch.setattr(default_storage, "save", save_unless_csv)

    # When a request finishes, it fails saying the storage is full
    request = run(account, django_capture_on_commit_callbacks)
    assert request.status == ProcessingRequest.Status.FAILED
    assert request.error == (
        "The results could not be written: storage full (No space left on device). "
        "Retry the request once there is room."
    )

    # And once there is room, a retry finishes it
    full = False
    with django_capture_on_commit_callbacks(execute=False) as queued:
        assert api.post(f"/api/requests/{request.pk}/retry/").status_code == 202
    drain(django_capture_on_commit_callbacks, queued)
    request.refresh_from_db()
    assert request.status == ProcessingRequest.Status.COMPLETED
    assert len(output_csv(api, request)) == 1 + len(URLS)


def test_a_request_whose_results_the_storage_refuses_names_no_path_to_its_owner(
    downloads: Downloads,
    django_capture_on_commit_callbacks: Capture,
    account: Account,
    api: APIClient,
    storage: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Its error, in the status API and the signed webhook event, was "The results could not
    be written: [Errno 20] Not a directory: '/srv/…/output_images/<id>/output-<token>.csv'":
    the server's folders, and the secret name of the output CSV."""
    # Given a request whose every image fails (so that no output is written), with a webhook
    downloads.answers = dict.fromkeys(URLS, net.NetError("http_404", "The server answered 404."))
    request, batches = started(
        account, ROWS, django_capture_on_commit_callbacks, webhook_url="https://hooks.example/x"
    )
    # and a file where its outputs' folder goes, which the storage cannot write into
    (storage / "output_images").mkdir(exist_ok=True)
    (storage / "output_images" / str(request.pk)).touch()

    # When it finishes
    drain(
        django_capture_on_commit_callbacks,
        [QueuedTask(queue.IMAGES_PROCESS, (batch,)) for batch in batches],
    )

    # Then it failed, saying why in the storage's words alone, to its owner and receiver
    body = api.get(f"/api/status/{request.pk}/").json()
    assert body["status"] == "failed"
    error = body["error"]
    assert error.startswith("The results could not be written: the storage refused the file (")
    assert error.endswith("). An operator can see why in the service's log; retry the request.")
    assert str(storage) not in error
    assert "output-" not in error
    assert "Errno" not in error
    assert WebhookDelivery.objects.get(request=request).payload["error"] == error
    # while the log gives the operator the whole of it
    [logged] = [r for r in caplog.records if "could not be finalised" in r.getMessage()]
    assert str(storage / "output_images" / str(request.pk)) in logged.getMessage()


def test_an_operator_retries_every_accounts_images_the_full_storage_failed_in_one_command(
    downloads: Downloads,
    django_capture_on_commit_callbacks: Capture,
    account: Account,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each account had to find its requests and retry them; nothing told an operator which
    ones, across accounts, once the disk had room again. Faked: the full disk, as the
    storage's refusal of the images' outputs (tests/processing/test_faults.py fills a
    worker's room)."""
    other, _ = services.account_get_or_create(name=f"shop-{uuid.uuid4().hex[:8]}")
    missing = "https://shop.example/missing.jpg"
    downloads.answers = dict.fromkeys(URLS, JPEG) | {
        missing: net.NetError(net.NetReason.TIMEOUT, "no")
    }
    real_save = default_storage.save
    full = True

    def save_unless_full(name: str, content: Any, max_length: int | None = None) -> str:
        if full and name.startswith("output_images/") and not name.endswith(".csv"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(name, content, max_length)

    monkeypatch.setattr(default_storage, "save", save_unless_full)
    # Given requests of two accounts whose images the full storage failed, one cancelled
    # by its owner, and one whose images failed for another reason
    first = run(account, django_capture_on_commit_callbacks)
    second = run(other, django_capture_on_commit_callbacks)
    cancelled = run(other, django_capture_on_commit_callbacks)
    ProcessingRequest.objects.filter(pk=cancelled.pk).update(cancel_requested_at=timezone.now())
    full = False
    elsewhere = run(account, django_capture_on_commit_callbacks, rows=f"1,Lamp,{missing}\n")
    assert {image.error_code for image in images_of(first)} == {"storage_full"}
    assert elsewhere.status == ProcessingRequest.Status.COMPLETED_WITH_ERRORS

    # When, the storage freed, an operator retries what it failed
    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=False) as queued:
        call_command("retry_failed", "--code", "storage_full", "--since", "1h", stdout=out)
    drain(django_capture_on_commit_callbacks, queued)

    # Then both accounts' requests complete, each named, and nothing else is retried
    assert out.getvalue().splitlines() == [
        f"Retried {first.pk} (account {account.name})",
        f"Retried {second.pk} (account {other.name})",
        "2 request(s) retried.",
    ]
    statuses = {
        request.pk: request.status
        for request in ProcessingRequest.objects.filter(
            pk__in=[first.pk, second.pk, cancelled.pk, elsewhere.pk]
        )
    }
    assert statuses == {
        first.pk: ProcessingRequest.Status.COMPLETED,
        second.pk: ProcessingRequest.Status.COMPLETED,
        cancelled.pk: ProcessingRequest.Status.COMPLETED_WITH_ERRORS,
        elsewhere.pk: ProcessingRequest.Status.COMPLETED_WITH_ERRORS,
    }


def test_a_retry_of_failures_for_a_reason_that_is_none_is_refused_naming_it() -> None:
    with pytest.raises(CommandError, match="Not a reason code: disk_full"):
        call_command("retry_failed", "--code", "disk_full", stdout=io.StringIO())


def test_a_deletion_stopped_by_a_storage_error_is_finished_by_the_next_expiry_pass(
    downloads: Downloads,
    django_capture_on_commit_callbacks: Capture,
    account: Account,
    api: APIClient,
    storage: Path,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """It ran inside the DELETE: a storage error was a 500, the outputs stayed public, and
    with no retention set nothing would ever have finished it."""
    settings.RETENTION_DAYS = None
    downloads.answers = dict.fromkeys(URLS, JPEG)
    request = run(account, django_capture_on_commit_callbacks)
    folder = storage / "output_images" / str(request.pk)
    # Given a storage that refuses a deletion once (an object store answering 503, say)
    refusals = iter([OSError("the store is away")])
    real_delete = default_storage.delete

    def delete_unless_refused(name: str) -> None:
        refusal = next(refusals, None)
        if refusal is not None:
            raise refusal
        real_delete(name)

    monkeypatch.setattr(default_storage, "delete", delete_unless_refused)
    # When its account deletes it, the answer is the tombstone's, whatever the storage does
    with django_capture_on_commit_callbacks(execute=False) as queued:
        assert api.delete(f"/api/requests/{request.pk}/").status_code == 202
    with pytest.raises(OSError, match="the store is away"):
        drain(django_capture_on_commit_callbacks, queued)
    assert folder.exists()
    assert api.get(f"/api/status/{request.pk}/").status_code == 410
    # Then the expiry's next pass, which runs with no retention too, finishes the job
    call_command("expire", stdout=io.StringIO())
    assert not folder.exists()
    assert not ProductImage.objects.filter(request=request).exists()


def test_a_csv_download_or_a_webhook_resend_racing_a_deletion_leaves_nothing_behind(
    downloads: Downloads,
    django_capture_on_commit_callbacks: Capture,
    account: Account,
    storage: Path,
    settings: Any,
) -> None:
    """The download had passed its 410 check before the deletion: it found the CSV gone,
    wrote it again into the deleted folder, and answered it. The resend put the delivery
    back to pending, which the sweep then queued every few minutes for ever."""
    settings.RETENTION_DAYS = None
    downloads.answers = dict.fromkeys(URLS, JPEG)
    request = run(
        account, django_capture_on_commit_callbacks, webhook_url="https://hooks.example/x"
    )
    WebhookDelivery.objects.filter(request=request).update(state="failed", next_attempt_at=None)
    seen_before = ProcessingRequest.objects.get(pk=request.pk)  # as the routes read it
    # Given the request deleted, its files gone, after the routes had read it
    assert expiry.request_mark_expired(request_id=request.pk, cutoff=None, by_owner=True)
    expiry.results_delete(request_id=request.pk)
    # Then the download is refused and writes nothing again
    with pytest.raises(finalize.OutputCsvGone):
        finalize.output_csv_open(request=seen_before)
    assert not (storage / "output_images" / str(request.pk)).exists()
    # And the resend is refused, leaving the delivery failed and out of the sweep's reach
    with pytest.raises(webhooks.ResultsGone):
        webhooks.webhook_resend(request=seen_before)
    assert WebhookDelivery.objects.get(request=request).state == "failed"
    WebhookDelivery.objects.filter(request=request).update(
        state="pending", next_attempt_at=timezone.now()
    )  # as a resend committed in the instant before the deletion's leaves it
    with django_capture_on_commit_callbacks(execute=False) as queued:
        sweep.sweep_run()
    assert [task for task in queued if task.name == queue.WEBHOOK_SEND] == []
    call_command("expire", stdout=io.StringIO())
    delivery = WebhookDelivery.objects.get(request=request)
    assert (delivery.state, delivery.last_error) == ("failed", expiry.DELETED_ERROR)


def test_a_request_being_finalised_is_finishing_to_a_delete_and_a_cancel(
    django_capture_on_commit_callbacks: Capture, account: Account, api: APIClient
) -> None:
    """Both refused it, and said contradictory things: "still processing: cancel it first"
    and "already finished (processing)"."""
    running, _ = started(account, ROWS, django_capture_on_commit_callbacks)
    ProcessingRequest.objects.filter(pk=running.pk).update(finalize_claimed_at=timezone.now())
    deleted = api.delete(f"/api/requests/{running.pk}/")
    assert deleted.status_code == 409
    assert deleted.json()["error"] == (
        "The request is finishing (its output CSV is being written): delete it in a moment."
    )
    cancelled = api.post(f"/api/requests/{running.pk}/cancel/")
    assert cancelled.status_code == 409
    assert cancelled.json()["error"] == (
        "The request is finishing: every image has ended, so there is nothing left to cancel."
    )


def test_a_request_whose_files_the_storage_keeps_refusing_stops_no_other_expiry(
    downloads: Downloads,
    django_capture_on_commit_callbacks: Capture,
    account: Account,
    storage: Path,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its refusal ended the whole pass, every hour: nothing past the retention expired."""
    settings.RETENTION_DAYS = 30
    downloads.answers = dict.fromkeys(URLS, JPEG)
    old = run(account, django_capture_on_commit_callbacks)
    ProcessingRequest.objects.filter(pk=old.pk).update(
        finished_at=timezone.now() - timedelta(days=31)
    )
    stuck = run(account, django_capture_on_commit_callbacks, quality=70)
    assert expiry.request_mark_expired(request_id=stuck.pk, cutoff=None, by_owner=True)
    # Given a storage that refuses the deleted request's files (an object lock, say)
    real_delete = default_storage.delete
    refusing = [True]

    def refuse_stuck(name: str) -> None:
        if refusing[0] and str(stuck.pk) in name:
            raise PermissionError(13, "Access Denied")
        real_delete(name)

    monkeypatch.setattr(default_storage, "delete", refuse_stuck)
    # When the expiry's pass runs, the old request expires and its results go all the same
    call_command("expire", stdout=io.StringIO())
    old.refresh_from_db()
    assert old.expired_at is not None
    assert not (storage / "output_images" / str(old.pk)).exists()
    # And the stuck one is left for the next pass
    assert ProductImage.objects.filter(request=stuck).exists()
    refusing[0] = False
    call_command("expire", stdout=io.StringIO())
    assert not ProductImage.objects.filter(request=stuck).exists()


def test_a_request_under_way_is_not_deleted_and_another_accounts_is_not_found(
    django_capture_on_commit_callbacks: Capture, account: Account, api: APIClient
) -> None:
    running, _ = started(account, ROWS, django_capture_on_commit_callbacks)
    refused = api.delete(f"/api/requests/{running.pk}/")
    assert refused.status_code == 409
    assert refused.json() == {
        "error": "The request is still processing: cancel it first, then delete it once it "
        "has finished.",
        "code": "not_finished",
    }
    other, _ = services.account_get_or_create(name="other-shop")
    theirs = APIClient()
    theirs.credentials(HTTP_AUTHORIZATION=f"Bearer {services.api_key_create(account=other)[1]}")
    assert theirs.delete(f"/api/requests/{running.pk}/").json()["code"] == "not_found"
    running.refresh_from_db()
    assert running.expired_at is None

    # Once cancelled, it is not told to cancel it again: only to wait for its end
    assert api.post(f"/api/requests/{running.pk}/cancel/").status_code == 202
    refused = api.delete(f"/api/requests/{running.pk}/")
    assert refused.status_code == 409
    assert refused.json() == {
        "error": "The request is being cancelled (its images under way are finishing): "
        "delete it once it has finished.",
        "code": "not_finished",
    }
    assert ProductImage.objects.filter(request=running).count() == 4


@pytest.mark.parametrize("attempts", [2, 1], ids=["attempts-left", "the-last-attempt"])
def test_an_output_gone_from_storage_is_made_anew_not_failed(
    downloads: Downloads,
    django_capture_on_commit_callbacks: Capture,
    account: Account,
    storage: Path,
    settings: Any,
    attempts: int,
) -> None:
    """Re-use copied the file the cache named; where it was gone (deleted by hand, or the
    storage moved to a bucket) every attempt failed, and the image ended storage_error;
    then, found at an image's last attempt, it failed it all the same."""
    settings.IMAGE_MAX_ATTEMPTS = attempts
    # Given a first run whose output files were then deleted
    downloads.answers = dict.fromkeys(URLS, JPEG)
    first = run(account, django_capture_on_commit_callbacks)
    for image in images_of(first):
        (storage / image.output_name).unlink(missing_ok=True)

    # When the same CSV runs again
    second = run(account, django_capture_on_commit_callbacks)

    # Then every image is made anew, and stored
    assert second.status == ProcessingRequest.Status.COMPLETED
    assert [image.reused for image in images_of(second)] == [False] * 4
    assert all((storage / image.output_name).stat().st_size > 0 for image in images_of(second))


def test_an_output_csv_gone_from_storage_is_written_again_when_it_is_downloaded(
    downloads: Downloads,
    django_capture_on_commit_callbacks: Capture,
    account: Account,
    api: APIClient,
    storage: Path,
) -> None:
    """Its download answered 500 for as long as the request lived."""
    # Given a finished request whose output CSV the storage then lost
    downloads.answers = dict.fromkeys(URLS, JPEG)
    request = run(account, django_capture_on_commit_callbacks)
    before = output_csv(api, request)
    (storage / request.output_csv_name).unlink()

    # When it is downloaded, then it is the same CSV, and stored again
    assert output_csv(api, request) == before
    assert (storage / request.output_csv_name).stat().st_size > 0
