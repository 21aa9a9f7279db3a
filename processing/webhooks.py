"""Webhook deliveries: one signed event per finished request, retried on a schedule, every
attempt recorded. A webhook that fails never changes the request's own result.

Signatures follow the Standard Webhooks specification: headers `webhook-id` (the same for
every attempt of one event), `webhook-timestamp` and `webhook-signature`, `v1,` + base64
HMAC-SHA256 of `id.timestamp.body` under the request's account's secret (`whsec_` +
base64). While a rotated secret's overlap lasts, the header carries a signature under each
secret, separated by a space, and a receiver that knows either verifies it.
"""

import base64
import binascii
import dataclasses
import hashlib
import hmac
import json
import logging
import random
import threading
import time
import uuid
from datetime import datetime, timedelta
from typing import Any, Final

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.utils import timezone

import net
from accounts.models import Account
from accounts.services import account_lock
from processing import metrics, queue, selectors
from processing.exceptions import WebhookPending
from processing.models import ProcessingRequest, WebhookAttempt, WebhookDelivery, new_event_id
from processing.policies import webhook_policy

logger = logging.getLogger(__name__)

# Retries due sooner than this are queued with a countdown; later ones are left to the
# sweep (a broker may not hold a delayed message for hours).
COUNTDOWN_LIMIT_SECONDS = 300


def webhook_signature(*, secret: str, event_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value for one attempt."""
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except binascii.Error:
        raise ImproperlyConfigured("A webhook secret must be 'whsec_' + base64.") from None
    signed = f"{event_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def webhook_schedule(*, request: ProcessingRequest) -> WebhookDelivery | None:
    """Record the finished request's event for delivery and queue its first attempt."""
    url = request.webhook_url or settings.WEBHOOK_URL
    if not url:
        return None
    request.refresh_from_db()
    delivery, _ = WebhookDelivery.objects.get_or_create(
        request=request,
        defaults={
            "url": url,
            "payload": selectors.request_status_payload(request),
            "next_attempt_at": timezone.now(),
        },
    )
    queue.enqueue_after_commit(queue.WEBHOOK_SEND, str(request.pk))
    return delivery


def webhook_send(*, request_id: uuid.UUID) -> None:
    """Make one attempt at a due delivery, record it, and schedule the next if it failed."""
    now = timezone.now()
    delivery = (
        WebhookDelivery.objects.select_related("request__account")
        .filter(
            request_id=request_id,
            state=WebhookDelivery.State.PENDING,
            next_attempt_at__lte=now,
            request__expired_at__isnull=True,  # its results are gone (expiry.py)
        )
        .first()
    )
    if delivery is None:
        return
    if delivery.attempts > len(retry_schedule()):
        # Its last attempt was claimed and never recorded: its worker stopped during it.
        _unfinished_fail(delivery)
        return
    attempt = _attempt_claim(delivery, now)
    if attempt is None:
        return
    status_code, error, duration_ms = _deliver(delivery)
    _attempt_record(delivery, attempt, status_code, error, duration_ms)


# An attempt is recorded as under way when it is claimed: one whose worker stopped during it
# (its time limit, a crash, a restart) stays in the log as not finished, and counts against
# the schedule. Unrecorded, a receiver that held every POST past the task's time limit kept
# its delivery pending for ever, retried after each lease.
UNDER_WAY: Final = "Under way."
UNFINISHED: Final = (
    "Did not finish: the worker making it stopped (a time limit, a crash or a restart)."
)


def _attempt_claim(delivery: WebhookDelivery, now: datetime) -> WebhookAttempt | None:
    """Claim delivery's next attempt and log it as under way; None if another worker has
    (a second copy of this task finds the attempts already moved on)."""
    with transaction.atomic():
        claimed = WebhookDelivery.objects.filter(
            pk=delivery.pk, state=WebhookDelivery.State.PENDING, attempts=delivery.attempts
        ).update(attempts=delivery.attempts + 1, next_attempt_at=now + _lease())
        if not claimed:
            return None
        _unfinished_mark(delivery)
        return WebhookAttempt.objects.create(
            delivery=delivery, attempted_at=now, error=UNDER_WAY, duration_ms=0
        )


def _unfinished_mark(delivery: WebhookDelivery) -> None:
    """Attempts still logged as under way when another starts or the delivery fails: their
    workers stopped during them."""
    delivery.attempt_log.filter(error=UNDER_WAY).update(error=UNFINISHED)


def _unfinished_fail(delivery: WebhookDelivery) -> None:
    with transaction.atomic():
        failed = WebhookDelivery.objects.filter(
            pk=delivery.pk, state=WebhookDelivery.State.PENDING, attempts=delivery.attempts
        ).update(state=WebhookDelivery.State.FAILED, next_attempt_at=None, last_error=UNFINISHED)
        if failed:
            _unfinished_mark(delivery)
            logger.info("webhook %s failed: its last attempt did not finish", delivery.event_id)


class ResultsGone(Exception):
    """The request expired, or its account deleted it, as its webhook was asked for again."""


class RequestRunning(Exception):
    """The request was retried, and runs again, since the asker saw it finished."""


def webhook_resend(*, request: ProcessingRequest) -> WebhookDelivery | None:
    """Deliver a finished request's event again (same event id): from the first attempt
    once its delivery has ended (delivered or failed); while it waits for its next attempt,
    that attempt now (a receiver mended need not wait out the schedule's hours). While an
    attempt is being made, refused (WebhookPending): a resend reset the attempts that claim
    each send, so forty resends at once made fourteen POSTs to the receiver."""
    with transaction.atomic():
        # The request's row held, as a retry holds it: a retry that committed after the
        # asker read the request finished had deleted its delivery, so a resend answered
        # 500 (23 of 30 collisions), or scheduled an event saying "processing" under the id
        # the retry's own finish then found delivered, and never sent.
        locked = ProcessingRequest.objects.select_for_update().get(pk=request.pk)
        if locked.expired_at is not None:
            raise ResultsGone
        if not locked.is_finished:
            raise RequestRunning
        return _resend_locked(locked)


def _resend_locked(request: ProcessingRequest) -> WebhookDelivery | None:
    delivery = WebhookDelivery.objects.filter(request=request).first()
    if delivery is None:
        return webhook_schedule(request=request)
    now = timezone.now()
    live = WebhookDelivery.objects.filter(pk=delivery.pk)
    restarted = live.filter(
        state__in=[WebhookDelivery.State.DELIVERED, WebhookDelivery.State.FAILED]
    ).update(state=WebhookDelivery.State.PENDING, attempts=0, next_attempt_at=now)
    if not restarted:
        # Its attempts as read, none of them under way (a claim since moves them on): the
        # sends each resend queues claim the one attempt, which is made once.
        restarted = (
            live.filter(state=WebhookDelivery.State.PENDING, attempts=delivery.attempts)
            .exclude(attempt_log__error=UNDER_WAY)
            .update(next_attempt_at=now)
        )
    if not restarted:
        delivery.refresh_from_db()
        next_attempt = selectors.timestamp(delivery.next_attempt_at)  # ...Z, as every other
        raise WebhookPending(details=[{"state": delivery.state, "next_attempt_at": next_attempt}])
    queue.enqueue_after_commit(queue.WEBHOOK_SEND, str(request.pk))
    delivery.refresh_from_db()
    return delivery


# What waiting will not mend: the policy's refusals. A name that does not resolve or a
# certificate that is refused is retried, unlike an image's: the receiver is the user's
# own server, which its owner may mend within the schedule's hours.
NOT_RETRIED: Final = frozenset(
    {net.NetReason.BLOCKED_ADDRESS, net.NetReason.BLOCKED_PORT, net.NetReason.INVALID_URL}
)


def retry_schedule() -> list[float]:
    return [float(item) for item in settings.WEBHOOK_RETRY_SCHEDULE]


def _deliver(delivery: WebhookDelivery) -> tuple[int | None, str, int]:
    return _post_signed(
        url=delivery.url,
        payload=delivery.payload,
        event_id=delivery.event_id,
        account=delivery.request.account,
    )


def _post_signed(
    *,
    url: str,
    payload: dict[str, Any],
    event_id: str,
    account: Account,
    policy: net.NetPolicy | None = None,
) -> tuple[int | None, str, int]:
    """POST payload to url, signed with the account's secrets, under the webhooks' policy:
    the status code, an error ("" for 2xx) and the milliseconds it took."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "webhook-id": event_id,
        "webhook-timestamp": str(timestamp),
    }
    headers["webhook-signature"] = " ".join(
        webhook_signature(secret=secret, event_id=event_id, timestamp=timestamp, body=body)
        for secret in account.signing_secrets(timezone.now())
    )
    started = time.monotonic()
    try:
        posted = net.post(url, body, headers, policy or webhook_policy())
        status_code: int | None = posted.status
        error = "" if 200 <= posted.status < 300 else f"HTTP {posted.status}"
        if 300 <= posted.status < 400:
            # "HTTP 302" alone left the receiver's owner to guess where it pointed.
            where = f" to {posted.location}" if posted.location else ""
            error = f"{error}{where} (redirects are not followed: give the final URL)"
    except net.NetError as failure:
        status_code, error = None, f"{failure.reason}: {failure.message}"
        if failure.reason in NOT_RETRIED:
            error = f"{error} (not retried)"
    return status_code, error, int((time.monotonic() - started) * 1000)


@dataclasses.dataclass(frozen=True)
class TestEvent:
    """What one test event met at its receiver."""

    event_id: str
    url: str
    status_code: int | None
    error: str
    duration_ms: int

    @property
    def delivered(self) -> bool:
        return not self.error


TEST_MESSAGE: Final = (
    "A test event: a receiver that checks this event's webhook-signature with the "
    "account's secret and answers 2xx is ready for the events of finished requests."
)


# Test events an account may send a minute: each is a POST from our address to a URL the
# caller names, which must not make the service a way to hammer someone else's server.
WEBHOOK_TESTS_PER_MINUTE: Final = 10


class TooManyTests(Exception):
    """Past the account's test events of this minute; its message says when to try again."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"Too many test events: this account may send {WEBHOOK_TESTS_PER_MINUTE} a "
            f"minute. Try again in {retry_after} s."
        )
        self.retry_after = retry_after


class TestsBusy(Exception):
    """This web process is sending another test event."""

    def __init__(self) -> None:
        super().__init__("The service is sending another test event; try again in a few seconds.")


# One test event at a time in a web process: a receiver that holds its answer holds the
# web thread waiting for it (up to WEBHOOK_TIMEOUT), and the process's other threads are
# left for everyone else, whatever the accounts asking.
_TEST_IN_FLIGHT = threading.BoundedSemaphore(1)


def webhook_test(*, account: Account, url: str, by: str) -> TestEvent:
    """Send a signed test event to url once, now, as a delivery's attempt is made (the
    webhooks' address policy, the account's secrets), within WEBHOOK_TIMEOUT all told, for
    whoever sets up a receiver to check its signature code against; nothing is recorded or
    retried. At most WEBHOOK_TESTS_PER_MINUTE an account (TooManyTests), one at a time in
    a process (TestsBusy). by: who asked, for the log."""
    if not _TEST_IN_FLIGHT.acquire(blocking=False):
        raise TestsBusy
    try:
        _test_counted(account)
        event_id = new_event_id()
        payload = {
            "type": "test",
            "account": account.name,
            "message": TEST_MESSAGE,
            "sent_at": selectors.timestamp(timezone.now()),
        }
        # A delivery may take WEBHOOK_TIMEOUT to connect and as long again to read: a web
        # thread waits for this one, so the whole of it is bounded by one timeout.
        policy = dataclasses.replace(webhook_policy(), total_timeout=settings.WEBHOOK_TIMEOUT)
        status_code, error, duration_ms = _post_signed(
            url=url, payload=payload, event_id=event_id, account=account, policy=policy
        )
    finally:
        _TEST_IN_FLIGHT.release()
    logger.info(
        "test webhook %s of account %s to %s, asked by %s: %s",
        event_id,
        account.name,
        url,
        by,
        error or status_code,
    )
    return TestEvent(event_id, url, status_code, error.removesuffix(" (not retried)"), duration_ms)


def _test_counted(account: Account) -> None:
    """Count a test event in its account's minute, or refuse it past the limit. Counted
    under the account's lock: the embedded default's file cache reads and writes a count in
    two steps, and forty events sent at once all went through."""
    now = time.time()
    key = f"webhook-tests:{account.pk}:{int(now // 60)}"
    with transaction.atomic():
        account_lock(account_id=account.pk)
        try:
            count = int(cache.get(key, 0)) + 1
            cache.set(key, count, timeout=120)
        except Exception:
            # The counts live in Redis: while it is away, a test event is not refused for it
            # (as an upload is not); one at a time in a process still holds.
            logger.warning("test events' limit unavailable; letting it through", exc_info=True)
            return
    if count > WEBHOOK_TESTS_PER_MINUTE:
        raise TooManyTests(retry_after=60 - int(now % 60))


def _attempt_record(
    delivery: WebhookDelivery,
    attempt: WebhookAttempt,
    status_code: int | None,
    error: str,
    duration_ms: int,
) -> None:
    now = timezone.now()
    schedule = retry_schedule()
    number = delivery.attempts + 1  # as loaded, before the claim
    fields: dict[str, object] = {
        "last_attempt_at": now,
        "last_status_code": status_code,
        "last_error": error,
    }
    delay: float | None = None
    if not error:
        fields.update(state=WebhookDelivery.State.DELIVERED, delivered_at=now, next_attempt_at=None)
    elif number > len(schedule) or error.endswith("(not retried)"):
        fields.update(state=WebhookDelivery.State.FAILED, next_attempt_at=None)
    else:
        delay = schedule[number - 1] * (1 + random.uniform(0, 0.1))  # noqa: S311  (jitter)
        due = now + timedelta(seconds=delay)
        # Queued below with a countdown that ends when it is due (the sweep leaves it be
        # until a lease after that), or left to the sweep, which queues it once due.
        queued = due if delay <= COUNTDOWN_LIMIT_SECONDS else None
        fields.update(next_attempt_at=due, queued_at=queued)
    metrics.WEBHOOK_ATTEMPTS.labels("delivered" if not error else "error").inc()
    with transaction.atomic():
        # A retry of the request deletes its delivery (its next finish makes a new event):
        # an attempt that was under way then has nothing left to record.
        if not WebhookDelivery.objects.select_for_update().filter(pk=delivery.pk).exists():
            logger.info("webhook %s: superseded by a retry of the request", delivery.event_id)
            return
        WebhookAttempt.objects.filter(pk=attempt.pk).update(
            status_code=status_code, error=error, duration_ms=duration_ms
        )
        WebhookDelivery.objects.filter(pk=delivery.pk, attempts=number).update(**fields)
    logger.info(
        "webhook %s for request %s, attempt %d: %s",
        delivery.event_id,
        delivery.request_id,
        number,
        error or f"HTTP {status_code}",
    )
    if delay is not None and delay <= COUNTDOWN_LIMIT_SECONDS:
        queue.enqueue_after_commit(queue.WEBHOOK_SEND, str(delivery.request_id), countdown=delay)


def _lease() -> timedelta:
    return timedelta(seconds=settings.WORK_LEASE_SECONDS)
