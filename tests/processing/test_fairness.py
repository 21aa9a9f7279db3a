"""A fair share of the workers: a small request of one account is not queued behind a large
request of another. Real processes: PostgreSQL, a Redis of the test's own, gunicorn, a
Celery worker and beat, an origin on 127.0.0.1."""

import time
import uuid
from pathlib import Path

import pytest
import urllib3

from tests.harness.origin import Origin
from tests.harness.redis import private_service
from tests.support import encoded, get_json, multipart_upload, photo, wait_until

pytestmark = pytest.mark.e2e


def catalogue(origin: Origin, images: int, bodies: list[bytes]) -> str:
    """A CSV of `images` distinct URLs, one per product."""
    run = uuid.uuid4().hex[:8]
    rows = [
        f"{n + 1},P{n},{origin.add(f'/fair-{run}/{n}.jpg', bodies[n % len(bodies)])}"
        for n in range(images)
    ]
    return "S. No.,Product Name,Input Image Urls\n" + "\n".join(rows) + "\n"


def test_a_small_request_finishes_within_seconds_while_a_large_one_of_another_account_runs(
    tmp_path: Path, origin: Origin
) -> None:
    # Given the service on PostgreSQL and Redis, and two accounts
    bodies = [encoded(photo(640, 480, n), "JPEG", quality=90) for n in range(16)]
    large, small = catalogue(origin, 3000, bodies), catalogue(origin, 10, bodies)
    with private_service(tmp_path, origin) as (service, _, _):
        other_key = service.manage("apikey", "create", "--account", "b").splitlines()[-1]

        # When account A's 3,000 images are under way
        a_id = multipart_upload(service.base_url, large).json()["request_id"]

        def a_progress() -> int:
            progress = get_json(f"{service.base_url}/api/status/{a_id}/")[1]["progress"]
            return int(progress["succeeded"] + progress["failed"])

        wait_until(lambda: a_progress() >= 50, timeout=120, what="A to be under way")

        # and account B uploads 10
        uploaded = time.monotonic()
        b_id = urllib3.request(
            "POST",
            f"{service.base_url}/api/upload/",
            fields={"file": ("b.csv", small.encode(), "text/csv")},
            headers={"Authorization": f"Bearer {other_key}"},
        ).json()["request_id"]

        def b_finished() -> bool:
            status = urllib3.request(
                "GET",
                f"{service.base_url}/api/status/{b_id}/",
                headers={"Authorization": f"Bearer {other_key}"},
            ).json()
            return bool(status["status"] == "completed")

        wait_until(b_finished, timeout=60, interval=0.05, what="B to complete")
        took = time.monotonic() - uploaded

        # Then B completed within seconds of its upload (behind A's images, it would have
        # waited half a minute), while most of A was still to do
        a_done = a_progress()
        assert took <= 15.0, f"B took {took:.1f} s"
        assert a_done < 3000 - 500, f"A had done {a_done} of 3,000 when B completed"
