"""bulk.update_from_rows: one statement that gives each matching row its own values, and
bulk.update_returning: an update that says what it changed, on
whichever database the tests run (PostgreSQL in CI, SQLite locally)."""

import uuid

import pytest
from django.db import DataError, connection, transaction
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import Account
from processing import bulk, intake
from processing.models import ProductImage

pytestmark = pytest.mark.django_db


def test_update_from_rows_sets_each_rows_values_only_where_the_queryset_allows(
    account: Account,
) -> None:
    # Given a request whose URL a appears twice, and a batch that holds a and b but not c
    request = intake.request_create(
        account=account,
        csv_data=(
            b"S. No.,Product Name,Input Image Urls\n"
            b'1,Lamp,"https://shop.example/a.jpg,https://shop.example/b.jpg"\n'
            b'2,Desk,"https://shop.example/c.jpg,https://shop.example/a.jpg"\n'
        ),
        public_base_url="http://testserver",
    )
    token = uuid.uuid4()
    images = ProductImage.objects.filter(request=request)
    images.exclude(input_url__endswith="c.jpg").update(status="processing", claim_token=token)
    images.filter(input_url__endswith="c.jpg").update(status="processing", claim_token=uuid.uuid4())
    now = timezone.now()

    # When the batch writes a success for a, a failure for b (no sizes at all: a column of
    # NULLs) and a success for c
    changed = bulk.update_from_rows(
        images.filter(status="processing", claim_token=token),
        key="input_url",
        fields=("status", "finished_at", "output_name", "error_code", "width", "kept_original"),
        rows=[
            {
                "input_url": "https://shop.example/a.jpg",
                "status": "succeeded",
                "finished_at": now,
                "output_name": "out/a.jpg",
                "error_code": "",
                "width": 640,
                "kept_original": True,
            },
            {
                "input_url": "https://shop.example/b.jpg",
                "status": "failed",
                "finished_at": now,
                "output_name": "",
                "error_code": "http_404",
                "width": None,
                "kept_original": False,
            },
            {
                "input_url": "https://shop.example/c.jpg",
                "status": "succeeded",
                "finished_at": now,
                "output_name": "out/c.jpg",
                "error_code": "",
                "width": 10,
                "kept_original": False,
            },
        ],
    )

    # Then a changed twice (both its images), b once, and c, held by another batch, not at all
    assert sorted(changed) == [
        "https://shop.example/a.jpg",
        "https://shop.example/a.jpg",
        "https://shop.example/b.jpg",
    ]
    stored = {
        (image.input_url.rsplit("/", 1)[1], image.position): (
            image.status,
            image.output_name,
            image.error_code,
            image.width,
            image.kept_original,
            image.finished_at,
        )
        for image in images
    }
    assert stored == {
        ("a.jpg", 0): ("succeeded", "out/a.jpg", "", 640, True, now),
        ("b.jpg", 1): ("failed", "", "http_404", None, False, now),
        ("c.jpg", 0): ("processing", "", "", None, False, None),
        ("a.jpg", 1): ("succeeded", "out/a.jpg", "", 640, True, now),
    }


def test_update_from_rows_with_no_rows_sends_nothing(
    django_assert_num_queries: object,
) -> None:
    with django_assert_num_queries(0):  # type: ignore[operator]
        changed = bulk.update_from_rows(
            ProductImage.objects.all(), key="input_url", fields=("status",), rows=[]
        )
    assert changed == []


def test_update_from_rows_takes_an_unfiltered_or_empty_queryset(
    django_assert_num_queries: object, account: Account
) -> None:
    # Given one stored image
    intake.request_create(
        account=account,
        csv_data=b"S. No.,Product Name,Input Image Urls\n1,Lamp,https://shop.example/a.jpg\n",
        public_base_url="http://testserver",
    )
    row = {"input_url": "https://shop.example/a.jpg", "error_code": "http_404"}

    # When the queryset cannot match anything, nothing is sent
    with django_assert_num_queries(0):  # type: ignore[operator]
        assert (
            bulk.update_from_rows(
                ProductImage.objects.filter(pk__in=[]),
                key="input_url",
                fields=["error_code"],
                rows=[row],
            )
            == []
        )

    # And with no filter at all, the key alone decides
    changed = bulk.update_from_rows(
        ProductImage.objects.all(), key="input_url", fields=["error_code"], rows=[row]
    )
    assert changed == ["https://shop.example/a.jpg"]
    assert ProductImage.objects.get().error_code == "http_404"


def test_update_from_rows_refuses_a_value_longer_than_its_column(account: Account) -> None:
    # Given a stored image (PostgreSQL enforces lengths; SQLite does not)
    if connection.vendor != "postgresql":
        pytest.skip("SQLite does not enforce varchar lengths")
    intake.request_create(
        account=account,
        csv_data=b"S. No.,Product Name,Input Image Urls\n1,Lamp,https://shop.example/a.jpg\n",
        public_base_url="http://testserver",
    )

    # When an error code longer than the column's 64 characters is written,
    # then the database refuses it rather than cutting it short
    with pytest.raises(DataError), transaction.atomic():
        bulk.update_from_rows(
            ProductImage.objects.all(),
            key="input_url",
            fields=["error_code"],
            rows=[{"input_url": "https://shop.example/a.jpg", "error_code": "x" * 65}],
        )


def test_update_returning_changes_what_the_queryset_allows_and_returns_what_it_changed(
    account: Account,
) -> None:
    # Given a request of three images, one of them already taken
    request = intake.request_create(
        account=account,
        csv_data=(
            b"S. No.,Product Name,Input Image Urls\n"
            b'1,Lamp,"https://shop.example/a.jpg,https://shop.example/b.jpg"\n'
            b"2,Desk,https://shop.example/c.jpg\n"
        ),
        public_base_url="http://testserver",
    )
    images = ProductImage.objects.filter(request=request)
    images.filter(input_url__endswith="c.jpg").update(status="processing")

    # When the pending ones are claimed, with their attempts counted
    token = uuid.uuid4()
    claimed = bulk.update_returning(
        images.filter(status="pending"),
        values={"status": "processing", "claim_token": token, "attempts": F("attempts") + 1},
        returning=["input_url", "attempts"],
    )

    # Then the claim returns each row it changed, as changed, and only those
    assert sorted(claimed) == [("https://shop.example/a.jpg", 1), ("https://shop.example/b.jpg", 1)]
    assert images.filter(claim_token=token).count() == 2
    # and a queryset that can match nothing sends nothing
    with CaptureQueriesContext(connection) as queries:
        none = images.filter(pk__in=[])
        assert bulk.update_returning(none, values={"attempts": 5}, returning=["id"]) == []
    assert len(queries) == 0
