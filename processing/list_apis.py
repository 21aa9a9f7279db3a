"""The account's requests, listed: what a script or a person who lost a request id reads
to find it, newest first, a page at a time. Before, only the page showed them, and only
the latest 20."""

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import request_account
from processing import selectors
from processing.api_common import RequestStateSerializer, errors, page_size_checked
from processing.models import ProcessingRequest

STATUSES = ProcessingRequest.Status.values


class RequestsApi(APIView):
    class Pagination(CursorPagination):
        """Pages by position, not by number: a request uploaded while someone reads the
        list does not shift the next page by one (a page number would repeat a row)."""

        page_size = 20
        page_size_query_param = "page_size"
        max_page_size = 100
        ordering = selectors.REQUESTS_ORDER

        def get_page_size(self, request: Any) -> int | None:
            page_size_checked(request, self.page_size_query_param, self.max_page_size)
            return super().get_page_size(request)

        def decode_cursor(self, request: Any) -> Cursor | None:
            """A cursor that is not one of ours is a 400 naming it; DRF answers 404, which a
            client takes for a route that is not there."""
            try:
                return super().decode_cursor(request)
            except NotFound:
                raise serializers.ValidationError(
                    {
                        self.cursor_query_param: [
                            "Not a cursor this list gave: follow the next and previous links."
                        ]
                    }
                ) from None

    class ListedSerializer(RequestStateSerializer):
        """The status body less its webhook (the status API has it: here it would cost a
        query a row), with where to follow the request."""

        finished_at = serializers.DateTimeField(allow_null=True)
        expired_at = serializers.DateTimeField(
            allow_null=True,
            help_text="When its outputs, products and images were deleted; its links are "
            "then null.",
        )
        status_url = serializers.URLField()
        page_url = serializers.URLField(help_text="Its page, for a person logged in.")

    QUERY = frozenset({"status", "cursor", "page_size"})

    @extend_schema(
        summary="The account's requests, newest first",
        parameters=[
            OpenApiParameter(
                "status",
                OpenApiTypes.STR,
                description="Only requests in these statuses, comma-separated: "
                + ", ".join(STATUSES)
                + ".",
            ),
            OpenApiParameter(
                "page_size", OpenApiTypes.INT, description="Up to 100; 20 if not given."
            ),
            OpenApiParameter(
                "cursor", OpenApiTypes.STR, description="From a page's next or previous link."
            ),
        ],
        responses={
            200: inline_serializer(
                "RequestPage",
                {
                    "next": serializers.URLField(allow_null=True),
                    "previous": serializers.URLField(allow_null=True),
                    "results": ListedSerializer(many=True),
                },
            ),
            **errors(400, 401),
        },
    )
    def get(self, request: Request) -> Response:
        unknown = sorted(set(request.query_params) - self.QUERY)
        if unknown:
            # A misspelt filter ignored would list everything as if it had applied.
            raise serializers.ValidationError(
                {name: ["Not a parameter of this list."] for name in unknown}
            )
        paginator = self.Pagination()
        page = paginator.paginate_queryset(
            selectors.requests_list(account=request_account(request), statuses=_statuses(request)),
            request,
            view=self,
        )
        assert page is not None
        return paginator.get_paginated_response(
            [selectors.request_listed_payload(found) for found in page]
        )


def _statuses(request: Request) -> list[str]:
    """The statuses asked for, as ?status=a,b or ?status=a&status=b; refused, named, if
    any is not a status."""
    asked = [
        name.strip()
        for given in request.query_params.getlist("status")
        for name in given.split(",")
        if name.strip()
    ]
    wrong = [name for name in asked if name not in STATUSES]
    if wrong:
        raise serializers.ValidationError(
            {
                "status": [
                    f"Not a status: '{name}'. One of: {', '.join(STATUSES)}." for name in wrong
                ]
            }
        )
    return asked
