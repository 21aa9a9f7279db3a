"""The sweep's bound on attempts, in process: an image whose worker keeps dying must end
as failed rather than leave its request processing for ever.

(The sweep's re-queueing of lost work is shown end to end in test_faults.py.)"""

import io
import logging
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import DataError, connection, transaction
from django.utils import timezone

import net
from accounts.models import Account
from config.celery import app
from processing import intake, pipeline, queue, sweep, webhooks
from processing.models import ProcessingRequest, ProductImage, WebhookDelivery
from processing.queue import QueuedTask
from tests.processing.in_process import Capture, queued, started

pytestmark = pytest.mark.django_db


def test_an_image_lost_too_often_fails_and_its_request_finishes(
    settings: Any, tmp_path: Path, account: Account
) -> None:
    # Given a request whose one image was claimed IMAGE_MAX_ATTEMPTS times, long ago
    settings.MEDIA_ROOT = tmp_path
    settings.IMAGE_MAX_ATTEMPTS = 3
    request = intake.request_create(
        account=account,
        csv_data=b"S. No.,Product Name,Input Image Urls\n1,Lamp,https://shop.example/a.jpg\n",
        public_base_url="http://testserver",
    )
    ProcessingRequest.objects.filter(pk=request.pk).update(status="processing")
    ProductImage.objects.filter(request=request).update(
        status="processing",
        attempts=3,
        claimed_at=timezone.now() - timedelta(seconds=settings.WORK_LEASE_SECONDS + 1),
    )

    # When the sweep runs
    said = io.StringIO()
    call_command("sweep", stdout=said)

    # Then the image has failed with its reason and the request has finished
    image = ProductImage.objects.get(request=request)
    assert image.status == "failed"
    assert image.error_code == "internal_error"
    assert image.error_message.startswith("Gave up after 3 attempts")
    request.refresh_from_db()
    assert request.status == "completed_with_errors"
    assert (request.succeeded_images, request.failed_images) == (0, 1)
    assert (tmp_path / request.output_csv_name).exists()
    # and the command said so in words (it printed the raw SweepReport(...))
    assert said.getvalue() == (
        "Sweep: 1 image failed, past IMAGE_MAX_ATTEMPTS; 1 request finished.\n"
    )
    said = io.StringIO()
    call_command("sweep", stdout=said)
    assert said.getvalue() == "Sweep: nothing was overdue.\n"


class WorkerStopped(BaseException):
    """Plays a worker killed during a download: nothing in the service catches it, so the
    image is left claimed, as a SIGKILL leaves it."""


@pytest.mark.parametrize("skew_minutes", [-10, 10])
def test_leases_are_judged_by_the_databases_clock_not_the_hosts(
    settings: Any,
    tmp_path: Path,
    account: Account,
    django_capture_on_commit_callbacks: Capture,
    monkeypatch: pytest.MonkeyPatch,
    skew_minutes: int,
) -> None:
    """A worker host whose clock was behind the sweep's by more than the lease had its
    images taken back while it worked on them; one ahead kept a dead worker's images for
    as long past the lease."""
    settings.MEDIA_ROOT = tmp_path
    urls = ["https://shop.example/a.jpg"]
    _, [batch] = started(account, f"1,Lamp,{urls[0]}\n", django_capture_on_commit_callbacks)

    # Given a worker host whose clock is off by ten minutes (faked: a host's clock cannot
    # be set here), that dies while downloading the image it claimed
    real_now = timezone.now
    monkeypatch.setattr(timezone, "now", lambda: real_now() + timedelta(minutes=skew_minutes))

    def worker_stops(*_: Any, **__: Any) -> None:
        raise WorkerStopped

    monkeypatch.setattr(net, "fetch_if_changed", worker_stops)
    with pytest.raises(WorkerStopped), django_capture_on_commit_callbacks(execute=False):
        pipeline.images_process(image_ids=batch)
    monkeypatch.setattr(timezone, "now", real_now)

    # When the sweep runs on a host with the right time, within the lease, then the image
    # is still the worker's
    assert call_sweep() == 0
    # and once the lease has passed, it is taken back
    settings.WORK_LEASE_SECONDS = 0
    assert call_sweep() == 1


def call_sweep() -> int:
    """The sweep's run: how many images it queued again."""
    return sweep.sweep_run().images_requeued


def test_a_request_whose_start_was_never_queued_starts_two_sweeps_later_not_one_lease(
    settings: Any, account: Account, django_capture_on_commit_callbacks: Capture
) -> None:
    """An upload the web could not queue (its broker away) was answered 202, and then
    waited pending for WORK_LEASE_SECONDS (5 minutes) after the broker came back."""
    # Given a request accepted while the broker was away: stored, its start never sent
    settings.SWEEP_INTERVAL = 30
    with django_capture_on_commit_callbacks(execute=False):
        request = intake.request_create(
            account=account,
            csv_data=b"S. No.,Product Name,Input Image Urls\n1,Lamp,https://shop.example/a.jpg\n",
            public_base_url="http://testserver",
        )

    # When the sweep runs within two sweeps of the upload, then it leaves the start be
    assert sweep.sweep_run().requests_restarted == 0

    # When it runs two sweeps (a minute) or more later, lease or not, however late, then
    # it queues the start
    def sweep_after(seconds: int) -> list[QueuedTask]:
        then = timezone.now() - timedelta(seconds=seconds)
        if seconds:
            ProcessingRequest.objects.filter(pk=request.pk).update(updated_at=then)
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            sweep.sweep_run()
        return queued(callbacks, queue.REQUEST_START)

    start = [QueuedTask(queue.REQUEST_START, (str(request.pk),))]
    assert sweep_after(61) == start
    # and not at the next sweep (a start waiting behind a long queue is not queued again
    # at every sweep), but two sweeps after it queued it
    assert sweep_after(0) == []
    assert sweep_after(91) == start


def test_a_due_webhook_send_is_queued_again_once_a_lease_not_at_every_sweep(
    settings: Any, account: Account, django_capture_on_commit_callbacks: Capture
) -> None:
    """Every sweep queued another send of every due delivery, whether or not one waited on
    the queue: behind receivers holding their answers, the webhooks queue grew from 8 to 54
    messages in 50 s."""
    # Given a finished request whose webhook is due, its send waiting behind others
    request = intake.request_create(
        account=account,
        csv_data=b"S. No.,Product Name,Input Image Urls\n1,Lamp,https://shop.example/a.jpg\n",
        public_base_url="http://testserver",
        webhook_url="https://hooks.example/x",
    )
    ProcessingRequest.objects.filter(pk=request.pk).update(status="completed")
    with django_capture_on_commit_callbacks(execute=False):
        webhooks.webhook_schedule(request=request)

    def sweep_after(seconds: int) -> list[QueuedTask]:
        if seconds:
            earlier = timezone.now() - timedelta(seconds=seconds)
            WebhookDelivery.objects.filter(request=request, queued_at__isnull=False).update(
                queued_at=earlier
            )
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            sweep.sweep_run()
        return queued(callbacks, queue.WEBHOOK_SEND)

    # When sweeps run, then the first queues its send once more (its first send may be lost)
    send = [QueuedTask(queue.WEBHOOK_SEND, (str(request.pk),))]
    assert sweep_after(0) == send
    # and the next ones do not, until WORK_LEASE_SECONDS after it
    assert sweep_after(0) == []
    assert sweep_after(settings.WORK_LEASE_SECONDS - 10) == []
    assert sweep_after(settings.WORK_LEASE_SECONDS + 1) == send


def test_a_lost_image_of_a_cancelled_request_says_what_happened_once(
    settings: Any, tmp_path: Path, account: Account
) -> None:
    """Its message ended "… (the worker was lost each time). Tried 3 times.", twice said."""
    # Given a cancelled request whose one image's worker was lost, on its third attempt
    settings.MEDIA_ROOT = tmp_path
    request = intake.request_create(
        account=account,
        csv_data=b"S. No.,Product Name,Input Image Urls\n1,Lamp,https://shop.example/a.jpg\n",
        public_base_url="http://testserver",
    )
    ProcessingRequest.objects.filter(pk=request.pk).update(
        status="processing", cancel_requested_at=timezone.now()
    )
    ProductImage.objects.filter(request=request).update(
        status="processing",
        attempts=3,
        claimed_at=timezone.now() - timedelta(seconds=settings.WORK_LEASE_SECONDS + 1),
    )

    # When the sweep gives it up, then its message says so once
    sweep.sweep_run()
    image = ProductImage.objects.get(request=request)
    assert image.error_message == (
        "Gave up after 3 attempts that never finished (the worker was lost each time)."
    )


@pytest.mark.django_db(transaction=True)
def test_a_sweep_started_while_another_runs_is_skipped_and_says_whose_it_is(
    account: Account, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Two celery beats (one on each of two hosts), or `manage.py sweep` during beat's,
    ran sweeps at once, each queueing every start and webhook send it found: twice."""
    # Given a finished request whose webhook is due, its send lost
    request = intake.request_create(
        account=account,
        csv_data=b"S. No.,Product Name,Input Image Urls\n1,Lamp,https://shop.example/a.jpg\n",
        public_base_url="http://testserver",
        webhook_url="https://hooks.example/x",
    )
    ProcessingRequest.objects.filter(pk=request.pk).update(status="completed")
    sent: list[tuple[str, tuple[Any, ...]]] = []
    monkeypatch.setattr(
        app, "send_task", lambda name, args, *_, **__: sent.append((name, tuple(args)))
    )
    webhooks.webhook_schedule(request=request)
    sent.clear()
    # and a sweep under way, held in its first step until the other has run
    first_inside, other_done = threading.Event(), threading.Event()
    first_step = sweep._requests_restart

    def held(now: Any) -> int:
        if not first_inside.is_set():
            first_inside.set()
            other_done.wait(timeout=20)
        return first_step(now)

    monkeypatch.setattr(sweep, "_requests_restart", held)

    def first_sweep() -> None:
        try:
            sweep.sweep_run()
        finally:
            connection.close()

    under_way = threading.Thread(target=first_sweep)
    under_way.start()
    assert first_inside.wait(timeout=20)

    # When an operator runs the sweep meanwhile
    said = io.StringIO()
    with caplog.at_level(logging.WARNING, logger="processing.sweep"):
        call_command("sweep", stdout=said)
    other_done.set()
    under_way.join(timeout=30)

    # Then it did nothing, and says that another sweep is under way, and whose
    assert said.getvalue().startswith("Sweep: skipped, another sweep is under way (")
    [warning] = [
        r.getMessage()
        for r in caplog.records
        if r.name == "processing.sweep" and r.levelno >= logging.WARNING
    ]
    assert warning.startswith("sweep: skipped, another sweep is under way (")
    assert "two celery beats running" in warning
    if connection.vendor == "postgresql":
        assert "PostgreSQL session " in warning
    # and the webhook's send was queued once, by the sweep under way
    assert sent == [(queue.WEBHOOK_SEND, (str(request.pk),))]
    # and once that sweep has ended, the next one runs
    assert sweep.sweep_run().skipped_for == ""


@pytest.mark.django_db(transaction=True)
def test_a_sweep_that_fails_within_a_transaction_lets_the_next_one_run() -> None:
    """The session's advisory lock outlived a sweep that failed within a transaction: its
    unlock ran in the aborted transaction, was refused, and every later sweep of any host
    was skipped for as long as the connection lived."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's advisory lock (SQLite's file lock has no transaction)")

    def other_sweep() -> list[str]:
        """What a sweep on another connection, as another host's, finds."""
        found: list[str] = []

        def run() -> None:
            try:
                found.append(sweep.sweep_run().skipped_for)
            finally:
                connection.close()

        thread = threading.Thread(target=run)
        thread.start()
        thread.join(timeout=30)
        return found

    def failing_sweep() -> None:
        with transaction.atomic(), sweep.sweep_exclusive() as holder:
            assert holder == ""
            [skipped_for] = other_sweep()
            assert skipped_for.startswith("PostgreSQL session ")
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1/0")

    # Given a sweep under way within a transaction, which others wait for, when it fails on
    # a database error
    with pytest.raises(DataError):
        failing_sweep()

    # Then its connection holds no lock, and the next sweep, elsewhere, runs
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
        )
        assert cursor.fetchone() == (0,)
    assert other_sweep() == [""]
