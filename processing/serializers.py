"""The API's shapes: what its routes take (settings, unknown fields refused) and what they
answer, for the OpenAPI schema (/api/schema/)."""

from collections.abc import Mapping
from typing import Any, NoReturn

from django.http import QueryDict
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

import net
from imaging.encode import EXTENSIONS, OutputFormat, QualityMode
from imaging.metadata import MetadataMode
from imaging.quality import CLOSE_ENOUGH, QualityTarget
from processing.csv_format import url_problem
from processing.models import FILE_NAME_MAX_CHARACTERS, ProcessingRequest, ProductImage
from processing.parsers import JsonObject
from processing.policies import webhook_policy

# --- What the API answers, for the OpenAPI schema (/api/schema/) ------------------------


class ErrorSerializer(serializers.Serializer[Any]):
    error = serializers.CharField()
    code = serializers.CharField()
    details = serializers.ListField(child=serializers.DictField(), required=False)


class ProgressSerializer(serializers.Serializer[Any]):
    total = serializers.IntegerField()
    succeeded = serializers.IntegerField()
    failed = serializers.IntegerField()
    cancelled = serializers.IntegerField()
    pending = serializers.IntegerField()


class OutputsSerializer(serializers.Serializer[Any]):
    compressed = serializers.IntegerField(help_text="Made from their sources by this request.")
    reused = serializers.IntegerField(
        help_text="Given the output an earlier request of the account made of the same "
        "source with the same settings: the source had not changed, nothing was encoded."
    )


class WebhookStateSerializer(serializers.Serializer[Any]):
    event_id = serializers.CharField()
    state = serializers.ChoiceField(choices=["pending", "delivered", "failed"])
    attempts = serializers.IntegerField()
    last_attempt_at = serializers.DateTimeField(allow_null=True)
    last_status_code = serializers.IntegerField(allow_null=True)
    last_error = serializers.CharField(allow_null=True)
    next_attempt_at = serializers.DateTimeField(allow_null=True)


class WebhookAttemptSerializer(serializers.Serializer[Any]):
    attempted_at = serializers.DateTimeField()
    status_code = serializers.IntegerField(allow_null=True)
    error = serializers.CharField(allow_null=True)
    duration_ms = serializers.IntegerField()


class WebhookDetailSerializer(WebhookStateSerializer):
    attempt_log = WebhookAttemptSerializer(many=True)


class BytesSerializer(serializers.Serializer[Any]):
    input = serializers.IntegerField()
    output = serializers.IntegerField()


# The output_format setting's choices, named in the schema as OutputFormatEnum
# (settings.SPECTACULAR_SETTINGS), whichever serializers hold them.
OUTPUT_FORMAT_SETTINGS: list[str] = [asked.value for asked in OutputFormat]


class RequestSettingsStateSerializer(serializers.Serializer[Any]):
    quality = serializers.IntegerField(
        help_text="The encoder's quality in fixed mode; the fallback in perceptual mode."
    )
    quality_mode = serializers.ChoiceField(choices=[mode.value for mode in QualityMode])
    target = serializers.ChoiceField(
        choices=[target.value for target in QualityTarget], allow_null=True
    )
    target_score = serializers.FloatField(
        allow_null=True, help_text="The SSIMULACRA2 score the target stands for."
    )
    output_format = serializers.ChoiceField(choices=OUTPUT_FORMAT_SETTINGS)
    metadata = serializers.ChoiceField(choices=[mode.value for mode in MetadataMode])
    score = serializers.BooleanField(
        help_text="Whether every output is scored (perceptual ones always are)."
    )


class ScoreSummarySerializer(serializers.Serializer[Any]):
    p5 = serializers.FloatField(
        allow_null=True, help_text="5th percentile of the succeeded images' scores."
    )
    median = serializers.FloatField(allow_null=True)


# A request's statuses, as the API gives them: named in the schema as StatusStatusEnum
# (settings.SPECTACULAR_SETTINGS), whichever serializers hold them.
REQUEST_STATUSES: list[str] = ProcessingRequest.Status.values
# An image's, which the products route filters by.
IMAGE_STATUSES: list[str] = ProductImage.Status.values
# An image's output format as the products API gives it: its file's, in capitals (empty
# where there is no output).
IMAGE_OUTPUT_FORMATS: list[str] = list(EXTENSIONS)


class RequestStateSerializer(serializers.Serializer[Any]):
    """A request's status body, as the status API and the list of requests share it."""

    request_id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=REQUEST_STATUSES)
    file_name = serializers.CharField(
        help_text="The uploaded CSV's name as its client sent it, without folders, cut to "
        f"{FILE_NAME_MAX_CHARACTERS} characters; empty for a re-run (source_request_id "
        "names the request it re-runs)."
    )
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    progress = ProgressSerializer()
    outputs = OutputsSerializer(
        help_text="How the succeeded images got their outputs: the two add up to "
        "progress.succeeded."
    )
    bytes = BytesSerializer(
        help_text="Bytes of the succeeded images so far: downloaded, and of their outputs."
    )
    settings = RequestSettingsStateSerializer()
    score = ScoreSummarySerializer(
        help_text="SSIMULACRA2 of the succeeded images' outputs against their sources "
        "(100: identical, 90: hard to tell, 70: high web quality); set when it finishes."
    )
    output_csv_url = serializers.URLField(allow_null=True)
    products_url = serializers.URLField()
    cancel_requested_at = serializers.DateTimeField(allow_null=True)
    source_request_id = serializers.UUIDField(allow_null=True)
    expires_at = serializers.DateTimeField(
        allow_null=True, help_text="When its results will be deleted, once it has finished."
    )
    error = serializers.CharField(required=False)


class StatusSerializer(RequestStateSerializer):
    webhook = WebhookStateSerializer(allow_null=True)


class RequestFinishedEventSerializer(RequestStateSerializer):
    """The event POSTed to a finished request's webhook: its status body as it finished,
    without its `webhook` (the delivery being made); the same bytes on every attempt."""

    outputs = OutputsSerializer(
        required=False,
        help_text="How the succeeded images got their outputs: the two add up to "
        "progress.succeeded. Absent from an event recorded before they were counted, and "
        "sent again.",
    )


class TestEventSerializer(serializers.Serializer[Any]):
    """The event POST /api/webhook-test/ sends: no request's, and the one with a `type`."""

    type = serializers.ChoiceField(choices=["test"])
    account = serializers.CharField(help_text="The name of the account whose secret signs it.")
    message = serializers.CharField()
    sent_at = serializers.DateTimeField()


class ListedRequestSerializer(RequestStateSerializer):
    """The status body less its webhook (the status API has it: in the list it would cost
    a query a row), with where to follow the request."""

    products_url = serializers.URLField(
        allow_null=True, help_text="Null once the request has expired."
    )
    finished_at = serializers.DateTimeField(allow_null=True)
    expired_at = serializers.DateTimeField(
        allow_null=True,
        help_text="When its outputs, products and images were deleted; its links are then null.",
    )
    expired_by = serializers.ChoiceField(
        choices=["retention", "account"],
        allow_null=True,
        help_text="Why: the retention period, or its account deleting it.",
    )
    status_url = serializers.URLField()
    page_url = serializers.URLField(help_text="Its page, for a person logged in.")


class StrictSerializer(serializers.Serializer[Any]):
    """An input whose unknown fields, and fields given twice, are refused, named: a
    misspelt setting ("qualty") ignored would run the whole request at the default, and
    the user would find out from the outputs."""

    # What else a body may carry: the page's forms send Django's CSRF token.
    other_fields: frozenset[str] = frozenset({"csrfmiddlewaretoken"})
    # How the refusal names the fields it knows.
    fields_are: str = "fields"

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        known = {*self.fields, *self.other_fields}
        unknown = {
            name: [f"Unknown field. The {self.fields_are} are {', '.join(self.fields)}."]
            for name in (sorted(set(data) - known) if isinstance(data, Mapping) else [])
        }
        # A form's field given twice (quality=40&quality=80, two files): which one was
        # meant is anyone's guess, and the last would win without a word.
        if isinstance(data, QueryDict):
            unknown |= {
                name: [f"Given {len(data.getlist(name))} times; give it once."]
                for name in sorted(data)
                if len(data.getlist(name)) > 1
            }
        elif isinstance(data, JsonObject):  # {"quality": 20, "quality": 30}
            unknown |= {
                name: [f"Given {count} times; give it once."]
                for name, count in sorted(data.repeated.items())
            }
        try:
            value: dict[str, Any] = super().to_internal_value(data)
        except serializers.ValidationError as invalid:
            if unknown and isinstance(invalid.detail, dict):
                invalid.detail.update(unknown)
            raise
        if unknown:
            raise serializers.ValidationError(unknown)
        return value


def webhook_url_checked(value: str) -> str:
    """value, if it is a URL a webhook may be sent to; else the field's error."""
    problem = url_problem(value)
    if problem:
        raise serializers.ValidationError(problem)
    try:
        net.check_url(value, webhook_policy())
    except net.NetError as refused:
        raise serializers.ValidationError(refused.message) from None
    return value


class WebhookTestSerializer(StrictSerializer):
    """A test event's one field, from the API or the account page's form."""

    url = serializers.CharField(
        max_length=2048,
        trim_whitespace=True,
        help_text="The receiver's URL: absolute http(s), where webhooks may go.",
    )

    def validate_url(self, value: str) -> str:
        return webhook_url_checked(value)


# How much of a value that is none of a setting's choices its refusal quotes.
CHOICE_SHOWN_CHARACTERS = 40


class NamedChoiceField(serializers.ChoiceField):
    """A choice taken whatever its case ("JPEG" is jpeg), and refused naming the choices."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        listed = ", ".join(str(choice) for choice in self.choices)
        self.error_messages["invalid_choice"] = f'"{{input}}" is not one of {listed}.'

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, str) and data not in self.choice_strings_to_values:
            data = data.lower()
        return super().to_internal_value(data)

    def fail(self, key: str, **kwargs: Any) -> NoReturn:
        # A refusal quotes the value sent, its start only: a 1.5 MB one was answered whole.
        shown = kwargs.get("input")
        if isinstance(shown, str) and len(shown) > CHOICE_SHOWN_CHARACTERS:
            kwargs["input"] = shown[:CHOICE_SHOWN_CHARACTERS] + "…"
        super().fail(key, **kwargs)


class RequestSettingsSerializer(StrictSerializer):
    """The settings an upload or a re-run may give."""

    fields_are = "settings"

    webhook_url = serializers.CharField(
        required=False, allow_blank=True, max_length=2048, trim_whitespace=True
    )
    quality = serializers.IntegerField(required=False, min_value=1, max_value=95)
    quality_mode = NamedChoiceField(
        required=False,
        choices=[mode.value for mode in QualityMode],
        help_text="fixed (default): at quality. relative: half the source's estimated "
        "quality. perceptual: per image, a low quality whose output reaches target (the "
        f"lowest, or one scoring within {CLOSE_ENOUGH:g} points of target).",
    )
    target = NamedChoiceField(
        required=False,
        choices=[target.value for target in QualityTarget],
        help_text="The perceptual mode's target: low, medium (default) or high, SSIMULACRA2 "
        "60, 70 or 80 unless the service's settings say otherwise. Given alone, it asks for "
        "quality_mode=perceptual.",
    )
    output_format = NamedChoiceField(
        required=False,
        choices=OUTPUT_FORMAT_SETTINGS,
        help_text="same (default): JPEG, WebP and AVIF stay so, others become JPEG, or WebP "
        "where transparent; a PNG, GIF or BMP whose output would be larger is kept, a TIFF "
        "made PNG. jpeg, webp or avif: "
        "every output in that format.",
    )
    metadata = NamedChoiceField(
        required=False,
        choices=[mode.value for mode in MetadataMode],
        help_text="strip (default): outputs keep no metadata but their ICC profile. "
        "copyright: and the artist, copyright notice and credit line (EXIF, XMP, IPTC); "
        "never GPS.",
    )
    # Absent is None, not false: DRF reads a boolean missing from a form as an unticked
    # box, and uploads are forms. None leaves it to the service's IMAGE_SCORE_ALL_MODES
    # (an upload) or to the source request (a re-run).
    score = serializers.BooleanField(
        required=False,
        allow_null=True,
        default=None,
        help_text="true: score every output against its source (SSIMULACRA2), in fixed and "
        "relative mode too, at several times an encode's cost. Perceptual outputs always "
        "are. Default: the service's IMAGE_SCORE_ALL_MODES (false); a re-run, the source "
        "request's.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        mode = attrs.get("quality_mode")
        if "target" in attrs and mode not in {None, QualityMode.PERCEPTUAL}:
            raise serializers.ValidationError(
                {"target": [f"A target applies to quality_mode=perceptual, not {mode}."]}
            )
        return attrs

    def validate_webhook_url(self, value: str) -> str:
        return webhook_url_checked(value) if value else value


class AcceptedSerializer(serializers.Serializer[Any]):
    request_id = serializers.UUIDField()
    message = serializers.CharField()
    status_url = serializers.URLField()
    total_products = serializers.IntegerField()
    total_images = serializers.IntegerField()
    source_request_id = serializers.UUIDField(
        required=False, help_text="For a re-run: the request it re-runs."
    )


def errors(*statuses: int) -> dict[int, OpenApiResponse]:
    return {code: OpenApiResponse(ErrorSerializer) for code in statuses}
