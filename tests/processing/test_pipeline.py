"""The image pipeline in process: claim, compress, store, record, retry and give up, with
the database (SQLite, or PostgreSQL in CI) and the storage real, and only the download
stubbed, at the net seam, so that no origin process is needed.

Tasks are never sent: the test's transaction never commits, so what the services queue
stays in its on-commit callbacks, which the tests read (processing.queue.QueuedTask).
"""

import contextlib
import io
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import OperationalError
from django.utils import timezone
from PIL import Image, ImageChops
from rest_framework.test import APIClient

import net
from accounts.models import Account
from processing import claims, control, metrics, pipeline, queue, results
from processing.models import ProcessingRequest, ProductImage
from processing.queue import QueuedTask
from processing.window import batch_size_next
from tests.processing.in_process import Capture, Downloads, images_of, queued, started
from tests.support import divider, encoded, photo, size_chart

pytestmark = pytest.mark.django_db

JPEG = encoded(photo(160, 120), "JPEG", quality=90)


def photos(downloads: Downloads, count: int) -> tuple[list[str], str]:
    """count URLs that each answer a photo, and the CSV rows of a product for each."""
    urls = [f"https://shop.example/{n}.jpg" for n in range(count)]
    downloads.answers = dict.fromkeys(urls, JPEG)
    return urls, "".join(f"{n + 1},P{n},{url}\n" for n, url in enumerate(urls))


def batch_ended(capture: Capture, batch: list[int]) -> list[list[int]]:
    """Run one batch; the batches of image ids it queued as it ended."""
    with capture(execute=False) as callbacks:
        pipeline.images_process(image_ids=batch)
    return [task.args[0] for task in queued(callbacks, queue.IMAGES_PROCESS)]


@pytest.fixture(autouse=True)
def storage(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = tmp_path
    settings.IMAGE_MAX_ATTEMPTS = 2
    settings.IMAGE_FETCH_RETRY_BACKOFF = 2.0
    return tmp_path


def test_a_batch_compresses_each_url_once_for_every_image_with_it_and_queues_the_finalisation(
    downloads: Downloads,
    django_capture_on_commit_callbacks: Capture,
    storage: Path,
    settings: Any,
    account: Account,
) -> None:
    # Given a request of three images, two of them with the same URL, started in one batch
    settings.REQUEST_START_BATCHES = 1
    a, b = "https://shop.example/a.jpg", "https://shop.example/b.jpg"
    downloads.answers = {a: JPEG, b: JPEG}
    request, batches = started(
        account, f'1,Lamp,"{a},{b}"\n2,Lamp again,{a}\n', django_capture_on_commit_callbacks
    )
    assert len(batches) == 1
    assert len(batches[0]) == 2

    # When the batch runs
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        pipeline.images_process(image_ids=batches[0])

    # Then each URL was downloaded once, and every image has its result
    assert sorted(downloads.calls) == [a, b]
    images = images_of(request)
    assert [image.status for image in images] == ["succeeded"] * 3
    assert images[0].output_name == images[2].output_name != images[1].output_name
    assert all((storage / image.output_name).is_file() for image in images)
    assert {(image.input_bytes, image.width, image.height, image.attempts) for image in images} == {
        (len(JPEG), 160, 120, 1)
    }
    # counted on the request, bytes in and out for every image, which is queued for
    # finalisation
    request.refresh_from_db()
    assert (request.succeeded_images, request.failed_images) == (3, 0)
    assert (request.input_bytes, request.output_bytes) == (
        3 * len(JPEG),
        sum(image.output_bytes or 0 for image in images),
    )
    assert 0 < request.output_bytes < request.input_bytes
    assert queued(callbacks, queue.REQUEST_FINALIZE) == [
        QueuedTask(queue.REQUEST_FINALIZE, (str(request.pk),))
    ]


# Each lossless format a drawing comes in, as a file a JPEG at quality 50 makes larger.
LOSSLESS_SOURCES: dict[str, tuple[Callable[[], bytes], bytes, str]] = {
    "PNG": (lambda: encoded(size_chart(), "PNG", optimize=True), b"\x89PNG", "png"),
    "GIF": (lambda: encoded(size_chart(), "GIF", optimize=True), b"GIF8", "gif"),
    # 270 bytes; its JPEG 3 times that
    "BMP": (lambda: encoded(divider(), "BMP"), b"BM", "bmp"),
}


@pytest.mark.parametrize("kind", LOSSLESS_SOURCES)
def test_a_lossless_source_smaller_than_its_jpeg_is_stored_and_listed_as_it_was(
    downloads: Downloads,
    django_capture_on_commit_callbacks: Capture,
    storage: Path,
    account: Account,
    kind: str,
) -> None:
    # Given a size chart saved as PNG or GIF, or a divider as BMP, which a JPEG at
    # quality 50 makes larger (a GIF became a JPEG 3.8 times its size)
    make, signature, extension = LOSSLESS_SOURCES[kind]
    url = f"https://shop.example/sizes.{extension}"
    downloads.answers = {url: (chart := make())}
    request, [batch] = started(account, f"1,Boots,{url}\n", django_capture_on_commit_callbacks)

    # When its batch runs
    batch_ended(django_capture_on_commit_callbacks, batch)

    # Then its output is the source's format, named and recorded so, no larger than it
    [image] = images_of(request)
    assert (image.status, image.output_format, image.kept_original) == ("succeeded", kind, True)
    assert image.output_name.endswith(f".{extension}")
    stored = (storage / image.output_name).read_bytes()
    assert stored.startswith(signature)
    assert image.output_bytes == len(stored) <= len(chart)


def test_a_tiff_smaller_than_its_jpeg_comes_out_a_png_a_browser_shows(
    downloads: Downloads,
    django_capture_on_commit_callbacks: Capture,
    storage: Path,
    account: Account,
) -> None:
    # Given a size chart as a deflated TIFF (13 KB; its JPEG 48 KB), which browsers but
    # Safari do not show, so it cannot be kept as the others are
    url = "https://shop.example/sizes.tif"
    downloads.answers = {
        url: (chart := encoded(size_chart(), "TIFF", compression="tiff_adobe_deflate"))
    }
    request, [batch] = started(account, f"1,Boots,{url}\n", django_capture_on_commit_callbacks)

    # When its batch runs
    batch_ended(django_capture_on_commit_callbacks, batch)

    # Then its output is a PNG of the same pixels, smaller than the TIFF's JPEG
    [image] = images_of(request)
    assert (image.status, image.output_format, image.kept_original) == ("succeeded", "PNG", False)
    assert image.output_name.endswith(".png")
    stored = (storage / image.output_name).read_bytes()
    assert stored.startswith(b"\x89PNG")
    assert image.output_bytes == len(stored) < len(encoded(size_chart(), "JPEG", quality=50))
    same = ImageChops.difference(Image.open(io.BytesIO(stored)).convert("RGB"), size_chart())
    assert same.getbbox() is None
    assert len(stored) < len(chart)


def test_an_animation_s_output_says_it_kept_its_first_frame_alone(
    downloads: Downloads,
    django_capture_on_commit_callbacks: Capture,
    account: Account,
    api: APIClient,
    settings: Any,
) -> None:
    # Given an animated GIF, an animated WebP and a photo in one batch (nothing told the
    # shop that the animations' outputs were still pictures)
    settings.REQUEST_START_BATCHES = 1
    frames = [photo(120, 90, seed) for seed in range(4)]
    gif, webp, still = (f"https://shop.example/{name}" for name in ("a.gif", "a.webp", "s.jpg"))
    downloads.answers = {
        gif: encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100),
        webp: encoded(frames[0], "WEBP", save_all=True, append_images=frames[1:3], duration=80),
        still: JPEG,
    }
    request, [batch] = started(
        account, f'1,Lamp,"{gif},{webp},{still}"\n', django_capture_on_commit_callbacks
    )

    # When its batch runs
    batch_ended(django_capture_on_commit_callbacks, batch)

    # Then each succeeded, and the animations' rows and the products API say what was lost
    [product] = api.get(f"/api/requests/{request.pk}/products/").json()["results"]
    assert [(image["status"], image["note"]) for image in product["images"]] == [
        ("succeeded", "Animated source: 4 frames, only the first kept."),
        ("succeeded", "Animated source: 3 frames, only the first kept."),
        ("succeeded", ""),
    ]


def test_what_a_download_logs_names_the_request_its_image_belongs_to(
    downloads: Downloads, django_capture_on_commit_callbacks: Capture, account: Account
) -> None:
    """Downloads run on the batch's threads, which the request id bound to the batch did
    not reach: an address refused, a connection failed, named no request in the log."""
    # Given two requests' images in one batch
    urls, _ = photos(downloads, 2)
    first, [first_batch] = started(account, f"1,A,{urls[0]}\n", django_capture_on_commit_callbacks)
    second, [second_batch] = started(
        account, f"1,B,{urls[1]}\n", django_capture_on_commit_callbacks
    )

    # When the batch runs, then each download logs as its own image's request
    batch_ended(django_capture_on_commit_callbacks, first_batch + second_batch)
    assert downloads.logged_as == {urls[0]: str(first.pk), urls[1]: str(second.pk)}


def test_a_batch_delivered_again_downloads_and_records_nothing(
    downloads: Downloads, django_capture_on_commit_callbacks: Capture, account: Account
) -> None:
    # Given a batch that has run
    url = "https://shop.example/a.jpg"
    downloads.answers = {url: JPEG}
    request, batches = started(account, f"1,Lamp,{url}\n", django_capture_on_commit_callbacks)
    pipeline.images_process(image_ids=batches[0])
    before = list(ProductImage.objects.filter(request=request).values())

    # When its task is delivered again
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        pipeline.images_process(image_ids=batches[0])

    # Then nothing was downloaded, changed, counted or queued
    assert downloads.calls == [url]
    assert list(ProductImage.objects.filter(request=request).values()) == before
    request.refresh_from_db()
    assert (request.succeeded_images, request.failed_images) == (1, 0)
    assert callbacks == []


class ProcessDied(BaseException):
    """Plays a worker process killed during a download (out of memory, a crash in a codec):
    nothing in the service catches it, so its images are left claimed, as a SIGKILL leaves
    them."""


def dies(*_: Any, **__: Any) -> net.Fetched:
    raise ProcessDied


def delivered(capture: Capture, batch: list[int], task_id: str) -> list[QueuedTask]:
    """One delivery of the task task_id; what it queued. ProcessDied ends it as a killed
    process would, with what it had written kept."""
    with capture(execute=False) as callbacks, contextlib.suppress(ProcessDied):
        pipeline.images_process(image_ids=batch, task_id=task_id)
    return queued(callbacks, queue.IMAGES_PROCESS) + queued(callbacks, queue.REQUEST_FINALIZE)


def records_failing(monkeypatch: pytest.MonkeyPatch, error: str) -> Callable[[], None]:
    """Batches' records fail with the database's error, as a PostgreSQL away or timing out
    fails them (the real record wrapped; nothing of it is replaced); what puts it back."""
    record = results.images_record

    def failing(**_: Any) -> None:
        raise OperationalError(error)

    monkeypatch.setattr(pipeline, "images_record", failing)
    return lambda: monkeypatch.setattr(pipeline, "images_record", record)


def failed_try(capture: Capture, batch: list[int], tries: int) -> None:
    """A try of the task task-1 that ends on a database error, as Celery then retries it."""
    with capture(execute=False), pytest.raises(OperationalError):
        pipeline.images_process(image_ids=batch, task_id="task-1", tries=tries)


def test_a_task_delivered_again_after_its_process_died_queues_its_images_again_at_once(
    downloads: Downloads,
    django_capture_on_commit_callbacks: Capture,
    monkeypatch: pytest.MonkeyPatch,
    settings: Any,
    account: Account,
) -> None:
    # Given a batch of two images whose process died while it downloaded
    settings.REQUEST_START_BATCHES = 1
    urls, rows = photos(downloads, 2)
    request, [batch] = started(account, rows, django_capture_on_commit_callbacks)
    monkeypatch.setattr(net, "fetch_if_changed", dies)
    delivered(django_capture_on_commit_callbacks, batch, "task-1")
    assert {(image.status, image.attempts) for image in images_of(request)} == {("processing", 1)}

    # When another task is given the same images, within their lease, then it leaves them
    # to their holder
    monkeypatch.setattr(net, "fetch_if_changed", downloads)
    assert delivered(django_capture_on_commit_callbacks, batch, "task-2") == []
    assert downloads.calls == []

    # When the task is delivered again (Celery gives back the task of a lost process)
    queued_again = delivered(django_capture_on_commit_callbacks, batch, "task-1")

    # Then it queued each image again at once, as a task of its own, not one lease later
    assert queued_again == [
        QueuedTask(queue.IMAGES_PROCESS, ([image_id], str(request.pk))) for image_id in batch
    ]
    assert {image.status for image in images_of(request)} == {"pending"}

    # and those tasks finish them, as their second attempt
    for task in queued_again:
        delivered(django_capture_on_commit_callbacks, task.args[0], f"task-{task.args[0]}")
    assert sorted(downloads.calls) == urls
    assert {(image.status, image.attempts) for image in images_of(request)} == {("succeeded", 2)}


@pytest.mark.parametrize("cancelled", [False, True])
def test_a_batch_retried_after_a_database_error_works_its_own_images_again(
    downloads: Downloads,
    django_capture_on_commit_callbacks: Capture,
    monkeypatch: pytest.MonkeyPatch,
    settings: Any,
    account: Account,
    cancelled: bool,
) -> None:
    """Celery retries a task that failed on a database error (PostgreSQL restarting) under
    the same task id: the next try took the images the first had claimed for a dead
    delivery's, queued each again alone, and in a cancelled request ended them "the worker
    was lost"."""
    # Given a batch of two images whose first try failed as it recorded them, the database
    # away
    settings.REQUEST_START_BATCHES = 1
    urls, rows = photos(downloads, 2)
    request, [batch] = started(account, rows, django_capture_on_commit_callbacks)
    database_back = records_failing(monkeypatch, "server closed the connection unexpectedly")
    failed_try(django_capture_on_commit_callbacks, batch, 0)
    assert {(image.status, image.attempts) for image in images_of(request)} == {("processing", 1)}
    # (and, the second time, its owner cancelled the request meanwhile)
    if cancelled:
        control.request_cancel(request=request)

    # When Celery sends its next try, the database back
    database_back()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        pipeline.images_process(image_ids=batch, task_id="task-1", tries=1)

    # Then that try works them itself, as their second attempt, and queues none again;
    # in the cancelled request they end cancelled before their encode, as the cancel says
    assert queued(callbacks, queue.IMAGES_PROCESS) == []
    ended = {(image.status, image.error_message, image.attempts) for image in images_of(request)}
    if cancelled:
        assert ended == {("cancelled", "Cancelled before it was compressed.", 2)}
    else:
        assert ended == {("succeeded", "", 2)}
        assert sorted(downloads.calls) == sorted(urls * 2)


def test_a_database_away_as_a_batch_looks_for_a_cancel_fails_no_image(
    downloads: Downloads,
    django_capture_on_commit_callbacks: Capture,
    monkeypatch: pytest.MonkeyPatch,
    settings: Any,
    account: Account,
) -> None:
    """The batch's look for a cancel, between two images, raised into the image's own
    error handling: a moment's database outage failed the image for good, internal_error."""
    # Given a batch that looks for a cancel before each image, the database away at its
    # look once the first download has come (the real look wrapped to fail once)
    settings.REQUEST_START_BATCHES, settings.IMAGE_CANCEL_CHECK_SECONDS = 1, 0
    _, rows = photos(downloads, 2)
    request, [batch] = started(account, rows, django_capture_on_commit_callbacks)
    seen = pipeline._CancelWatch.seen
    looks: list[int] = []

    def away_once(watch: Any) -> Any:
        looks.append(1)
        if len(looks) == 2:  # the look after the first download
            raise OperationalError("server closed the connection unexpectedly")
        return seen(watch)

    monkeypatch.setattr(pipeline._CancelWatch, "seen", away_once)

    # When the batch runs, then the task fails as a database error, the images still its
    failed_try(django_capture_on_commit_callbacks, batch, 0)
    assert {image.status for image in images_of(request)} == {"processing"}

    # and its next try makes them
    with django_capture_on_commit_callbacks(execute=False):
        pipeline.images_process(image_ids=batch, task_id="task-1", tries=1)
    assert {(image.status, image.attempts) for image in images_of(request)} == {("succeeded", 2)}


def test_a_database_error_at_every_try_works_an_image_no_more_than_its_attempts(
    downloads: Downloads,
    django_capture_on_commit_callbacks: Capture,
    monkeypatch: pytest.MonkeyPatch,
    settings: Any,
    account: Account,
) -> None:
    """Each try took over the last one's image and worked it again: a database error that
    came back every time (a statement timeout) had it downloaded at each of Celery's ten
    tries, and the sweep then said its worker had been lost eleven times."""
    # Given an image whose batch fails as it records, try after try (IMAGE_MAX_ATTEMPTS 3)
    settings.IMAGE_MAX_ATTEMPTS, settings.REQUEST_START_BATCHES = 3, 1
    urls, rows = photos(downloads, 1)
    request, [batch] = started(account, rows, django_capture_on_commit_callbacks)

    database_back = records_failing(monkeypatch, "canceling statement due to statement timeout")

    # When Celery sends its tries, more of them than the image's attempts
    for tries in range(6):
        failed_try(django_capture_on_commit_callbacks, batch, tries)

    # Then it was worked at three tries only, and the next, the database back, ends it
    assert downloads.calls == urls * 3
    database_back()
    with django_capture_on_commit_callbacks(execute=False):
        pipeline.images_process(image_ids=batch, task_id="task-1", tries=6)
    [image] = images_of(request)
    assert (image.status, image.attempts, image.error_code) == ("failed", 3, "internal_error")
    assert downloads.calls == urls * 3


def test_an_image_that_kills_its_process_at_every_attempt_fails_alone_without_the_sweep(
    downloads: Downloads,
    django_capture_on_commit_callbacks: Capture,
    monkeypatch: pytest.MonkeyPatch,
    settings: Any,
    account: Account,
) -> None:
    # Given a batch of three photos, the first of which kills its process every time it
    # is downloaded (IMAGE_MAX_ATTEMPTS is 2)
    settings.REQUEST_START_BATCHES = 1
    urls, rows = photos(downloads, 3)
    request, [batch] = started(account, rows, django_capture_on_commit_callbacks)

    def kills_on_the_first(url: str, *args: Any, **options: Any) -> net.Fetched:
        if url == urls[0]:
            raise ProcessDied
        return downloads(url, *args, **options)

    monkeypatch.setattr(net, "fetch_if_changed", kills_on_the_first)

    # When the batch, and then whatever it queues, is delivered until nothing is left:
    # each task once more after its process died, as Celery gives it back
    tasks = [(batch, "batch")]
    finalising = []
    while tasks:
        ids, task_id = tasks.pop(0)
        for _ in range(2):  # the delivery, and the one after its process died
            for task in delivered(django_capture_on_commit_callbacks, ids, task_id):
                if task.name == queue.IMAGES_PROCESS:
                    tasks.append((task.args[0], f"task-{len(tasks)}-{task.args[0]}"))
                else:
                    finalising.append(task)

    # Then the two photos came out, and the one that killed its process failed alone,
    # saying so, and the request is queued for its finalisation: no lease waited out
    images = images_of(request)
    assert [(image.status, image.attempts) for image in images[1:]] == [("succeeded", 2)] * 2
    assert (images[0].status, images[0].error_code, images[0].attempts) == (
        "failed",
        "internal_error",
        2,
    )
    assert images[0].error_message == (
        "Gave up after 2 attempts that never finished (the worker was lost each time)."
    )
    request.refresh_from_db()
    assert (request.succeeded_images, request.failed_images) == (2, 1)
    assert QueuedTask(queue.REQUEST_FINALIZE, (str(request.pk),)) in finalising


def test_a_batch_delivered_again_in_a_request_cancelled_meanwhile_ends_its_images(
    downloads: Downloads,
    django_capture_on_commit_callbacks: Capture,
    monkeypatch: pytest.MonkeyPatch,
    settings: Any,
    account: Account,
) -> None:
    """The cancel came after the delivery had read its request: the images its dead
    predecessor held were queued again, and the new task made them."""
    # Given a batch whose process died while it downloaded
    settings.REQUEST_START_BATCHES = 1
    _, rows = photos(downloads, 2)
    request, [batch] = started(account, rows, django_capture_on_commit_callbacks)
    monkeypatch.setattr(net, "fetch_if_changed", dies)
    delivered(django_capture_on_commit_callbacks, batch, "task-1")

    # When it is delivered again, and the request is cancelled just after the delivery
    # read it (the cancel ends only images not started; these are held)
    claim = claims.images_claim

    def cancelled_first(**kwargs: Any) -> Any:
        control.request_cancel(request=ProcessingRequest.objects.get(pk=request.pk))
        return claim(**kwargs)

    monkeypatch.setattr(claims, "images_claim", cancelled_first)
    monkeypatch.setattr(net, "fetch_if_changed", downloads)
    after = delivered(django_capture_on_commit_callbacks, batch, "task-1")

    # Then nothing is queued again or downloaded: the images end cancelled, as the sweep
    # ends a lost image of a cancelled request, and the request can finish
    assert downloads.calls == []
    assert after == [QueuedTask(queue.REQUEST_FINALIZE, (str(request.pk),))]
    images = images_of(request)
    assert {(image.status, image.error_message) for image in images} == {
        (
            "cancelled",
            "Its attempt never finished (the worker was lost). Not retried: the request was "
            "cancelled.",
        )
    }


def test_a_transient_failure_is_retried_later_then_fails_after_the_last_attempt(
    downloads: Downloads, django_capture_on_commit_callbacks: Capture, account: Account
) -> None:
    # Given an origin that answers 503, asking for a 30 s wait
    url = "https://shop.example/busy.jpg"
    downloads.answers = {
        url: net.NetError(
            "http_503", "The server answered HTTP 503.", transient=True, retry_after=30
        )
    }
    request, batches = started(account, f"1,Lamp,{url}\n", django_capture_on_commit_callbacks)

    # When the batch runs, then the image waits for its next attempt, queued for then
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        pipeline.images_process(image_ids=batches[0])
    [image] = images_of(request)
    assert (image.status, image.error_code, image.attempts) == ("pending", "http_503", 1)
    assert image.error_message == "The server answered HTTP 503. Retrying (attempt 2)."
    [retry] = queued(callbacks, queue.IMAGES_PROCESS)
    assert retry.args == ([image.pk], str(request.pk))
    assert retry.countdown is not None
    assert 30 <= retry.countdown <= 33
    assert image.queued_at is not None
    assert image.queued_at > timezone.now()
    request.refresh_from_db()
    assert (request.succeeded_images, request.failed_images) == (0, 0)

    # When the retry runs and fails again: the last of IMAGE_MAX_ATTEMPTS (2)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        pipeline.images_process(image_ids=list(retry.args[0]))

    # Then the image has failed with its reason, counted, and the request can finish
    [image] = images_of(request)
    assert (image.status, image.error_code, image.attempts) == ("failed", "http_503", 2)
    assert image.error_message == "The server answered HTTP 503. Tried 2 times."
    request.refresh_from_db()
    assert (request.succeeded_images, request.failed_images) == (0, 1)
    assert queued(callbacks, queue.IMAGES_PROCESS) == []
    assert len(queued(callbacks, queue.REQUEST_FINALIZE)) == 1


def test_a_permanent_failure_ends_at_once_and_the_rest_of_the_batch_succeeds(
    downloads: Downloads,
    django_capture_on_commit_callbacks: Capture,
    settings: Any,
    account: Account,
) -> None:
    # Given a batch with a web page, a blocked address and a photo
    settings.REQUEST_START_BATCHES = 1
    page, blocked, good = (f"https://shop.example/{name}" for name in ("p.html", "b.jpg", "g.jpg"))
    downloads.answers = {
        page: b"<!doctype html><title>Not an image</title>",
        blocked: net.NetError("blocked_address", "The address is not allowed."),
        good: JPEG,
    }
    request, batches = started(
        account, f'1,Lamp,"{page},{blocked},{good}"\n', django_capture_on_commit_callbacks
    )

    # When it runs
    pipeline.images_process(image_ids=batches[0])

    # Then each image ended with its own result, none retried
    assert [(image.status, image.error_code, image.attempts) for image in images_of(request)] == [
        ("failed", "not_an_image", 1),
        ("failed", "blocked_address", 1),
        ("succeeded", "", 1),
    ]
    request.refresh_from_db()
    assert (request.succeeded_images, request.failed_images) == (1, 2)


def failed_count(reason: str) -> float:
    return float(metrics.IMAGES.labels("failed", reason)._value.get())


def test_the_sweep_gives_up_through_the_same_record_as_a_batch_counters_and_metrics_alike(
    downloads: Downloads,
    django_capture_on_commit_callbacks: Capture,
    settings: Any,
    account: Account,
) -> None:
    # Given a URL, shared by two images, whose worker was lost on every attempt
    url = "https://shop.example/lost.jpg"
    request, _ = started(
        account, f"1,Lamp,{url}\n2,Lamp again,{url}\n", django_capture_on_commit_callbacks
    )
    long_ago = timezone.now() - timedelta(seconds=settings.WORK_LEASE_SECONDS + 1)
    ProductImage.objects.filter(request=request).update(
        status="processing", attempts=settings.IMAGE_MAX_ATTEMPTS, claimed_at=long_ago
    )
    metric_before = failed_count("internal_error")

    # When the sweep runs
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        call_command("sweep", stdout=open("/dev/null", "w"))  # noqa: SIM115

    # Then both images failed once, counted once on the request and in the metrics
    assert {(image.status, image.error_code) for image in images_of(request)} == {
        ("failed", "internal_error")
    }
    request.refresh_from_db()
    assert (request.succeeded_images, request.failed_images) == (0, 2)
    assert failed_count("internal_error") - metric_before == 2
    # and the request was finalised by the same sweep (the queued finalisation finds it done)
    assert request.status == "completed_with_errors"
    assert downloads.calls == []
    assert len(queued(callbacks, queue.REQUEST_FINALIZE)) == 1


def test_a_request_keeps_a_window_of_batches_queued_and_each_batch_that_ends_queues_the_next(
    downloads: Downloads,
    django_capture_on_commit_callbacks: Capture,
    settings: Any,
    account: Account,
) -> None:
    # Given a window of 2 batches of 2 URLs, and a request of 7 URLs
    settings.REQUEST_WINDOW_BATCHES, settings.IMAGE_BATCH_SIZE = 2, 2
    settings.IMAGE_BATCH_MAX_SIZE = 2  # batches that do not grow with what is learnt
    urls, rows = photos(downloads, 7)

    # When it starts, then only its first 2 batches are queued, in CSV order
    request, batches = started(account, rows, django_capture_on_commit_callbacks)
    ids = [image.pk for image in images_of(request)]
    assert batches == [ids[0:2], ids[2:4]]
    assert [image.queued_at is not None for image in images_of(request)] == [True] * 4 + [False] * 3

    # When the first batch ends, then the next batch takes its place
    assert batch_ended(django_capture_on_commit_callbacks, batches[0]) == [ids[4:6]]

    # And the last, smaller batch is queued once room for it is there
    assert batch_ended(django_capture_on_commit_callbacks, batches[1]) == [ids[6:7]]
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        pipeline.images_process(image_ids=ids[4:6])
        pipeline.images_process(image_ids=ids[6:7])
    assert queued(callbacks, queue.IMAGES_PROCESS) == []
    assert len(queued(callbacks, queue.REQUEST_FINALIZE)) == 1
    assert sorted(downloads.calls) == sorted(urls)


def test_a_request_that_fits_its_window_is_shared_between_the_worker_processes_at_its_start(
    downloads: Downloads,
    django_capture_on_commit_callbacks: Capture,
    settings: Any,
    account: Account,
) -> None:
    # Given three worker processes, batches of 8 URLs, and a request of 10 URLs
    settings.REQUEST_START_BATCHES, settings.IMAGE_BATCH_SIZE = 3, 8
    urls, rows = photos(downloads, 10)

    # When it starts, then it is queued whole in three batches, in CSV order, of 4, 3 and
    # 3 URLs (not 8 and 2: the request would wait for the process with 8)
    request, batches = started(account, rows, django_capture_on_commit_callbacks)
    ids = [image.pk for image in images_of(request)]
    assert batches == [ids[0:4], ids[4:7], ids[7:10]]

    # And when they have run, every image has its result and nothing more is queued
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        for batch in batches:
            pipeline.images_process(image_ids=batch)
    assert {image.status for image in images_of(request)} == {"succeeded"}
    assert queued(callbacks, queue.IMAGES_PROCESS) == []
    assert sorted(downloads.calls) == sorted(urls)


@pytest.mark.parametrize(
    ("window", "url_numbers", "first_batches"),
    [
        # 9 URLs in a window of 2 batches of 4: its first 8 URLs in two batches of 4
        (2, list(range(9)), [[0, 1, 2, 3], [4, 5, 6, 7]]),
        # 20 images over 5 URLs, each four times in a row, in a window of one batch of 4:
        # the rows read hold 2 of the URLs, fewer than the window's 4, and 3 more wait
        (1, [n // 4 for n in range(20)], [[0, 4]]),
    ],
    ids=["more-urls-than-the-window", "urls-repeated"],
)
def test_a_request_that_does_not_fit_its_window_starts_in_whole_batches(
    django_capture_on_commit_callbacks: Capture,
    settings: Any,
    account: Account,
    window: int,
    url_numbers: list[int],
    first_batches: list[list[int]],
) -> None:
    # Given three worker processes, batches of 4 URLs, and a request too large for its window
    settings.REQUEST_START_BATCHES, settings.REQUEST_WINDOW_BATCHES = 3, window
    settings.IMAGE_BATCH_SIZE = 4
    rows = "".join(
        f"{n + 1},P{n},https://shop.example/{number}.jpg\n" for n, number in enumerate(url_numbers)
    )

    # When it starts, then it is queued in batches of 4 as before, not spread
    request, batches = started(account, rows, django_capture_on_commit_callbacks)
    ids = [image.pk for image in images_of(request)]
    assert batches == [[ids[index] for index in batch] for batch in first_batches]


def test_batches_grow_to_the_bytes_a_batch_should_hold_once_the_images_sizes_are_known(
    downloads: Downloads,
    django_capture_on_commit_callbacks: Capture,
    settings: Any,
    account: Account,
) -> None:
    # Given batches of 2 URLs at first, a window of one batch, a batch meant to hold about
    # four of this request's images, and a request of 12 URLs (its end not spread over
    # processes)
    settings.REQUEST_WINDOW_BATCHES, settings.IMAGE_BATCH_SIZE = 1, 2
    settings.REQUEST_START_BATCHES = 1
    settings.IMAGE_BATCH_MAX_SIZE, settings.IMAGE_BATCH_BYTES = 8, 4 * len(JPEG)
    urls, rows = photos(downloads, 12)
    request, batches = started(account, rows, django_capture_on_commit_callbacks)
    ids = [image.pk for image in images_of(request)]
    assert batches == [ids[0:2]]

    # When each batch ends, then the next is larger, halfway to the size learnt each time
    sizes = []
    batch = batches[0]
    while batch:
        following = batch_ended(django_capture_on_commit_callbacks, batch)
        assert len(following) <= 1
        batch = following[0] if following else []
        sizes.append(len(batch))
    assert sizes == [3, 4, 3, 0]  # 2 -> 3 -> 4 (-> 4, with 3 URLs left)
    request.refresh_from_db()
    assert request.batch_size == 4
    assert request.status == "processing"  # its finalisation is queued, not yet run
    assert sorted(downloads.calls) == sorted(urls)


def test_a_request_whose_images_turn_out_larger_keeps_a_batch_in_flight_as_batches_shrink(
    downloads: Downloads,
    django_capture_on_commit_callbacks: Capture,
    settings: Any,
    account: Account,
) -> None:
    # Given a window of one batch, batches already grown to 8 on small images, and a batch
    # of two images whose photos turn out large (the request's last images are larger)
    settings.REQUEST_WINDOW_BATCHES, settings.IMAGE_BATCH_SIZE = 1, 2
    settings.IMAGE_BATCH_MAX_SIZE, settings.IMAGE_BATCH_BYTES = 8, len(JPEG)
    _, rows = photos(downloads, 12)
    request, batches = started(account, rows, django_capture_on_commit_callbacks)
    ProcessingRequest.objects.filter(pk=request.pk).update(batch_size=8)

    # When the batch ends, the size learnt halves towards 2 (the window shrinks by 4 URLs,
    # more than the 2 that ended)
    following = batch_ended(django_capture_on_commit_callbacks, batches[0])

    # Then a batch of the new size is queued all the same: the request goes on
    ids = [image.pk for image in images_of(request)]
    assert following == [ids[2:6]]
    request.refresh_from_db()
    assert request.batch_size == 4


def test_batches_queued_before_the_size_was_learnt_do_not_stay_small(
    downloads: Downloads,
    django_capture_on_commit_callbacks: Capture,
    settings: Any,
    account: Account,
) -> None:
    # Given batches of 2 URLs at first, a window of two batches, a batch meant to hold
    # about four of this request's images, and a request of 20 URLs
    settings.REQUEST_WINDOW_BATCHES, settings.IMAGE_BATCH_SIZE = 2, 2
    settings.REQUEST_START_BATCHES = 1
    settings.IMAGE_BATCH_MAX_SIZE, settings.IMAGE_BATCH_BYTES = 8, 4 * len(JPEG)
    urls, rows = photos(downloads, 20)
    _, waiting = started(account, rows, django_capture_on_commit_callbacks)

    # When the batches run in the order they were queued
    sizes = []
    while waiting:
        batch = waiting.pop(0)
        sizes.append(len(batch))
        waiting += batch_ended(django_capture_on_commit_callbacks, batch)

    # Then once the size is learnt every batch holds that many, but for the request's last:
    # the start's batches of 2 do not go on queueing batches of 2
    assert sizes == [2, 2, 3, 4, 4, 4, 1]
    assert sorted(downloads.calls) == sorted(urls)


def test_a_url_waiting_for_its_retry_does_not_hold_the_next_batch_back(
    downloads: Downloads,
    django_capture_on_commit_callbacks: Capture,
    settings: Any,
    account: Account,
) -> None:
    # Given a window of one batch of 2 URLs and a request of 8, whose second URL's origin
    # answers 503, asking for a 30 s wait
    settings.REQUEST_WINDOW_BATCHES, settings.REQUEST_START_BATCHES = 1, 1
    settings.IMAGE_BATCH_SIZE = settings.IMAGE_BATCH_MAX_SIZE = 2
    urls, rows = photos(downloads, 8)
    downloads.answers[urls[1]] = net.NetError(
        "http_503", "The server answered HTTP 503.", transient=True, retry_after=30
    )
    request, batches = started(account, rows, django_capture_on_commit_callbacks)

    # When the first batch ends
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        pipeline.images_process(image_ids=batches[0])

    # Then the next batch is queued beside the retry, which waits its 30 s
    ids = [image.pk for image in images_of(request)]
    tasks = queued(callbacks, queue.IMAGES_PROCESS)
    assert sorted((task.args[0], task.countdown is not None) for task in tasks) == [
        ([ids[1]], True),
        (ids[2:4], False),
    ]


def test_what_is_left_once_nothing_is_in_flight_is_shared_between_the_processes(
    downloads: Downloads,
    django_capture_on_commit_callbacks: Capture,
    settings: Any,
    account: Account,
) -> None:
    # Given a window of one batch of 4 URLs, three worker processes, and a request of 7
    settings.REQUEST_WINDOW_BATCHES, settings.REQUEST_START_BATCHES = 1, 3
    settings.IMAGE_BATCH_SIZE = settings.IMAGE_BATCH_MAX_SIZE = 4
    _, rows = photos(downloads, 7)
    request, batches = started(account, rows, django_capture_on_commit_callbacks)
    ids = [image.pk for image in images_of(request)]
    assert batches == [ids[0:4]]  # more than fits in the window: not spread

    # When that batch ends, nothing else of the request in flight
    following = batch_ended(django_capture_on_commit_callbacks, batches[0])

    # Then the last three URLs go in three batches, one for each process
    assert sorted(following) == [[ids[4]], [ids[5]], [ids[6]]]


def test_the_batch_size_learnt_stays_between_its_bounds(settings: Any) -> None:
    least, most, target = (
        settings.IMAGE_BATCH_SIZE,
        settings.IMAGE_BATCH_MAX_SIZE,
        settings.IMAGE_BATCH_BYTES,
    )
    assert batch_size_next(least, []) == least  # nothing learnt: as it was
    assert batch_size_next(least, [target * 2]) == least  # photos larger than a batch
    assert batch_size_next(most, [0, 0]) == most  # sources that had not changed
    assert batch_size_next(least, [target // most] * 3) == (least + most) // 2
    # WebP, AVIF and the perceptual search cost so much more than a batch that their
    # batches stay small
    for slow in ("webp", "avif"):
        assert batch_size_next(least, [target // most] * 3, output_format=slow) == least
        assert batch_size_next(most, [0], output_format=slow) == least
    assert batch_size_next(most, [0], quality_mode="perceptual") == least


def test_the_sweep_fills_a_window_that_nothing_is_left_to_fill(
    django_capture_on_commit_callbacks: Capture, settings: Any, account: Account
) -> None:
    # Given a request under way with nothing queued (its start was cut off after its claim)
    settings.REQUEST_WINDOW_BATCHES, settings.IMAGE_BATCH_SIZE = 1, 2
    settings.IMAGE_BATCH_MAX_SIZE = 2
    request, _ = started(
        account,
        "".join(f"{n + 1},P{n},https://shop.example/{n}.jpg\n" for n in range(5)),
        django_capture_on_commit_callbacks,
    )
    ProductImage.objects.filter(request=request).update(queued_at=None)

    # When the sweep runs
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        call_command("sweep", stdout=open("/dev/null", "w"))  # noqa: SIM115

    # Then the request's window is queued again, and no more
    ids = [image.pk for image in images_of(request)]
    assert [task.args[0] for task in queued(callbacks, queue.IMAGES_PROCESS)] == [ids[0:2]]
