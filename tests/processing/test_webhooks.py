"""Webhook deliveries in process: where they may go is their own policy, and what a user
reads of a refusal says nothing of the network behind it."""

import io
import json
import logging
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import kombu.exceptions
import pytest
from django.core.cache.backends.filebased import FileBasedCache
from django.core.cache.backends.redis import RedisCache
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

import net
from accounts.models import Account
from config.celery import app
from processing import control, expiry, intake, queue, sweep, webhooks
from processing.exceptions import WebhookPending
from processing.models import ProcessingRequest, WebhookAttempt, WebhookDelivery
from processing.policies import webhook_policy
from tests.harness.origin import Origin
from tests.support import a_minute_with_seconds_left

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def policy_of_the_tests_settings() -> Iterator[None]:
    """webhook_policy() reads settings once per process: again for each test, and after."""
    webhook_policy.cache_clear()
    yield
    webhook_policy.cache_clear()


def finished_request(account: Account, webhook_url: str) -> ProcessingRequest:
    request = intake.request_create(
        account=account,
        csv_data=b"S. No.,Product Name,Input Image Urls\n1,Lamp,https://shop.example/a.jpg\n",
        public_base_url="http://testserver",
        webhook_url=webhook_url,
    )
    ProcessingRequest.objects.filter(pk=request.pk).update(status="completed")
    request.refresh_from_db()
    return request


def test_a_webhook_to_a_name_of_a_private_address_fails_once_saying_nothing_of_it(
    account: Account, caplog: pytest.LogCaptureFixture, settings: Any
) -> None:
    # Given webhooks with no network allowed beyond the public ones (the default), and a
    # request whose webhook names a host that resolves to loopback
    settings.WEBHOOK_ALLOW_NETWORKS, settings.WEBHOOK_ALLOW_PORTS = [], []
    request = finished_request(account, "http://localhost/hook")
    webhooks.webhook_schedule(request=request)

    # When its delivery is attempted
    with caplog.at_level(logging.WARNING, logger="net.addresses"):
        webhooks.webhook_send(request_id=request.pk)

    # Then it failed for good, at once, in words that name no address
    delivery = WebhookDelivery.objects.get(request=request)
    assert (delivery.state, delivery.attempts) == ("failed", 1)
    assert delivery.last_error == "blocked_address: The address is not allowed. (not retried)"
    # while the operator's log says where the name led
    assert "localhost:80 refused: it resolves to 127.0.0.1" in caplog.text


def test_a_webhook_to_a_name_that_does_not_resolve_is_tried_again_later(
    account: Account, settings: Any
) -> None:
    # Given a request whose webhook names a host no resolver knows (.invalid never
    # resolves: RFC 2606), which its owner may yet set up
    settings.WEBHOOK_RETRY_SCHEDULE = [3600]
    request = finished_request(account, "https://hooks.invalid/x")
    webhooks.webhook_schedule(request=request)

    # When its delivery is attempted
    webhooks.webhook_send(request_id=request.pk)

    # Then it failed for now, with the next attempt planned: retried as a 500 would be
    delivery = WebhookDelivery.objects.get(request=request)
    assert (delivery.state, delivery.attempts) == ("pending", 1)
    assert delivery.last_error.startswith("dns_error: Could not resolve hooks.invalid")
    assert not delivery.last_error.endswith("(not retried)")
    assert delivery.next_attempt_at is not None


def test_the_image_fetchers_allowances_do_not_open_the_webhooks(settings: Any) -> None:
    settings.IMAGE_FETCH_ALLOW_NETWORKS, settings.IMAGE_FETCH_ALLOW_PORTS = ["10.0.0.0/8"], [9000]
    settings.WEBHOOK_ALLOW_NETWORKS, settings.WEBHOOK_ALLOW_PORTS = [], []
    policy = webhook_policy()
    assert policy.allowed_networks == ()
    assert policy.allowed_ports == frozenset({80, 443})
    assert policy.max_redirects == 0


def test_an_attempt_under_way_when_the_request_is_retried_records_nothing(
    account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a delivery whose POST is under way when the owner retries the request (which
    # deletes the delivery: the next finish makes a new event); the receiver is faked at
    # net.post, the one thing here that would leave the machine
    request = finished_request(account, "https://hooks.example/x")
    webhooks.webhook_schedule(request=request)

    def retried_meanwhile(*_: Any) -> net.Posted:
        WebhookDelivery.objects.filter(request=request).delete()
        return net.Posted(200)

    monkeypatch.setattr(net, "post", retried_meanwhile)

    # When the attempt ends, it records nothing and raises nothing
    webhooks.webhook_send(request_id=request.pk)
    assert not WebhookDelivery.objects.filter(request=request).exists()
    assert not WebhookAttempt.objects.filter(delivery__request=request).exists()


@pytest.mark.parametrize(
    ("by_owner", "why"), [(False, expiry.EXPIRED_ERROR), (True, expiry.DELETED_ERROR)]
)
def test_a_webhook_still_retrying_when_its_request_expires_is_not_sent(
    account: Account, settings: Any, by_owner: bool, why: str
) -> None:
    """It was attempted again after expiry, telling its receiver of a completed request
    whose output CSV answered 410; the resend command sent it too. The same when its
    account deletes the request."""
    # Given a finished request whose webhook is still waiting for another attempt
    settings.WEBHOOK_RETRY_SCHEDULE = [0]
    request = finished_request(account, "https://hooks.invalid/x")
    webhooks.webhook_schedule(request=request)
    webhooks.webhook_send(request_id=request.pk)
    assert WebhookDelivery.objects.get(request=request).state == "pending"

    # When the request expires, or its account deletes it
    ProcessingRequest.objects.filter(pk=request.pk).update(finished_at=timezone.now())
    assert expiry.request_mark_expired(
        request_id=request.pk, cutoff=timezone.now(), by_owner=by_owner
    )

    # Then no further attempt is made, and the delivery says why
    webhooks.webhook_send(request_id=request.pk)
    delivery = WebhookDelivery.objects.get(request=request)
    assert (delivery.state, delivery.attempts) == ("failed", 1)
    assert delivery.last_error == why
    # nor can an operator send it again
    said = "was deleted by its account" if by_owner else "has expired"
    with pytest.raises(CommandError, match=said):
        call_command("webhook_resend", str(request.pk))


@pytest.mark.django_db
def test_a_resend_while_a_delivery_waits_makes_its_next_attempt_now_and_only_once(
    account: Account, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A receiver mended after a failure waited out the schedule (up to hours): a resend
    was refused until the delivery had ended."""
    # Given a finished request whose webhook failed once and waits an hour for its next
    # attempt (the receiver is faked at net.post, the one thing here that would leave the
    # machine)
    settings.WEBHOOK_RETRY_SCHEDULE = [3600, 3600]
    answers = [500, 204]
    monkeypatch.setattr(net, "post", lambda *_: net.Posted(answers.pop(0)))
    request = finished_request(account, "https://hooks.example/x")
    webhooks.webhook_schedule(request=request)
    webhooks.webhook_send(request_id=request.pk)
    waiting = WebhookDelivery.objects.get(request=request)
    assert (waiting.state, waiting.attempts) == ("pending", 1)

    # When it is sent again, twice, through the API's service and the command
    again = webhooks.webhook_resend(request=request)
    call_command("webhook_resend", str(request.pk), stdout=io.StringIO())

    # Then its next attempt is due now, with the attempt it made kept
    assert again is not None
    assert (again.state, again.attempts) == ("pending", 1)
    assert again.next_attempt_at is not None
    assert again.next_attempt_at <= timezone.now()
    # and the sends both resends queued make it once, delivered
    webhooks.webhook_send(request_id=request.pk)
    webhooks.webhook_send(request_id=request.pk)
    delivered = WebhookDelivery.objects.get(request=request)
    assert (delivered.state, delivered.attempts) == ("delivered", 2)
    assert answers == []


@pytest.mark.django_db(transaction=True)
def test_a_resend_while_the_broker_is_away_says_nothing_was_queued_and_the_sweep_sends_it(
    account: Account, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command printed "Queued msg_… to …" (and exited 0) when the broker had refused
    the send: nothing was queued until the sweep found the delivery due."""
    # Given a finished request whose webhook was delivered (the receiver is faked at
    # net.post, the one thing here that would leave the machine)
    settings.SWEEP_INTERVAL = 30
    monkeypatch.setattr(net, "post", lambda *_: net.Posted(204))
    request = finished_request(account, "https://hooks.example/x")
    webhooks.webhook_schedule(request=request)
    webhooks.webhook_send(request_id=request.pk)
    # and a broker that refuses connections, as kombu says so
    sent: list[tuple[str, Any]] = []

    def broker_away(*_: Any, **__: Any) -> None:
        raise kombu.exceptions.OperationalError("Error 111 connecting to 127.0.0.1:6379.")

    monkeypatch.setattr(app, "send_task", broker_away)

    # When an operator sends it again
    said = io.StringIO()
    call_command("webhook_resend", str(request.pk), stdout=said)

    # Then the command says that nothing was queued, and what will happen
    delivery = WebhookDelivery.objects.get(request=request)
    assert said.getvalue() == (
        "Not queued: the broker is unavailable (Error 111 connecting to 127.0.0.1:6379.). "
        f"{delivery.event_id} to https://hooks.example/x is due now: the sweep queues it "
        "within 30 s of the broker answering again.\n"
    )
    assert (delivery.state, delivery.attempts) == ("pending", 0)
    # and once the broker is back, the sweep queues its send
    monkeypatch.setattr(
        app, "send_task", lambda name, args, *_, **__: sent.append((name, tuple(args)))
    )
    sweep.sweep_run()
    assert (queue.WEBHOOK_SEND, (str(request.pk),)) in sent


@pytest.mark.django_db
def test_a_resend_while_an_attempt_is_being_made_is_refused_and_changes_nothing(
    account: Account, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resend reset the attempts that claim each send: forty resends at once made fourteen
    POSTs to the receiver, each starting the whole schedule again."""
    settings.WEBHOOK_RETRY_SCHEDULE = [3600]
    request = finished_request(account, "https://hooks.example/x")
    webhooks.webhook_schedule(request=request)
    refusals: list[WebhookPending] = []
    during: list[tuple[str, int, Any]] = []

    def receiver(*_: Any) -> net.Posted:
        # When it is sent again while the POST is under way
        with pytest.raises(WebhookPending) as refused:
            webhooks.webhook_resend(request=request)
        refusals.append(refused.value)
        with pytest.raises(CommandError, match="being delivered"):
            call_command("webhook_resend", str(request.pk))
        now = WebhookDelivery.objects.get(request=request)
        during.append((now.state, now.attempts, now.next_attempt_at))
        return net.Posted(500)

    monkeypatch.setattr(net, "post", receiver)
    webhooks.webhook_send(request_id=request.pk)

    # Then both are refused, saying when the next attempt is, and the attempt was left as
    # it was: its one failure recorded, the schedule's next attempt an hour away
    [(state, attempts, lease_ends)] = during
    assert (state, attempts) == ("pending", 1)  # the attempt claimed, as under way
    [refused] = refusals
    assert refused.code == "webhook_pending"
    # in UTC with a Z, as every other time the API gives
    when = lease_ends.isoformat().replace("+00:00", "Z")
    assert refused.details == [{"state": state, "next_attempt_at": when}]
    assert when.endswith("Z")
    after = WebhookDelivery.objects.get(request=request)
    assert (after.state, after.attempts, after.last_status_code) == ("pending", 1, 500)
    assert after.next_attempt_at is not None
    assert after.next_attempt_at > timezone.now() + timedelta(minutes=59)

    # And once it has ended, it can be sent again from the first attempt
    WebhookDelivery.objects.filter(pk=after.pk).update(state=WebhookDelivery.State.FAILED)
    again = webhooks.webhook_resend(request=request)
    assert again is not None
    assert (again.state, again.attempts) == ("pending", 0)


def test_a_resend_racing_a_retry_is_refused_as_not_finished_and_schedules_nothing(
    account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A retry that committed after the asker read the request finished had deleted its
    delivery: the resend answered 500 (23 of 30 collisions), or scheduled an event saying
    "processing" under an id that the retry's own finish then found delivered, and never
    sent."""
    # Given a request that failed as a whole, its webhook delivered (the receiver is faked
    # at net.post, the one thing here that would leave the machine), as the API read it
    monkeypatch.setattr(net, "post", lambda *_: net.Posted(204))
    request = finished_request(account, "https://hooks.example/x")
    ProcessingRequest.objects.filter(pk=request.pk).update(status="failed")
    seen = ProcessingRequest.objects.get(pk=request.pk)
    webhooks.webhook_schedule(request=seen)
    webhooks.webhook_send(request_id=seen.pk)
    # and retried since, by someone else
    control.request_retry(request=ProcessingRequest.objects.get(pk=request.pk))

    # When its webhook is sent again
    with pytest.raises(webhooks.RequestRunning):
        webhooks.webhook_resend(request=seen)

    # Then nothing is scheduled: the retry's finish sends an event of its own
    assert not WebhookDelivery.objects.filter(request=request).exists()
    assert ProcessingRequest.objects.get(pk=request.pk).status == "processing"


def test_a_resend_of_a_request_still_running_is_refused_by_the_api_and_the_command(
    account: Account, api: APIClient
) -> None:
    # Given a request that has not finished
    request = finished_request(account, "https://hooks.example/x")
    ProcessingRequest.objects.filter(pk=request.pk).update(status="processing")

    # When its webhook is asked for again, through the API and the command
    answer = api.post(f"/api/requests/{request.pk}/webhook/")

    # Then both say it has not finished, and nothing is scheduled
    assert answer.status_code == 409
    assert answer.json()["code"] == "not_finished"
    assert answer.json()["error"] == (
        "The request has not finished; its webhook is sent when it does."
    )
    with pytest.raises(CommandError, match=r"^The request has not finished; its webhook is sent"):
        call_command("webhook_resend", str(request.pk))
    assert not WebhookDelivery.objects.filter(request=request).exists()


class WorkerStopped(BaseException):
    """Plays a worker killed during its POST (a time limit, the OOM killer): nothing in the
    service catches it, so the database is left as a SIGKILL leaves it."""


def test_attempts_whose_worker_stopped_during_them_are_logged_and_count_against_the_schedule(
    account: Account, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    # Given a delivery with two attempts in its schedule and no wait between them, whose
    # every POST outlives the worker making it (the receiver is faked at net.post, the one
    # thing here that would leave the machine)
    settings.WEBHOOK_RETRY_SCHEDULE, settings.WORK_LEASE_SECONDS = [0], 0
    request = finished_request(account, "https://hooks.example/x")
    webhooks.webhook_schedule(request=request)

    def worker_stopped(*_: Any) -> net.Posted:
        log = list(WebhookAttempt.objects.filter(delivery__request=request).values("error"))
        assert log[-1] == {"error": "Under way."}  # logged when it starts
        raise WorkerStopped

    monkeypatch.setattr(net, "post", worker_stopped)

    # When both attempts are made, and the sweep finds the delivery due once more
    for _ in range(2):
        with pytest.raises(WorkerStopped):
            webhooks.webhook_send(request_id=request.pk)
    webhooks.webhook_send(request_id=request.pk)

    # Then the delivery has failed, and its log says each attempt did not finish
    delivery = WebhookDelivery.objects.get(request=request)
    assert (delivery.state, delivery.attempts, delivery.next_attempt_at) == ("failed", 2, None)
    assert delivery.last_error == webhooks.UNFINISHED
    log = WebhookAttempt.objects.filter(delivery=delivery).values_list("error", flat=True)
    assert list(log) == [webhooks.UNFINISHED] * 2


# --- A test event, for whoever sets up a receiver -------------------------------------


@pytest.fixture
def receiver_allowed(settings: Any, origin: Origin) -> Origin:
    """The tests' origin on 127.0.0.1 as the receiver, allowed explicitly: webhooks reach
    public addresses on ports 80 and 443 alone."""
    settings.WEBHOOK_ALLOW_NETWORKS, settings.WEBHOOK_ALLOW_PORTS = ["127.0.0.1/32"], [origin.port]
    webhook_policy.cache_clear()
    return origin


def test_a_test_event_reaches_the_receiver_signed_as_every_event_is(
    receiver_allowed: Origin, api: APIClient, account: Account
) -> None:
    path = f"/hooks/{uuid.uuid4().hex}"
    url = receiver_allowed.base_url + path
    answer = api.post("/api/webhook-test/", {"url": url}, format="json")

    assert answer.status_code == 200
    sent = answer.json()
    assert sent == {
        "event_id": sent["event_id"],
        "url": url,
        "status_code": 204,
        "error": "",
        "duration_ms": sent["duration_ms"],
        "delivered": True,
    }
    [(headers, body)] = receiver_allowed.posts_to(path)
    assert json.loads(body) == {
        "type": "test",
        "account": account.name,
        "message": webhooks.TEST_MESSAGE,
        "sent_at": json.loads(body)["sent_at"],
    }
    # The receiver's check, as a Standard Webhooks library makes it with the account's secret
    assert headers["webhook-id"] == sent["event_id"]
    assert headers["webhook-signature"] == webhooks.webhook_signature(
        secret=account.webhook_secret,
        event_id=sent["event_id"],
        timestamp=int(headers["webhook-timestamp"]),
        body=body,
    )


def test_a_test_event_says_what_the_receiver_answered_and_is_not_retried(
    receiver_allowed: Origin, api: APIClient
) -> None:
    path = f"/hooks/{uuid.uuid4().hex}"
    receiver_allowed.post_statuses[path] = [500]
    answer = api.post("/api/webhook-test/", {"url": receiver_allowed.base_url + path})
    assert answer.status_code == 200
    assert (answer.json()["delivered"], answer.json()["status_code"]) == (False, 500)
    assert answer.json()["error"] == "HTTP 500"
    assert len(receiver_allowed.posts_to(path)) == 1
    assert not WebhookDelivery.objects.exists()


def test_a_redirect_is_told_with_where_it_pointed_cut_short(
    receiver_allowed: Origin, api: APIClient
) -> None:
    """A receiver that redirected was told "HTTP 302" alone: where to, its owner had to
    find out by other means."""
    # Given receivers that redirect, one to a URL of 5,000 characters
    short, long = f"/hooks/{uuid.uuid4().hex}", f"/hooks/{uuid.uuid4().hex}"
    final = "https://hooks.example/final"
    for path, location in ((short, final), (long, final + "/" + "x" * 5000)):
        receiver_allowed.post_statuses[path] = [302]
        receiver_allowed.post_headers[path] = {"Location": location}

    # When a test event is sent to each
    told = [
        api.post("/api/webhook-test/", {"url": receiver_allowed.base_url + path}).json()
        for path in (short, long)
    ]

    # Then each says where it was sent, the long one cut at 200 characters
    assert [(answer["delivered"], answer["status_code"]) for answer in told] == [(False, 302)] * 2
    advice = " (redirects are not followed: give the final URL)"
    assert told[0]["error"] == f"HTTP 302 to {final}{advice}"
    cut = (final + "/" + "x" * 5000)[:200]
    assert told[1]["error"] == f"HTTP 302 to {cut}…{advice}"


def test_a_test_event_goes_only_where_webhooks_may(origin: Origin, api: APIClient) -> None:
    # The tests' origin is on 127.0.0.1, not allowed here: refused before anything is sent
    path = f"/hooks/{uuid.uuid4().hex}"
    refused = api.post("/api/webhook-test/", {"url": origin.base_url + path})
    assert refused.status_code == 400
    assert refused.json()["code"] == "invalid_input"
    assert refused.json()["details"][0]["field"] == "url"
    assert origin.posts_to(path) == []
    # Nor is anything but its one field taken
    unknown = api.post("/api/webhook-test/", {"url": "https://hooks.example/x", "urll": "x"})
    assert unknown.json()["details"] == [
        {"field": "urll", "message": "Unknown field. The fields are url."}
    ]


def test_test_events_are_limited_per_account_and_say_when_to_try_again(
    receiver_allowed: Origin, api: APIClient
) -> None:
    path = f"/hooks/{uuid.uuid4().hex}"
    url = receiver_allowed.base_url + path
    a_minute_with_seconds_left(15)
    answers = [api.post("/api/webhook-test/", {"url": url}) for _ in range(11)]
    assert [answer.status_code for answer in answers] == [200] * 10 + [429]
    refused = answers[-1]
    assert refused.json()["code"] == "throttled"
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert len(receiver_allowed.posts_to(path)) == 10


def test_a_person_sends_a_test_event_from_the_account_page(
    receiver_allowed: Origin, member_client: Client
) -> None:
    path = f"/hooks/{uuid.uuid4().hex}"
    url = receiver_allowed.base_url + path
    token = str(member_client.get("/account/").context["csrf_token"])
    shown = member_client.post("/account/webhook-test/", {"url": url, "csrfmiddlewaretoken": token})
    assert shown.status_code == 200
    text = " ".join(shown.content.decode().split())
    assert "Delivered</span>: the receiver answered 204" in text
    [(headers, _)] = receiver_allowed.posts_to(path)
    assert f"<code>{headers['webhook-id']}</code>" in text
    # A URL webhooks may not reach is refused, saying why, and kept in its field
    refused = member_client.post(
        "/account/webhook-test/", {"url": "ftp://x/y", "csrfmiddlewaretoken": token}
    )
    assert refused.status_code == 400
    assert refused.context["test_url"] == "ftp://x/y"
    assert refused.context["test_error"]


def test_a_test_event_waits_for_none_under_way_in_its_process_and_is_not_counted(
    receiver_allowed: Origin, api: APIClient
) -> None:
    """A receiver holding its answer held a web thread: twenty at once held most of the
    web server. One is under way in a process at a time; the next is told to come back."""
    path = f"/hooks/{uuid.uuid4().hex}"
    url = receiver_allowed.base_url + path
    with webhooks._TEST_IN_FLIGHT:  # another test event under way in this process
        busy = api.post("/api/webhook-test/", {"url": url})
    assert busy.status_code == 503
    assert busy.json()["code"] == "server_busy"
    assert busy["Retry-After"] == "5"
    assert receiver_allowed.posts_to(path) == []
    answers = [api.post("/api/webhook-test/", {"url": url}).status_code for _ in range(10)]
    assert answers == [200] * 10  # the busy one was not counted


@pytest.mark.django_db(transaction=True)
def test_test_events_sent_at_once_are_counted_exactly_with_the_embedded_file_cache(
    settings: Any, tmp_path: Path, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file cache reads and writes a count in two steps: forty events sent at once all
    went through."""
    files = FileBasedCache(str(tmp_path / "cache"), {})
    monkeypatch.setattr(webhooks, "cache", files)
    outcomes: list[str] = []
    start = threading.Barrier(20)

    def count_one() -> None:
        start.wait()
        try:
            webhooks._test_counted(account)
            outcomes.append("counted")
        except webhooks.TooManyTests:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=count_one) for _ in range(20)]
    a_minute_with_seconds_left(15)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["counted"] * 10 + ["refused"] * 10


def test_a_test_event_is_sent_while_the_cache_is_away(
    receiver_allowed: Origin, api: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Redis away: as an upload, not refused for it (it was a 500)
    away = RedisCache("redis://127.0.0.1:1/0", {})
    monkeypatch.setattr(webhooks, "cache", away)
    path = f"/hooks/{uuid.uuid4().hex}"
    answer = api.post("/api/webhook-test/", {"url": receiver_allowed.base_url + path})
    assert answer.status_code == 200
    assert answer.json()["delivered"]
