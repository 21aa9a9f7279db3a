"""The account's requests, listed: what a script or a person who lost a request id reads
to find it, newest first, a page at a time. Before, only the page showed them, and only
the latest 20."""

import base64
import binascii
import json
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from urllib.parse import urlencode

from django.conf import settings
from django.db.models import Q, QuerySet
from django.urls import reverse
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import request_account
from processing import selectors
from processing.api_common import (
    page_size_checked,
    query_checked,
    statuses_asked,
)
from processing.models import ProcessingRequest
from processing.serializers import (
    REQUEST_STATUSES,
    ListedRequestSerializer,
    errors,
)

PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
BAD_CURSOR = "Not a cursor this list gave: follow the next and previous links."


@dataclass(frozen=True)
class Position:
    """Where a page starts: after (forward) or before (backward) the request uploaded at
    created_at with this id, in the list's order (selectors.REQUESTS_ORDER).

    Both fields, not the time alone: DRF's cursor kept the time and an offset among equal
    times, and going back through requests uploaded at the same time skipped some."""

    forward: bool
    created_at: datetime
    request_id: uuid.UUID

    @classmethod
    def of(cls, row: ProcessingRequest, *, forward: bool) -> "Position":
        return cls(forward, row.created_at, row.pk)

    def encoded(self) -> str:
        text = json.dumps(
            {
                "d": "next" if self.forward else "previous",
                "t": self.created_at.isoformat(),
                "id": str(self.request_id),
            },
            separators=(",", ":"),
        )
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    @classmethod
    def decoded(cls, cursor: str) -> "Position":
        """The position a cursor holds; a 400 naming the cursor for anything this list did
        not write (a cursor edited by hand was a 500 once it reached the query)."""
        try:
            fields = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
            created_at = parse_datetime(fields["t"])
            if fields["d"] not in {"next", "previous"} or created_at is None:
                raise ValueError(cursor)
            if created_at.tzinfo is None:
                raise ValueError(cursor)
            # In UTC, as written: an offset PostgreSQL does not take (+23:59) or a time
            # that leaves the calendar in UTC (year 1 at +01:00) was a 500 in the query.
            created_at = created_at.astimezone(UTC)
            return cls(fields["d"] == "next", created_at, uuid.UUID(fields["id"]))
        except (binascii.Error, ValueError, TypeError, KeyError, AttributeError, OverflowError):
            raise serializers.ValidationError({"cursor": [BAD_CURSOR]}) from None

    def rows(self, listed: QuerySet[ProcessingRequest]) -> QuerySet[ProcessingRequest]:
        """listed's rows on this position's side of it, nearest first."""
        if self.forward:
            return listed.filter(
                Q(created_at__lt=self.created_at)
                | Q(created_at=self.created_at, request_id__lt=self.request_id)
            )
        return listed.filter(
            Q(created_at__gt=self.created_at)
            | Q(created_at=self.created_at, request_id__gt=self.request_id)
        ).reverse()


class RequestsApi(APIView):
    QUERY = frozenset({"status", "cursor", "page_size"})

    @extend_schema(
        operation_id="requests_list",
        summary="The account's requests, newest first",
        parameters=[
            OpenApiParameter(
                "status",
                OpenApiTypes.STR,
                description="Only requests in these statuses, comma-separated: "
                + ", ".join(REQUEST_STATUSES)
                + ".",
            ),
            OpenApiParameter(
                "page_size",
                {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE},
                description=f"1 to {MAX_PAGE_SIZE}; {PAGE_SIZE} if not given.",
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
                    "results": ListedRequestSerializer(many=True),
                },
            ),
            **errors(400, 401),
        },
    )
    def get(self, request: Request) -> Response:
        query_checked(request, self.QUERY)
        page_size_checked(request, "page_size", MAX_PAGE_SIZE)
        size = int(request.query_params.get("page_size") or PAGE_SIZE)
        statuses = statuses_asked(request, REQUEST_STATUSES)
        cursor = request.query_params.get("cursor")
        position = Position.decoded(cursor) if cursor is not None else None
        listed = selectors.requests_list(account=request_account(request), statuses=statuses)

        rows = list((position.rows(listed) if position else listed)[: size + 1])
        more = len(rows) > size  # beyond the page, in the direction read
        rows = rows[:size]
        if position is not None and not position.forward:
            rows.reverse()
        # Where the next and previous pages start: after the page's last row and before
        # its first, or, for an empty page, on either side of its cursor.
        older = Position.of(rows[-1], forward=True) if rows else _toward(position, True)
        newer = Position.of(rows[0], forward=False) if rows else _toward(position, False)
        if position is None:
            has_older, has_newer = more, False
        elif position.forward:
            # Asked, not assumed from the cursor's row: that row may have left the status
            # asked for (pending, then processing) or the account since.
            has_older, has_newer = more, _any(listed, newer)
        else:
            has_older, has_newer = _any(listed, older), more
        query = {
            "page_size": request.query_params.get("page_size"),
            "status": ",".join(statuses),
            "format": request.query_params.get("format"),
        }
        return Response(
            {
                "next": _link(request, query, older) if has_older else None,
                "previous": _link(request, query, newer) if has_newer else None,
                "results": [selectors.request_listed_payload(found) for found in rows],
            }
        )


def _toward(position: Position | None, forward: bool) -> Position | None:
    return replace(position, forward=forward) if position is not None else None


def _any(listed: QuerySet[ProcessingRequest], position: Position | None) -> bool:
    """Whether listed has rows past position, in its direction."""
    return position is not None and position.rows(listed).exists()


def _link(request: Request, query: dict[str, str | None], position: Position | None) -> str:
    """The list's address under the service's public one (PUBLIC_BASE_URL, as every other
    link of the body; the address asked otherwise), with the query and the position."""
    assert position is not None
    given = {name: value for name, value in query.items() if value}
    path = f"{reverse('requests')}?{urlencode(given | {'cursor': position.encoded()})}"
    if settings.PUBLIC_BASE_URL:
        return settings.PUBLIC_BASE_URL + path
    return request.build_absolute_uri(path)
