"""Requests, their products and one row per input image.

`requests` and `products` keep the seed's tables and columns; `product_images` is the
per-image tracking that lets images of one request be processed in parallel.
"""

import re
import uuid
from typing import Final

from django.db import models
from django.db.models import F

from accounts.models import Account
from imaging.encode import OutputFormat, QualityMode
from imaging.errors import ImageReason
from imaging.metadata import MetadataMode
from imaging.quality import QualityTarget
from net import HTTP_STATUS_PREFIX, NetReason
from processing.csv_format import MAX_SERIAL_CHARACTERS


class ReasonCode(models.TextChoices):
    """Why an image failed (ProductImage.error_code): the one list that the pipeline, the
    API's schema, the page's advice, the metrics and the README's table follow. Besides
    these, an HTTP error status is "http_<status>" (is_reason_code)."""

    # Reaching the image (net)
    TIMEOUT = NetReason.TIMEOUT.value
    CONNECTION_ERROR = NetReason.CONNECTION_ERROR.value
    DNS_ERROR = NetReason.DNS_ERROR.value
    TLS_ERROR = NetReason.TLS_ERROR.value
    BLOCKED_ADDRESS = NetReason.BLOCKED_ADDRESS.value
    BLOCKED_PORT = NetReason.BLOCKED_PORT.value
    INVALID_URL = NetReason.INVALID_URL.value
    TOO_MANY_REDIRECTS = NetReason.TOO_MANY_REDIRECTS.value
    BAD_REDIRECT = NetReason.BAD_REDIRECT.value
    TOO_LARGE = NetReason.TOO_LARGE.value
    # Reading and re-encoding it (imaging)
    NOT_AN_IMAGE = ImageReason.NOT_AN_IMAGE.value
    CORRUPT_IMAGE = ImageReason.CORRUPT_IMAGE.value
    TOO_MANY_PIXELS = ImageReason.TOO_MANY_PIXELS.value
    TOO_COMPLEX = ImageReason.TOO_COMPLEX.value
    TOO_SLOW = ImageReason.TOO_SLOW.value
    ENCODE_FAILED = ImageReason.ENCODE_FAILED.value
    # Ours
    CANCELLED = "cancelled"
    STORAGE_FULL = "storage_full"
    STORAGE_ERROR = "storage_error"
    INTERNAL_ERROR = "internal_error"


# The longest uploaded file name kept: a name is for telling requests apart at a glance.
FILE_NAME_MAX_CHARACTERS: Final = 200

HTTP_STATUS_REASON: Final = re.compile(re.escape(HTTP_STATUS_PREFIX) + r"[1-5][0-9][0-9]")


def is_reason_code(code: str) -> bool:
    """True for a ReasonCode or an "http_<status>" code."""
    return code in ReasonCode.values or HTTP_STATUS_REASON.fullmatch(code) is not None


class ProcessingRequestQuerySet(models.QuerySet["ProcessingRequest"]):
    def ready_to_finalize(self) -> "ProcessingRequestQuerySet":
        """Requests still processing, not claimed by a finaliser, whose images have all
        ended: the one rule every path that finalises follows."""
        return self.filter(
            status=ProcessingRequest.Status.PROCESSING,
            finalize_claimed_at__isnull=True,
            total_images=F("succeeded_images") + F("failed_images") + F("cancelled_images"),
        )


class ProcessingRequest(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        PROCESSING = "processing"
        COMPLETED = "completed"
        COMPLETED_WITH_ERRORS = "completed_with_errors", "Completed with errors"
        FAILED = "failed"
        CANCELLED = "cancelled"

    QUALITY_MODES = [(mode.value, mode.value.title()) for mode in QualityMode]
    OUTPUT_FORMATS = [(asked.value, asked.value.upper()) for asked in OutputFormat]
    QUALITY_TARGETS = [(target.value, target.value.title()) for target in QualityTarget]
    METADATA_MODES = [(mode.value, mode.value.title()) for mode in MetadataMode]

    FINISHED_STATUSES = (
        Status.COMPLETED,
        Status.COMPLETED_WITH_ERRORS,
        Status.FAILED,
        Status.CANCELLED,
    )

    request_id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Who asked: only this account's keys and people see the request.
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="requests")
    status = models.CharField(max_length=32, choices=Status.choices, default=Status.PENDING)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    webhook_url = models.TextField(blank=True)
    # Base of every absolute URL handed out for this request (PUBLIC_BASE_URL, or the
    # address the client uploaded to), so that workers can write URLs too.
    public_base_url = models.TextField()
    quality = models.PositiveSmallIntegerField()
    # The format its outputs are made in: "same" keeps each image's (imaging.encode).
    output_format = models.CharField(
        max_length=8, choices=OUTPUT_FORMATS, default=OutputFormat.SAME.value
    )
    quality_mode = models.CharField(
        max_length=16, choices=QUALITY_MODES, default=QualityMode.FIXED.value
    )
    # What outputs keep of their sources' metadata: nothing, or their credits too.
    metadata = models.CharField(
        max_length=16, choices=METADATA_MODES, default=MetadataMode.STRIP.value
    )
    # How its CSV was written, for the output CSV to be written alike (csv_format.CsvDialect):
    # its separator, a comma or a semicolon, whether it began with a byte order mark, and
    # whether with a line "sep=;" declaring its separator.
    csv_delimiter = models.CharField(max_length=1, default=",")
    csv_bom = models.BooleanField(default=False)
    csv_separator_line = models.BooleanField(default=False, db_default=False)
    # Whether its outputs are scored in fixed and relative mode too (perceptual ones
    # always are): asked for, or IMAGE_SCORE_ALL_MODES.
    scored = models.BooleanField(default=False)
    # Perceptual mode: the target asked for, and its SSIMULACRA2 score as the settings said
    # when the request came in (every batch aims at the same number).
    quality_target = models.CharField(max_length=8, choices=QUALITY_TARGETS, blank=True)
    target_score = models.FloatField(null=True, blank=True)
    # The scores of its succeeded images once it has finished: the 5th percentile (the
    # worst images but a few) and the median.
    score_p5 = models.FloatField(null=True, blank=True)
    score_median = models.FloatField(null=True, blank=True)
    # Counters kept with each finished image, so that status is one row read.
    total_products = models.PositiveIntegerField(default=0)
    total_images = models.PositiveIntegerField(default=0)
    succeeded_images = models.PositiveIntegerField(default=0)
    failed_images = models.PositiveIntegerField(default=0)
    cancelled_images = models.PositiveIntegerField(default=0)
    # Of the succeeded images, those given an earlier request's output because their source
    # had not changed (ProductImage.reused), counted with them: a re-upload's "N re-used".
    # A default in the database too, as file_name has, for the code before it.
    reused_images = models.PositiveIntegerField(default=0, db_default=0)
    # Bytes of the request's succeeded images, as their rows give them (an image whose URL
    # another image shares counts too): what it downloaded and what it made of them.
    input_bytes = models.PositiveBigIntegerField(default=0)
    output_bytes = models.PositiveBigIntegerField(default=0)
    # URLs per batch of this request, learnt from the sizes of its images as they end
    # (processing/window.py); 0 until then.
    batch_size = models.PositiveSmallIntegerField(default=0)
    # Set when the owner cancels: images not started end as cancelled, the request as
    # cancelled once those in flight have ended.
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    # The uploaded CSV's name, as its client sent it (intake.upload_file_name): what a
    # person tells their requests apart by. Empty for a re-run, named by source_request.
    # A default in the database too, as idempotency_key has, for the same reason.
    file_name = models.CharField(
        max_length=FILE_NAME_MAX_CHARACTERS, blank=True, default="", db_default=""
    )
    # The request this one re-runs with other settings (the same products and URLs).
    source_request = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="reruns"
    )
    # Set by the one worker that wins the right to finalise (a conditional update).
    finalize_claimed_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    output_csv_name = models.TextField(blank=True)
    error = models.TextField(blank=True)
    # When its outputs, products and images were deleted (RETENTION_DAYS after it finished,
    # or when its account asked: deleted_by_owner); the row stays so that its routes
    # answer 410.
    expired_at = models.DateTimeField(null=True, blank=True)
    deleted_by_owner = models.BooleanField(default=False)
    # The upload's Idempotency-Key header, if it sent one, and a digest of its file and
    # settings: the same upload sent again with that key gets this request back
    # (processing/idempotency.py). Emptied when the key's time is up. Defaults in the
    # database too: processes of the code before them go on inserting during a deploy.
    idempotency_key = models.CharField(max_length=255, blank=True, default="", db_default="")
    idempotency_digest = models.CharField(max_length=64, blank=True, default="", db_default="")

    objects = ProcessingRequestQuerySet.as_manager()

    class Meta:
        db_table = "requests"
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["-created_at"], name="requests_recent"),
            models.Index(fields=["account", "-created_at"], name="requests_account_recent"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(
                    total_images__gte=models.F("succeeded_images")
                    + models.F("failed_images")
                    + models.F("cancelled_images")
                ),
                name="requests_counts_within_total",
            ),
            # Also the index that finds a key's request.
            models.UniqueConstraint(
                fields=["account", "idempotency_key"],
                condition=~models.Q(idempotency_key=""),
                name="requests_idempotency_key",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.request_id} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED_STATUSES

    @property
    def pending_images(self) -> int:
        return (
            self.total_images - self.succeeded_images - self.failed_images - self.cancelled_images
        )


class Product(models.Model):
    product_id = models.BigAutoField(primary_key=True)
    request = models.ForeignKey(
        ProcessingRequest, on_delete=models.CASCADE, related_name="products", db_column="request_id"
    )
    # The row's place in the input file (0 for the first product): output keeps this order.
    position = models.PositiveIntegerField()
    # S. No. as a number (unique per request: 007 and 7 are one) and as the shop wrote it,
    # leading zeros kept for the output CSV; "" in rows stored before it was kept.
    serial_number = models.PositiveBigIntegerField()
    serial_text = models.CharField(
        max_length=MAX_SERIAL_CHARACTERS, blank=True, default="", db_default=""
    )
    product_name = models.TextField()
    input_image_urls = models.TextField()  # comma-separated, as in the input
    output_image_urls = models.TextField(blank=True)  # filled in when the request finishes

    class Meta:
        db_table = "products"
        ordering = ["request", "position"]
        constraints = [
            models.UniqueConstraint(fields=["request", "position"], name="products_position"),
            models.UniqueConstraint(
                fields=["request", "serial_number"], name="products_serial_number"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.serial_as_written}: {self.product_name}"

    @property
    def serial_as_written(self) -> str:
        """The S. No. as the output CSV, the API and the page show it: as the input wrote
        it, or, stored before that was kept, the number."""
        return self.serial_text or str(self.serial_number)


class ProductImage(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        PROCESSING = "processing"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    # Denormalised from product, so that workers claim and count by request in one index.
    request = models.ForeignKey(
        ProcessingRequest, on_delete=models.CASCADE, related_name="images", db_column="request_id"
    )
    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="images")
    position = models.PositiveSmallIntegerField()  # the URL's place in its product's cell
    input_url = models.CharField(max_length=2048)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    output_name = models.CharField(max_length=255, blank=True)  # name in the storage
    output_format = models.CharField(max_length=8, blank=True)
    input_format = models.CharField(max_length=8, blank=True)
    input_bytes = models.PositiveBigIntegerField(null=True, blank=True)
    output_bytes = models.PositiveBigIntegerField(null=True, blank=True)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    source_quality = models.PositiveSmallIntegerField(null=True, blank=True)
    quality = models.PositiveSmallIntegerField(null=True, blank=True)
    kept_original = models.BooleanField(default=False)
    # Its transparency painted on white: asked for as JPEG, which has none.
    flattened = models.BooleanField(default=False)
    # SSIMULACRA2 of its output against its source (imaging/score.py), the encodes it took,
    # and in perceptual mode whether the target was met (or the fixed quality used).
    score = models.FloatField(null=True, blank=True)
    tries = models.PositiveSmallIntegerField(null=True, blank=True)
    target_met = models.BooleanField(null=True, blank=True)
    # The output of an earlier request of the account, made from the same bytes with the
    # same settings, copied instead of downloaded and encoded again (reuse.py).
    reused = models.BooleanField(default=False)
    # What its output leaves out of its source, in words: an animation's frames after the
    # first, a TIFF's pages (imaging/encode.py). Empty where nothing is.
    note = models.CharField(max_length=200, blank=True, default="", db_default="")
    attempts = models.PositiveSmallIntegerField(default=0)
    # When its task was last put on the queue, and when a worker last claimed it: the
    # sweep queues again what has waited or run longer than the lease.
    queued_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    # Which batch claimed it: only that batch may record the result (a batch whose lease
    # ran out and whose images were claimed again finds nothing left to write).
    claim_token = models.UUIDField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "product_images"
        ordering = ["product", "position"]
        constraints = [
            models.UniqueConstraint(fields=["product", "position"], name="images_position"),
        ]
        indexes = [
            # Claiming and recording: every image of a request with one URL at once.
            models.Index(fields=["request", "input_url"], name="images_request_url"),
            models.Index(fields=["request", "status"], name="images_request_status"),
            # A request's window (window.py): its next images waiting their turn, in CSV
            # order, and the few queued or running, counted at every batch's end.
            models.Index(
                fields=["request", "id"],
                condition=models.Q(queued_at__isnull=True),
                name="images_waiting",
            ),
            models.Index(
                fields=["request", "input_url"],
                condition=models.Q(queued_at__isnull=False, status__in=["pending", "processing"]),
                name="images_in_flight",
            ),
        ]

    def __str__(self) -> str:
        return self.input_url


def new_event_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


class WebhookDelivery(models.Model):
    """The one event a finished request sends to its webhook, and where its delivery is."""

    class State(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        FAILED = "failed"

    request = models.OneToOneField(
        ProcessingRequest, on_delete=models.CASCADE, related_name="webhook_delivery"
    )
    # Standard Webhooks' webhook-id: the same for every attempt, so receivers can dedupe.
    event_id = models.CharField(max_length=64, unique=True, default=new_event_id)
    url = models.TextField()
    payload = models.JSONField()  # frozen when the request finished: every attempt the same
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    # When the sweep last queued its send, or when a retry queued with a countdown comes
    # due: the sweep queues a due delivery again only once this is WORK_LEASE_SECONDS old,
    # as it does an image. Without it every sweep queued another copy of every due send,
    # and a backlog behind slow receivers grew by one message each per sweep.
    queued_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "webhook_deliveries"
        indexes = [models.Index(fields=["state", "next_attempt_at"], name="deliveries_due")]

    def __str__(self) -> str:
        return f"{self.event_id} ({self.state})"


class WebhookAttempt(models.Model):
    delivery = models.ForeignKey(
        WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log"
    )
    attempted_at = models.DateTimeField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    duration_ms = models.PositiveIntegerField()

    class Meta:
        db_table = "webhook_attempts"
        ordering = ["attempted_at"]

    def __str__(self) -> str:
        return f"{self.delivery_id} at {self.attempted_at}: {self.status_code or self.error}"


class SourceCache(models.Model):
    """What an account's request last saw at a source URL: its validators, to ask again
    with a conditional GET, and the SHA-256 of its bytes, to tell an unchanged body."""

    # No index of its own: the unique (url_hash, account) index serves every lookup. With
    # one, or with account first, PostgreSQL (before its first ANALYZE) read every source
    # of the account for each batch's 8 URLs. Deleting an account scans the table: rare.
    account = models.ForeignKey(
        Account, on_delete=models.CASCADE, related_name="sources", db_index=False
    )
    url = models.TextField()
    url_hash = models.CharField(max_length=64)  # SHA-256 of url: URLs run to 2,048 characters
    etag = models.CharField(max_length=512, blank=True)
    last_modified = models.CharField(max_length=64, blank=True)
    content_sha256 = models.CharField(max_length=64)
    checked_at = models.DateTimeField()

    class Meta:
        db_table = "source_cache"
        constraints = [
            models.UniqueConstraint(fields=["url_hash", "account"], name="sources_url_account"),
        ]

    def __str__(self) -> str:
        return self.url


class SourceOutput(models.Model):
    """The output made from a source's bytes with one set of settings, in the storage of
    the request that made (or last copied) it: a later request re-uses it."""

    # Indexed by the unique (source, settings_key) constraint, as SourceCache.account is.
    source = models.ForeignKey(
        SourceCache, on_delete=models.CASCADE, related_name="outputs", db_index=False
    )
    settings_key = models.CharField(max_length=64)  # reuse.settings_key()
    # The SHA-256 of the bytes it was made from: offered only while the source still has
    # them (a run with other settings may have seen the source change since).
    content_sha256 = models.CharField(max_length=64)
    request = models.ForeignKey(ProcessingRequest, on_delete=models.CASCADE, related_name="+")
    output_name = models.CharField(max_length=255)
    output_format = models.CharField(max_length=8)
    input_format = models.CharField(max_length=8)
    input_bytes = models.PositiveBigIntegerField()
    output_bytes = models.PositiveBigIntegerField()
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    source_quality = models.PositiveSmallIntegerField(null=True, blank=True)
    quality = models.PositiveSmallIntegerField()
    kept_original = models.BooleanField(default=False)
    flattened = models.BooleanField(default=False)
    score = models.FloatField(null=True, blank=True)
    tries = models.PositiveSmallIntegerField(null=True, blank=True)
    target_met = models.BooleanField(null=True, blank=True)
    note = models.CharField(max_length=200, blank=True, default="", db_default="")

    class Meta:
        db_table = "source_outputs"
        constraints = [
            models.UniqueConstraint(
                fields=["source", "settings_key"], name="source_outputs_settings"
            ),
        ]

    def __str__(self) -> str:
        return self.output_name
