"""The sweep's bound on attempts, in process: an image whose worker keeps dying must end
as failed rather than leave its request processing for ever.

(The sweep's re-queueing of lost work is shown end to end in test_faults.py.)"""

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from accounts.models import Account
from processing import intake
from processing.models import ProcessingRequest, ProductImage

pytestmark = pytest.mark.django_db


def test_an_image_lost_too_often_fails_and_its_request_finishes(
    settings: Any, tmp_path: Path, account: Account
) -> None:
    # Given a request whose one image was claimed IMAGE_MAX_ATTEMPTS times, long ago
    settings.MEDIA_ROOT = tmp_path
    settings.IMAGE_MAX_ATTEMPTS = 3
    request = intake.request_create(
        account=account,
        csv_data=b"S. No.,Product Name,Input Image Urls\n1,Lamp,https://shop.example/a.jpg\n",
        public_base_url="http://testserver",
    )
    ProcessingRequest.objects.filter(pk=request.pk).update(status="processing")
    ProductImage.objects.filter(request=request).update(
        status="processing",
        attempts=3,
        claimed_at=timezone.now() - timedelta(seconds=settings.WORK_LEASE_SECONDS + 1),
    )

    # When the sweep runs
    call_command("sweep")

    # Then the image has failed with its reason and the request has finished
    image = ProductImage.objects.get(request=request)
    assert image.status == "failed"
    assert image.error_code == "internal_error"
    assert image.error_message.startswith("Gave up after 3 attempts")
    request.refresh_from_db()
    assert request.status == "completed_with_errors"
    assert (request.succeeded_images, request.failed_images) == (0, 1)
    assert (tmp_path / request.output_csv_name).exists()
