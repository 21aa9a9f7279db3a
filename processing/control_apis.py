"""What an owner does to a request once uploaded: cancel it, retry what failed, re-run it
with other settings (each answers at once, 202, the work happening on the workers), and
delete it once finished; and read it, expired or not, as the list of requests shows it."""

import uuid
from typing import NoReturn

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import request_account
from processing import control, idempotency, intake, policies, selectors
from processing.api_common import (
    IDEMPOTENCY_KEY,
    REQUEST_ID,
    AccountUploadThrottle,
    accepted_answer,
    expired_refusal,
    idempotency_asked,
    key_reused_refusal,
    length_required,
    query_none,
    quota_refusal,
    replayed_answer,
    request_or_404,
    status_body,
    uploads_throttled,
)
from processing.exceptions import AlreadyFinished, NothingToRetry, RequestNotFinished
from processing.parsers import JSONParser
from processing.serializers import (
    AcceptedSerializer,
    ListedRequestSerializer,
    RequestSettingsSerializer,
    StatusSerializer,
    errors,
)


class CancelApi(APIView):
    @extend_schema(
        summary="Cancel a request under way",
        description=(
            "Images not started end as cancelled (error_code cancelled); those in flight "
            "may finish. The request then ends as cancelled, with its output CSV for what "
            "finished and its webhook."
        ),
        parameters=[REQUEST_ID],
        request=None,
        responses={202: StatusSerializer, **errors(401, 403, 404, 409, 410)},
    )
    def post(self, request: Request, request_id: str) -> Response:
        found = request_or_404(request, request_id)
        try:
            control.request_cancel(request=found)
        except control.AlreadyFinished:
            found.refresh_from_db(fields=["status"])
            if not found.is_finished:  # being finalised: "already finished (processing)"
                raise AlreadyFinished(
                    "The request is finishing: every image has ended, so there is nothing "
                    "left to cancel."
                ) from None
            raise AlreadyFinished(
                f"The request has already finished ({found.status}); "
                "there is nothing left to cancel."
            ) from None
        found.refresh_from_db()
        return Response(status_body(found), status=status.HTTP_202_ACCEPTED)


class RequestApi(APIView):
    @extend_schema(
        operation_id="request_get",
        summary="One request as the list of requests shows it",
        description=(
            "Its status body without the webhook (the status route has it), with "
            "finished_at, expired_at and expired_by, and where to follow it. An expired or "
            "deleted request is answered too, as the list shows it, where every other route "
            "of it answers 410."
        ),
        parameters=[REQUEST_ID],
        responses={200: ListedRequestSerializer, **errors(401, 404)},
    )
    def get(self, request: Request, request_id: str) -> Response:
        found = request_or_404(request, request_id, expired_too=True)
        return Response(selectors.request_listed_payload(found))

    @extend_schema(
        summary="Delete a finished request's outputs, output CSV, products and images",
        description=(
            "As the retention period would later. From this answer on every route of the "
            "request answers 410 expired (this one too; GET on it shows its row) and no "
            "later request re-uses its "
            "outputs; its files and rows are deleted by the workers within moments. The "
            "request stays in the list of requests, as the answer shows it, expired_by "
            "account. A request under way is refused (409 not_finished): cancel it, then "
            "delete it once it has finished."
        ),
        parameters=[REQUEST_ID],
        request=None,
        responses={202: ListedRequestSerializer, **errors(401, 403, 404, 409, 410)},
    )
    def delete(self, request: Request, request_id: str) -> Response:
        found = request_or_404(request, request_id)
        try:
            control.request_delete(request=found, by=str(request.user))
        except control.NotFinished:
            if found.cancel_requested_at is not None:
                raise RequestNotFinished(
                    "The request is being cancelled (its images under way are finishing): "
                    "delete it once it has finished."
                ) from None
            raise RequestNotFinished(
                f"The request is still {found.status}: cancel it first, then delete it once "
                "it has finished."
            ) from None
        except control.Finishing:
            raise RequestNotFinished(
                "The request is finishing (its output CSV is being written): delete it in a moment."
            ) from None
        except control.Expired:
            raise expired_refusal(found) from None
        found.refresh_from_db()
        return Response(selectors.request_listed_payload(found), status=status.HTTP_202_ACCEPTED)


class RetryApi(APIView):
    @extend_schema(
        summary="Queue a finished request's failed and cancelled images again",
        description=(
            "Images that succeeded keep their outputs and URLs. The request goes back to "
            "processing and finishes again, with a rewritten output CSV and a webhook event "
            "of a new id."
        ),
        parameters=[REQUEST_ID],
        request=None,
        responses={202: StatusSerializer, **errors(401, 403, 404, 409, 410, 429)},
    )
    def post(self, request: Request, request_id: str) -> Response:
        found = request_or_404(request, request_id)
        try:
            control.request_retry(request=found)
        except control.NotFinished:
            raise RequestNotFinished(
                "The request has not finished; its failures are retried once it has."
            ) from None
        except control.NothingToRetry:
            raise NothingToRetry() from None
        except control.Expired:
            raise expired_refusal(found) from None
        except policies.QuotaExceeded as over:
            raise quota_refusal(over, what="retry") from None
        found.refresh_from_db()
        return Response(status_body(found), status=status.HTTP_202_ACCEPTED)


class RerunApi(APIView):
    parser_classes = [JSONParser, FormParser, MultiPartParser]
    throttle_classes = [AccountUploadThrottle]

    InputSerializer = RequestSettingsSerializer

    @extend_schema(
        summary="Re-run a request's products and URLs with other settings",
        description=(
            "A new request, as an upload of the same CSV would make: the settings given, "
            "the source request's for the rest. Its status names the source request. "
            "Counted as an upload by the account's rate limit and pending-images quota."
        ),
        parameters=[REQUEST_ID, IDEMPOTENCY_KEY],
        request=RequestSettingsSerializer,
        responses={
            202: AcceptedSerializer,
            **errors(400, 401, 403, 404, 410, 411, 413, 422, 429),
        },
    )
    def post(self, request: Request, request_id: str) -> Response:
        answer = self._replayed(request, request_id)
        if answer is not None:
            return answer
        found = request_or_404(request, request_id)
        length_required(request)
        query_none(request)
        form = self.InputSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            created = intake.request_rerun(
                source=found,
                public_base_url=settings.PUBLIC_BASE_URL or request.build_absolute_uri("/"),
                idempotency=idempotency_asked(
                    request, rerun_content(found.pk), form.validated_data
                ),
                **form.validated_data,  # the settings given: the source's for the rest
            )
        except idempotency.Replayed as replayed:
            return replayed_answer(replayed.earlier)
        except idempotency.KeyReused as reused:
            raise key_reused_refusal(reused.earlier) from None
        except policies.QuotaExceeded as over:
            raise quota_refusal(over, what="re-run") from None
        except intake.SourceExpired:
            raise expired_refusal(found) from None
        return accepted_answer(created)

    def throttled(self, request: Request, wait: float | None) -> NoReturn:
        raise uploads_throttled(wait)

    def _replayed(self, request: Request, request_id: str) -> Response | None:
        """The re-run a key made, sent again: answered before the source is looked up,
        since the source may have expired or been deleted since (410) while its re-run
        lives on. None where there is no key, or it made nothing yet."""
        form = self.InputSerializer(data=request.data)
        if idempotency.HEADER not in request.headers or not form.is_valid():
            return None  # the checks below say what is wrong
        try:
            source = uuid.UUID(request_id)
        except ValueError:
            return None
        asked = idempotency_asked(request, rerun_content(source), form.validated_data)
        assert asked is not None
        try:
            idempotency.earlier_request_check(account=request_account(request), idempotency=asked)
        except idempotency.Replayed as replayed:
            return replayed_answer(replayed.earlier)
        except idempotency.KeyReused as reused:
            raise key_reused_refusal(reused.earlier) from None
        return None


def rerun_content(source: uuid.UUID) -> bytes:
    """What a re-run's Idempotency-Key digest covers beside its settings: its source."""
    return f"rerun of {source}".encode()
