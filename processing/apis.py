"""One APIView per operation. Views validate input, call one service or selector, and
shape the answer; they hold no logic of their own."""

import dataclasses
import logging
from collections.abc import Iterable
from typing import Any, NoReturn

from django.conf import settings
from django.http import FileResponse, HttpResponseBase
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_serializer,
    inline_serializer,
)
from rest_framework import exceptions, serializers, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import request_account
from config.logs import request_id_var
from processing import finalize, idempotency, intake, metrics, policies, selectors, webhooks
from processing.api_common import (
    ERROR_CODE_HELP,
    IDEMPOTENCY_KEY,
    IF_NONE_MATCH,
    NOT_MODIFIED,
    REPLAYED,
    REQUEST_ID,
    AccountUploadThrottle,
    accepted_answer,
    expired_refusal,
    file_etag,
    idempotency_asked,
    key_reused_refusal,
    length_required,
    not_modified,
    page_size_checked,
    positive_whole,
    query_checked,
    query_none,
    quota_refusal,
    replayed_answer,
    request_or_404,
    status_body,
    status_etag,
    statuses_asked,
    uploads_throttled,
)
from processing.csv_format import CsvInvalid
from processing.exceptions import (
    FileTooLarge,
    InvalidCsv,
    NoFileUploaded,
    NotMultipart,
    NoWebhook,
    RequestNotFinished,
    ServerBusy,
    Throttled,
)
from processing.models import ProductImage
from processing.parsers import ContentNegotiation, JSONParser
from processing.policies import upload_body_limit
from processing.serializers import (
    IMAGE_OUTPUT_FORMATS,
    IMAGE_STATUSES,
    AcceptedSerializer,
    RequestSettingsSerializer,
    StatusSerializer,
    WebhookDetailSerializer,
    WebhookStateSerializer,
    WebhookTestSerializer,
    errors,
)

logger = logging.getLogger(__name__)

# What a test event refused while another is under way in the process is told to wait:
# about what one takes.
TEST_BUSY_RETRY_AFTER_SECONDS = 5


class UploadApi(APIView):
    parser_classes = [MultiPartParser, FormParser]
    throttle_classes = [AccountUploadThrottle]

    class InputSerializer(RequestSettingsSerializer):
        """The settings, beside the file (read on its own, before them)."""

        other_fields = RequestSettingsSerializer.other_fields | {"file"}

    class UploadSerializer(RequestSettingsSerializer):
        file = serializers.FileField(help_text="The product CSV.")

    AcceptedSerializer = AcceptedSerializer

    @extend_schema(
        summary="Upload a product CSV",
        parameters=[IDEMPOTENCY_KEY],
        request={"multipart/form-data": UploadSerializer},
        responses={202: AcceptedSerializer, **errors(400, 401, 403, 411, 413, 415, 422, 429)},
    )
    def post(self, request: Request) -> Response:
        response = self._upload(request)
        replayed = response.headers.get(REPLAYED) == "true"
        metrics.UPLOADS.labels("replayed" if replayed else "accepted").inc()
        return response

    def handle_exception(self, exc: Exception) -> Response:
        """Every refusal counted by its code, those before post() too: counted in post(),
        uploads refused for their key or the rate limit, and those that failed, were not."""
        if isinstance(exc, exceptions.UnsupportedMediaType):
            exc = NotMultipart.sent_as(self.request.content_type)
        response: Response = super().handle_exception(exc)
        metrics.UPLOADS.labels(response.data.get("code", "server_error")).inc()
        return response

    def throttled(self, request: Request, wait: float | None) -> NoReturn:
        raise uploads_throttled(wait)

    def _upload(self, request: Request) -> Response:
        limit = settings.CSV_MAX_BYTES
        length_required(request)
        query_none(request)
        declared = request.META.get("CONTENT_LENGTH") or ""
        if declared.isdigit() and int(declared) > upload_body_limit():
            # Refused before the body is read (config/asgi.py refuses it earlier still).
            raise FileTooLarge.over(limit)
        upload = request.FILES.get("file")
        if upload is None:
            misnamed = [
                {"field": name, "message": "A file under another name."}
                for name in sorted(request.FILES)
            ]
            if "file" in request.data:  # curl -F file=products.csv, without its @
                misnamed.append(
                    {
                        "field": "file",
                        "message": "Sent as a text field, not a file: with curl, "
                        "-F file=@products.csv.",
                    }
                )
            raise NoFileUploaded(details=misnamed)
        if upload.size is not None and upload.size > limit:
            raise FileTooLarge.over(limit)
        form = self.InputSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        csv_data = upload.read()
        try:
            created = intake.request_create(
                account=request_account(request),
                csv_data=csv_data,
                file_name=upload.name or "",
                public_base_url=settings.PUBLIC_BASE_URL or request.build_absolute_uri("/"),
                idempotency=idempotency_asked(
                    request,
                    csv_data,
                    # An empty field is no field, as the upload takes it: a script's unset
                    # variable sent again must replay, not be refused as other settings.
                    {name: value for name, value in form.validated_data.items() if value != ""},
                ),
                **form.validated_data,  # the settings given: intake's defaults for the rest
            )
        except idempotency.Replayed as replayed:
            return replayed_answer(replayed.earlier)
        except idempotency.KeyReused as reused:
            raise key_reused_refusal(reused.earlier) from None
        except CsvInvalid as invalid:
            raise InvalidCsv(
                details=[
                    {"row": problem.row, "column": problem.column, "message": problem.message}
                    for problem in invalid.problems
                ]
            ) from None
        except policies.QuotaExceeded as over:
            raise quota_refusal(over) from None
        request_id_var.set(str(created.pk))  # the access log line names it too
        logger.info(
            "upload accepted: %d products, %d images", created.total_products, created.total_images
        )
        return accepted_answer(created)


class StatusApi(APIView):
    @extend_schema(
        summary="A request's status and progress",
        parameters=[REQUEST_ID, IF_NONE_MATCH],
        responses={200: StatusSerializer, 304: NOT_MODIFIED, **errors(401, 404, 410)},
    )
    def get(self, request: Request, request_id: str) -> HttpResponseBase:
        body = status_body(request_or_404(request, request_id))
        # Of the body as sent: any field that changes (progress, the webhook's) changes it.
        etag = status_etag(body)
        return not_modified(request, etag) or Response(body, headers={"ETag": etag})


class WebhookApi(APIView):
    @extend_schema(
        summary="A request's webhook delivery and every attempt",
        parameters=[REQUEST_ID],
        responses={200: WebhookDetailSerializer, **errors(401, 404, 409, 410)},
    )
    def get(self, request: Request, request_id: str) -> Response:
        """The delivery's state and every attempt made."""
        found = request_or_404(request, request_id)
        state = selectors.webhook_state(found)
        if state is None:
            if not found.is_finished:
                raise RequestNotFinished(
                    "The request has not finished; its webhook, if it has one, is sent when "
                    "it does."
                )
            raise NoWebhook("The request has no webhook delivery.")
        return Response(state | {"attempt_log": selectors.webhook_attempts(found)})

    @extend_schema(
        summary="Send a finished request's webhook again",
        parameters=[REQUEST_ID],
        request=None,
        responses={202: WebhookStateSerializer, **errors(401, 403, 404, 409, 410)},
    )
    def post(self, request: Request, request_id: str) -> Response:
        """Send the request's webhook event again."""
        found = request_or_404(request, request_id)
        try:
            delivery = webhooks.webhook_resend(request=found)
        except webhooks.ResultsGone:
            raise expired_refusal(found) from None
        except webhooks.RequestRunning:
            raise RequestNotFinished(
                "The request has not finished; its webhook is sent when it does."
            ) from None
        if delivery is None:
            raise NoWebhook()
        found.refresh_from_db()
        return Response(selectors.webhook_state(found), status=status.HTTP_202_ACCEPTED)


class WebhookTestApi(APIView):
    parser_classes = [JSONParser, FormParser, MultiPartParser]

    InputSerializer = WebhookTestSerializer

    # Named: the schema would otherwise give it, and the products' OutputSerializer, the
    # one component "Output", and document one answer with the other's fields.
    @extend_schema_serializer(component_name="WebhookTestResult")
    class OutputSerializer(serializers.Serializer[Any]):
        event_id = serializers.CharField(help_text="The event's webhook-id.")
        url = serializers.URLField()
        delivered = serializers.BooleanField(help_text="The receiver answered 2xx.")
        status_code = serializers.IntegerField(
            allow_null=True, help_text="Its answer's status; null where none came."
        )
        error = serializers.CharField(help_text="Why it was not delivered; empty if it was.")
        duration_ms = serializers.IntegerField()

    @extend_schema(
        summary="Send a signed test event to a webhook receiver, now",
        description=(
            'One POST of a test event, {"type": "test", "account", "message", '
            '"sent_at"}, signed as every event is, with the account\'s secret(s), under '
            "the webhooks' address policy and timeout: what a receiver's owner checks the "
            "signature code with before the first request finishes. Answered with what "
            "the receiver answered; nothing is recorded or retried. "
            f"{webhooks.WEBHOOK_TESTS_PER_MINUTE} a minute per account."
        ),
        request=InputSerializer,
        responses={200: OutputSerializer, **errors(400, 401, 403, 429, 503)},
    )
    def post(self, request: Request) -> Response:
        query_none(request)
        form = self.InputSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        url = form.validated_data["url"]
        try:
            sent = webhooks.webhook_test(
                account=request_account(request), url=url, by=str(request.user)
            )
        except webhooks.TestsBusy as busy:
            raise ServerBusy(
                str(busy), headers={"Retry-After": str(TEST_BUSY_RETRY_AFTER_SECONDS)}
            ) from None
        except webhooks.TooManyTests as over:
            limit = f"{webhooks.WEBHOOK_TESTS_PER_MINUTE}/minute"
            raise Throttled(
                str(over),
                details=[{"limit": limit, "retry_after_seconds": over.retry_after}],
                headers={"Retry-After": str(over.retry_after)},
            ) from None
        return Response({**dataclasses.asdict(sent), "delivered": sent.delivered})


class ProductsApi(APIView):
    class Pagination(PageNumberPagination):
        page_size = 50
        page_size_query_param = "page_size"
        max_page_size = 500
        # Django's paginator says why ("That page contains no results"): a page past the
        # end is told apart from a request that is not there.
        invalid_page_message = "Page {page_number} of the products: {message}."

        def get_page_number(self, request: Any, paginator: Any) -> str:
            """A page that is not a whole number from 1 is a 400 naming the field; it was
            a 404 not_found, which a client takes for a request that is not there. An
            empty one too, as an empty page_size is: DRF answered it the first page."""
            number = request.query_params.get(self.page_query_param)
            wrong = number is not None and not positive_whole(number)
            if wrong and number not in self.last_page_strings:
                raise serializers.ValidationError(
                    {self.page_query_param: [f"Not a page number from 1, nor last: '{number}'."]}
                )
            return str(super().get_page_number(request, paginator))

        def get_page_size(self, request: Any) -> int | None:
            page_size_checked(request, self.page_size_query_param, self.max_page_size)
            return super().get_page_size(request)

    @extend_schema_serializer(component_name="Product")
    class OutputSerializer(serializers.Serializer[Any]):
        class ImageSerializer(serializers.Serializer[Any]):
            input_url = serializers.CharField()
            output_url = serializers.SerializerMethodField()
            status = serializers.ChoiceField(choices=ProductImage.Status.values)
            error = serializers.SerializerMethodField()
            error_code = serializers.CharField(help_text=ERROR_CODE_HELP)
            input_bytes = serializers.IntegerField(allow_null=True)
            output_bytes = serializers.IntegerField(allow_null=True)
            width = serializers.IntegerField(allow_null=True)
            height = serializers.IntegerField(allow_null=True)
            output_format = serializers.ChoiceField(
                choices=IMAGE_OUTPUT_FORMATS,
                allow_blank=True,
                help_text="The output file's format, in capitals (the request's "
                "output_format setting is in lower case: `same` may make any of them); "
                "empty where there is no output.",
            )
            source_quality = serializers.IntegerField(allow_null=True)
            quality = serializers.IntegerField(allow_null=True)
            kept_original = serializers.BooleanField()
            flattened = serializers.BooleanField(
                help_text="Its transparency painted on white: asked for as JPEG."
            )
            score = serializers.FloatField(
                allow_null=True,
                help_text="SSIMULACRA2 of the output against the source (100: identical, "
                "90: hard to tell apart, 70: high web quality): the finest scales on 3 x 3 "
                "tiles of 128 pixels at full size, the coarser on the whole image. Null "
                "where not scored: fixed and relative mode unless IMAGE_SCORE_ALL_MODES, "
                "images under 8 pixels a side.",
            )
            tries = serializers.IntegerField(
                allow_null=True, help_text="Encodes it took: 1, or the perceptual search's."
            )
            target_met = serializers.BooleanField(
                allow_null=True,
                help_text="Perceptual mode: whether the target score was reached; false: "
                "the request's fixed quality was used. null in the other modes, and for "
                "an image too small to score.",
            )
            reused = serializers.BooleanField(
                help_text="The source had not changed since an earlier request of the "
                "account with the same settings: its output was copied, not made again."
            )

            note = serializers.CharField(
                help_text="What the output leaves out of its source, in words, e.g. "
                "'Animated source: 12 frames, only the first kept.' (an animated GIF, WebP or "
                "PNG), 'A TIFF of several pages: only the first kept.'; empty where nothing is."
            )

            def get_output_url(self, image: Any) -> str | None:
                return selectors.image_output_url(self.context["request_row"], image)

            def get_error(self, image: Any) -> str | None:
                return image.error_message or None

        serial_number = serializers.IntegerField(
            help_text="S. No. as a number, unique in the request (007 and 7 are one)."
        )
        serial_text = serializers.CharField(
            source="serial_as_written",
            help_text="S. No. as the CSV wrote it, leading zeros kept (`007`), as the output "
            "CSV carries it.",
        )
        product_name = serializers.CharField()
        images = ImageSerializer(many=True)

    @extend_schema(
        summary="A request's products and their images, in input order",
        parameters=[
            REQUEST_ID,
            OpenApiParameter(
                "page",
                {
                    "oneOf": [
                        {"type": "integer", "minimum": 1},
                        {"type": "string", "enum": ["last"]},
                    ]
                },
                description="Page number, from 1, or `last`.",
            ),
            OpenApiParameter(
                "page_size",
                {"type": "integer", "minimum": 1, "maximum": 500},
                description="Up to 500; 50 if not given.",
            ),
            OpenApiParameter(
                "status",
                OpenApiTypes.STR,
                description="Only the products with an image in these statuses, "
                "comma-separated (each with all its images): " + ", ".join(IMAGE_STATUSES) + ".",
            ),
        ],
        responses={
            200: inline_serializer(
                "ProductPage",
                {
                    "count": serializers.IntegerField(),
                    "next": serializers.URLField(allow_null=True),
                    "previous": serializers.URLField(allow_null=True),
                    "results": OutputSerializer(many=True),
                },
            ),
            **errors(400, 401, 404, 410),
        },
    )
    def get(self, request: Request, request_id: str) -> Response:
        found = request_or_404(request, request_id)
        query_checked(request, frozenset({"page", "page_size", "status"}))
        statuses = statuses_asked(request, IMAGE_STATUSES)
        paginator = self.Pagination()
        page = paginator.paginate_queryset(
            selectors.request_products(request_id=found.pk, image_statuses=statuses),
            request,
            view=self,
        )
        data = self.OutputSerializer(page, many=True, context={"request_row": found}).data
        return paginator.get_paginated_response(data)


class _CsvWhateverAccepted(ContentNegotiation):
    """The CSV whatever the Accept header asks (text/csv, the schema's own type, was
    answered 406: only JSON was on offer), errors in JSON."""

    def select_renderer(
        self, request: Any, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        first = next(iter(renderers))
        return first, first.media_type


class OutputCsvApi(APIView):
    content_negotiation_class = _CsvWhateverAccepted

    @extend_schema(
        summary="The output CSV: S. No., Product Name, Input Image Urls, Output Image Urls",
        parameters=[REQUEST_ID, IF_NONE_MATCH],
        responses={
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="The output CSV."),
            304: NOT_MODIFIED,
            **errors(401, 404, 409, 410),
        },
    )
    def get(self, request: Request, request_id: str) -> HttpResponseBase:
        found = request_or_404(request, request_id)
        if not found.is_finished:
            raise RequestNotFinished()
        if not found.output_csv_name:
            raise RequestNotFinished("The request failed before its output CSV was written.")
        try:
            opened = finalize.output_csv_open(request=found)
        except finalize.OutputCsvGone:
            raise expired_refusal(found) from None
        # Of its content: a retry's finish writes it anew, and one written again from the
        # rows (processing/finalize.py) may link its images differently.
        etag = file_etag(opened)
        unchanged = not_modified(request, etag)
        if unchanged is not None:
            opened.close()
            return unchanged
        return FileResponse(
            opened,
            as_attachment=True,
            filename=f"{found.pk}-output.csv",
            content_type="text/csv; charset=utf-8",
            headers={"ETag": etag},
        )
