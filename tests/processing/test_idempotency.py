"""An upload sent again with its Idempotency-Key, in process (DRF's test client): the
request the first made, never a second; the key with another upload refused.

The command-line client's own retries, through a connection that drops the first answer,
are in tests/test_operations.py."""

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import services
from processing.models import ProcessingRequest, Product
from tests.support import invalid_input

pytestmark = pytest.mark.django_db

CSV = "S. No.,Product Name,Input Image Urls\n1,Shoe,https://shop.example/a.jpg\n"
OTHER_CSV = "S. No.,Product Name,Input Image Urls\n1,Shoe,https://shop.example/b.jpg\n"


def upload(api: APIClient, key: str | None, csv: str = CSV, **fields: Any) -> Any:
    data = {"file": SimpleUploadedFile("products.csv", csv.encode(), "text/csv"), **fields}
    headers = {} if key is None else {"Idempotency-Key": key}
    return api.post("/api/upload/", data, format="multipart", headers=headers)


def test_an_upload_sent_again_with_its_key_gets_the_first_request_back(api: APIClient) -> None:
    key = str(uuid.uuid4())
    first = upload(api, key, quality="40")
    again = upload(api, key, quality="40")
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    assert ProcessingRequest.objects.count() == 1
    assert Product.objects.count() == 1


def test_an_upload_sent_again_with_an_empty_field_it_had_left_out_is_the_same_upload(
    api: APIClient,
) -> None:
    """A script sending `webhook_url=$HOOK`, empty, the second time had its retry refused
    as another upload (422), though an empty webhook_url is taken as none."""
    key = str(uuid.uuid4())
    first = upload(api, key, quality="40")
    again = upload(api, key, quality="40", webhook_url="")
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json() == first.json()
    assert ProcessingRequest.objects.count() == 1


def test_uploads_without_a_key_or_with_other_keys_each_make_a_request(api: APIClient) -> None:
    ids = {
        upload(api, None).json()["request_id"],
        upload(api, None).json()["request_id"],
        upload(api, "key-1").json()["request_id"],
        upload(api, "key-2").json()["request_id"],
    }
    assert len(ids) == ProcessingRequest.objects.count() == 4


@pytest.mark.parametrize(
    ("csv", "fields"),
    [(OTHER_CSV, {}), (CSV, {"quality": "80"}), (CSV, {"webhook_url": "https://shop.example/h"})],
    ids=["another file", "another quality", "a webhook added"],
)
def test_the_key_with_another_upload_is_refused_naming_the_request_it_made(
    api: APIClient, csv: str, fields: dict[str, str]
) -> None:
    first = upload(api, "order-7", CSV).json()
    refused = upload(api, "order-7", csv, **fields)
    assert refused.status_code == 422
    body = refused.json()
    assert body["code"] == "idempotency_key_reused"
    assert first["request_id"] in body["error"]
    assert body["details"][0]["request_id"] == first["request_id"]
    assert ProcessingRequest.objects.count() == 1


def test_a_key_is_the_accounts_own(api: APIClient) -> None:
    other_account, _ = services.account_get_or_create(name=f"shop-{uuid.uuid4().hex[:8]}")
    other = APIClient()
    other.credentials(
        HTTP_AUTHORIZATION=f"Bearer {services.api_key_create(account=other_account)[1]}"
    )
    mine = upload(api, "shared-key")
    theirs = upload(other, "shared-key")
    assert mine.status_code == theirs.status_code == 202
    assert mine.json()["request_id"] != theirs.json()["request_id"]
    assert "Idempotent-Replayed" not in theirs.headers


def test_once_its_time_is_up_the_key_makes_a_new_request(api: APIClient, settings: Any) -> None:
    settings.IDEMPOTENCY_KEY_HOURS = 24
    first = upload(api, "nightly-import").json()["request_id"]
    ProcessingRequest.objects.filter(pk=first).update(
        created_at=timezone.now() - timedelta(hours=24, minutes=1)
    )
    second = upload(api, "nightly-import")
    assert second.status_code == 202
    assert second.json()["request_id"] != first
    assert "Idempotent-Replayed" not in second.headers
    # The key is the new request's now: sent again, that one comes back.
    third = upload(api, "nightly-import")
    assert third.json()["request_id"] == second.json()["request_id"]
    assert third.headers["Idempotent-Replayed"] == "true"


def test_an_upload_sent_again_is_answered_even_when_the_quota_is_full(
    api: APIClient, settings: Any
) -> None:
    # The first took the account's whole quota: a new upload would be refused, but this
    # one was accepted already.
    settings.ACCOUNT_MAX_PENDING_IMAGES = 1
    first = upload(api, "only-one")
    again = upload(api, "only-one")
    assert first.status_code == again.status_code == 202
    assert again.json()["request_id"] == first.json()["request_id"]
    assert upload(api, "another").status_code == 429


@pytest.mark.parametrize("key", ["", "has space", "x" * 256, "naïve"])
def test_a_key_that_is_not_one_is_refused_naming_the_header(api: APIClient, key: str) -> None:
    refused = upload(api, key)
    assert refused.status_code == 400
    message = refused.json()["details"][0]["message"]
    assert refused.json() == invalid_input("Idempotency-Key", message)
    assert message.startswith("The Idempotency-Key header must be 1 to 255 visible ASCII")
    assert ProcessingRequest.objects.count() == 0


def test_a_key_in_utf8_is_echoed_as_written_not_as_latin1(api: APIClient) -> None:
    # A WSGI server reads a header's bytes as Latin-1 (PEP 3333); the test client does
    # not, so the header is given here as gunicorn hands it on.
    refused = upload(api, "café".encode().decode("latin-1"))
    assert refused.status_code == 400
    assert refused.json()["details"][0]["message"].endswith("not 'café'.")


def test_a_rerun_sent_again_with_its_key_gets_the_first_rerun_back(api: APIClient) -> None:
    source = upload(api, None).json()["request_id"]
    path = f"/api/requests/{source}/rerun/"
    headers = {"Idempotency-Key": "rerun-at-40"}
    first = api.post(path, {"quality": 40}, format="json", headers=headers)
    again = api.post(path, {"quality": 40}, format="json", headers=headers)
    other = api.post(path, {"quality": 60}, format="json", headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert other.status_code == 422
    assert other.json()["details"][0]["request_id"] == first.json()["request_id"]
    assert ProcessingRequest.objects.filter(source_request=source).count() == 1


def test_an_uploads_key_sent_with_a_rerun_is_refused_not_taken_for_it(api: APIClient) -> None:
    source = upload(api, "import-1").json()["request_id"]
    rerun = api.post(
        f"/api/requests/{source}/rerun/", {}, format="json", headers={"Idempotency-Key": "import-1"}
    )
    assert rerun.status_code == 422
    assert rerun.json()["details"][0]["request_id"] == source


def test_an_upload_sent_again_is_answered_past_the_upload_rate_limit(
    api: APIClient, settings: Any
) -> None:
    # Refused as throttled, a client whose answer was lost would take it for "not made".
    settings.ACCOUNT_UPLOAD_RATE_LIMIT = "1/minute"
    first = upload(api, "rate-1")
    again = upload(api, "rate-1")
    assert first.status_code == again.status_code == 202
    assert again.headers["Idempotent-Replayed"] == "true"
    assert upload(api, "rate-2").status_code == 429


def test_the_key_with_another_file_past_the_rate_limit_is_refused_before_the_file_is_read(
    api: APIClient, settings: Any
) -> None:
    """The rate limit lets a key that made a request through, for its replay: any other
    file sent with it was read and checked whole first (a 10 MB CSV is seconds of a web
    thread), as often as the account liked."""
    settings.ACCOUNT_UPLOAD_RATE_LIMIT = "1/minute"
    first = upload(api, "rate-1").json()["request_id"]
    not_a_catalogue = "Name,Price\n" + "shoe,1\n" * 1000
    refused = upload(api, "rate-1", not_a_catalogue)
    # 422 for the key, not 400 for the file's missing columns: the file was never read
    assert refused.status_code == 422
    assert refused.json()["code"] == "idempotency_key_reused"
    assert refused.json()["details"][0]["request_id"] == first
    assert ProcessingRequest.objects.count() == 1


def test_a_rerun_sent_again_is_answered_after_its_source_was_deleted(api: APIClient) -> None:
    source = upload(api, None).json()["request_id"]
    path = f"/api/requests/{source}/rerun/"
    first = api.post(path, {"quality": 40}, format="json", headers={"Idempotency-Key": "r-1"})
    ProcessingRequest.objects.filter(pk=source).update(
        expired_at=timezone.now(), deleted_by_owner=True
    )
    again = api.post(path, {"quality": 40}, format="json", headers={"Idempotency-Key": "r-1"})
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    # Without the key, or with a new one, the deleted source is gone
    assert api.post(path, {"quality": 40}, format="json").status_code == 410
    fresh = api.post(path, {"quality": 40}, format="json", headers={"Idempotency-Key": "r-2"})
    assert fresh.status_code == 410
