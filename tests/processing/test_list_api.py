"""GET /api/requests/: the account's requests, newest first, a page at a time, through
DRF's test client (no task runs: the test's transaction never commits). Statuses and
expiry are set on the rows, as the workers and the expiry task would leave them."""

import base64
import json
from datetime import timedelta
from typing import Any
from uuid import uuid4

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import services
from processing.list_apis import BAD_CURSOR
from processing.models import ProcessingRequest
from tests.support import invalid_input

pytestmark = pytest.mark.django_db


def cursor_of(fields: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(fields).encode()).decode().rstrip("=")


LONG = "0" * 5000 + "1"
CSV = "S. No.,Product Name,Input Image Urls\n1,Shoe,https://shop.example/a.jpg\n"


def upload(api: APIClient) -> str:
    file = SimpleUploadedFile("products.csv", CSV.encode(), content_type="text/csv")
    response = api.post("/api/upload/", {"file": file}, format="multipart")
    assert response.status_code == 202, response.json()
    request_id: str = response.json()["request_id"]
    return request_id


def listed(api: APIClient, query: str = "", *, url: str | None = None) -> list[str]:
    """Every request id the list gives from url (its first page with query), following
    its next links."""
    ids: list[str] = []
    url = url or f"/api/requests/{query}"
    while url:
        response = api.get(url)
        assert response.status_code == 200, response.json()
        ids += [row["request_id"] for row in response.json()["results"]]
        url = response.json()["next"]
    return ids


def test_the_list_holds_the_accounts_requests_newest_first_and_no_one_elses(
    api: APIClient,
) -> None:
    mine = [upload(api) for _ in range(3)]
    stranger = APIClient()
    other = services.account_get_or_create(name="another-shop")[0]
    stranger.credentials(
        HTTP_AUTHORIZATION=f"Bearer {services.api_key_create(account=other, label='t')[1]}"
    )
    theirs = upload(stranger)

    assert listed(api) == mine[::-1]
    assert listed(stranger) == [theirs]
    assert APIClient().get("/api/requests/").status_code == 401


def test_each_row_is_the_status_body_with_where_to_follow_it(api: APIClient) -> None:
    request_id = upload(api)

    row = api.get("/api/requests/").json()["results"][0]
    status = api.get(f"/api/status/{request_id}/").json()

    status.pop("webhook")
    assert row == status | {
        "finished_at": None,
        "expired_at": None,
        "expired_by": None,
        "status_url": f"http://testserver/api/status/{request_id}/",
        "page_url": f"http://testserver/requests/{request_id}/",
    }


def test_pages_cover_every_request_once_even_when_one_is_uploaded_between_them(
    api: APIClient,
) -> None:
    uploaded = [upload(api) for _ in range(5)]

    first = api.get("/api/requests/?page_size=2").json()
    newer = upload(api)  # a page number would now repeat a row on the next page
    rest = listed(api, url=first["next"])

    assert [row["request_id"] for row in first["results"]] + rest == uploaded[::-1]
    assert first["previous"] is None
    assert listed(api)[0] == newer


def backwards(api: APIClient, url: str | None) -> list[list[str]]:
    """Every page from url back to the first, following previous links, newest first."""
    pages: list[list[str]] = []
    while url:
        body = api.get(url).json()
        pages.insert(0, [row["request_id"] for row in body["results"]])
        url = body["previous"]
    return pages


@pytest.mark.parametrize("page_size", [1, 2, 3])
def test_requests_uploaded_at_the_same_time_are_each_listed_once_both_ways(
    api: APIClient, page_size: int
) -> None:
    """DRF's cursor kept the time and an offset among equal times: going back through
    requests of one time skipped some (the first of five, with a page of one)."""
    # Given seven requests in three groups of one time each (an import, a restore)
    made = [upload(api) for _ in range(7)]
    now = timezone.now()
    for group, ids in enumerate([made[:3], made[3:5], made[5:]]):
        ProcessingRequest.objects.filter(pk__in=ids).update(
            created_at=now - timedelta(minutes=group)
        )
    ordered = [
        str(pk)
        for pk in ProcessingRequest.objects.order_by("-created_at", "-request_id").values_list(
            "pk", flat=True
        )
    ]

    # When the list is read forward, then back from its last page
    pages: list[list[str]] = []
    url: str | None = f"/api/requests/?page_size={page_size}"
    last = url
    while url:
        body = api.get(url).json()
        pages.append([row["request_id"] for row in body["results"]])
        last, url = url, body["next"]

    # Then each way gives every request once, in order
    assert [pk for page in pages for pk in page] == ordered
    assert all(len(page) == page_size for page in pages[:-1])
    assert [pk for page in backwards(api, last) for pk in page] == ordered


def test_a_time_at_an_offset_postgresql_refuses_is_read_in_utc(api: APIClient) -> None:
    upload(api)
    cursor = cursor_of({"d": "previous", "t": "2026-01-01T00:00:00+23:59", "id": str(uuid4())})
    response = api.get(f"/api/requests/?cursor={cursor}")
    assert response.status_code == 200
    assert response.json()["results"] != []


def test_links_follow_the_filter_as_it_is_now_not_as_it_was(api: APIClient) -> None:
    """A row that left the status asked for (processing, then completed) was taken to be
    still there: a page past the last led to an empty one, and one whose newer rows had
    all left offered a way back to nothing."""
    made = [upload(api) for _ in range(3)]
    ProcessingRequest.objects.update(status="processing")
    asked = "/api/requests/?status=processing&page_size=2"

    first = api.get(asked).json()
    second = api.get(first["next"]).json()
    ProcessingRequest.objects.filter(pk=made[0]).update(status="completed")
    back = api.get(second["previous"]).json()

    assert [row["request_id"] for row in second["results"]] == [made[0]]
    assert [row["request_id"] for row in back["results"]] == made[:0:-1]
    assert back["next"] is None

    ProcessingRequest.objects.filter(pk__in=made[1:]).update(status="completed")
    ProcessingRequest.objects.filter(pk=made[0]).update(status="processing")
    alone = api.get(first["next"]).json()
    assert [row["request_id"] for row in alone["results"]] == [made[0]]
    assert alone["previous"] is None


def test_a_status_filter_keeps_only_those_requests(api: APIClient) -> None:
    done, failed, running = upload(api), upload(api), upload(api)
    ProcessingRequest.objects.filter(pk=done).update(status="completed")
    ProcessingRequest.objects.filter(pk=failed).update(status="failed")

    assert listed(api, "?status=completed") == [done]
    assert listed(api, "?status=completed,failed") == [failed, done]
    assert listed(api, "?status=failed&status=pending") == [running, failed]


def test_an_expired_request_is_listed_without_links_to_what_was_deleted(api: APIClient) -> None:
    request_id = upload(api)
    now = timezone.now()
    ProcessingRequest.objects.filter(pk=request_id).update(
        status="completed", finished_at=now, expired_at=now, output_csv_name="gone.csv"
    )

    row = api.get("/api/requests/").json()["results"][0]

    assert row["expired_at"] == now.isoformat().replace("+00:00", "Z")
    assert row["expired_by"] == "retention"
    assert row["expires_at"] is None  # the retention has been applied: no date to come
    assert row["output_csv_url"] is None
    assert row["products_url"] is None
    assert row["progress"]["total"] == 1


def test_one_request_is_read_as_its_row_in_the_list_expired_or_not(api: APIClient) -> None:
    """GET on the request's own route was 405: only DELETE was there. It answers an expired
    request too, which every other route of it answers 410."""
    running, deleted = upload(api), upload(api)
    now = timezone.now()
    ProcessingRequest.objects.filter(pk=deleted).update(
        status="completed", finished_at=now, expired_at=now, deleted_by_owner=True
    )
    rows = {row["request_id"]: row for row in api.get("/api/requests/").json()["results"]}

    for request_id in (running, deleted):
        answer = api.get(f"/api/requests/{request_id}/")
        assert answer.status_code == 200
        assert answer.json() == rows[request_id]
    assert rows[deleted]["expired_by"] == "account"
    assert api.get(f"/api/status/{deleted}/").status_code == 410

    # and not to another account, nor for an id that is not one
    stranger = APIClient()
    other = services.account_get_or_create(name="another-shop")[0]
    stranger.credentials(HTTP_AUTHORIZATION=f"Bearer {services.api_key_create(account=other)[1]}")
    assert stranger.get(f"/api/requests/{running}/").json()["code"] == "not_found"
    assert api.get("/api/requests/nonsense/").status_code == 404


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        (
            "status=done",
            "status",
            "Not a status: 'done'. One of: pending, processing, completed, "
            "completed_with_errors, failed, cancelled.",
        ),
        (
            "status=",
            "status",
            "Empty. One or more of: pending, processing, completed, completed_with_errors, "
            "failed, cancelled; or no status at all.",
        ),
        ("page_size=0", "page_size", "Not a page size from 1 to 100: '0'."),
        ("page_size=101", "page_size", "Not a page size from 1 to 100: '101'."),
        *[
            (f"cursor={cursor}", "cursor", BAD_CURSOR)
            for cursor in [
                "bm90IG91cnM",  # not ours
                "cD1nYXJiYWdl",  # DRF's cursor, p=garbage: a 500 once
                cursor_of({"d": "next", "t": "2026-13-45T00:00:00+00:00", "id": str(uuid4())}),
                cursor_of({"d": "next", "t": "2026-11-28T10:00:00", "id": str(uuid4())}),
                cursor_of({"d": "sideways", "t": "2026-11-28T10:00:00Z", "id": str(uuid4())}),
                cursor_of({"d": "next", "t": "2026-11-28T10:00:00Z", "id": "1"}),
                cursor_of(["next"]),
                "%%%",
                # times that leave the calendar in UTC: 500s once they reached the query
                cursor_of({"d": "next", "t": "0001-01-01T00:00:00+01:00", "id": str(uuid4())}),
                cursor_of({"d": "next", "t": "9999-12-31T23:59:59-01:00", "id": str(uuid4())}),
            ]
        ],
        # past 4,300 digits int() raises: a 500
        (f"page_size={LONG}", "page_size", f"Not a page size from 1 to 100: '{LONG}'."),
        (
            "statuses=failed",
            "statuses",
            "Not a parameter of this list, which takes cursor, page_size, status.",
        ),
        ("page_size=1&page_size=3", "page_size", "Given more than once."),  # 3 listed
    ],
)
def test_a_query_the_list_cannot_follow_is_a_400_naming_it(
    api: APIClient, query: str, field: str, message: str
) -> None:
    upload(api)
    response = api.get(f"/api/requests/?{query}")
    assert response.status_code == 400
    assert response.json() == invalid_input(field, message)


def test_links_are_under_the_services_public_address_and_format_is_taken(
    api: APIClient, settings: Any
) -> None:
    """They were under the address the request came to: behind a proxy that passes it on
    to 127.0.0.1, a script following next went to its own machine with its key."""
    settings.PUBLIC_BASE_URL = "https://images.example.com"
    upload(api)
    upload(api)

    first = api.get("/api/requests/?page_size=1&format=json", HTTP_HOST="127.0.0.1:8000")

    assert first.status_code == 200
    assert first.json()["next"].startswith("https://images.example.com/api/requests/?")
    second = api.get(first.json()["next"].removeprefix("https://images.example.com")).json()
    assert second["previous"].startswith("https://images.example.com/api/requests/?")


def test_the_page_lists_every_request_a_page_at_a_time(
    api: APIClient, member_client: Client
) -> None:
    uploaded = [upload(api) for _ in range(21)]

    first = member_client.get("/").content.decode()
    second = member_client.get("/?page=2").content.decode()

    assert uploaded[-1] in first
    assert uploaded[0] not in first
    assert "Page 1 of 2" in first
    assert 'href="?page=2" rel="next">Older' in first
    assert uploaded[0] in second
    assert uploaded[-1] not in second
    assert 'href="?page=1" rel="prev">Newer' in second
