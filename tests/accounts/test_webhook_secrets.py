"""Each account signs its webhooks with its own secret, and a rotation lets receivers
switch without a gap: during the overlap every event carries both signatures."""

import uuid

import pytest
import urllib3
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.harness.origin import Origin
from tests.harness.service import Service
from tests.support import encoded, photo, wait_until

pytestmark = pytest.mark.e2e


def upload_with_webhook(service: Service, key: str, origin: Origin, hook: str) -> None:
    image = origin.add(f"/{uuid.uuid4().hex}/a.jpg", encoded(photo(120, 90), "JPEG", quality=90))
    csv_text = f"S. No.,Product Name,Input Image Urls\n1,Lamp,{image}\n"
    response = urllib3.request(
        "POST",
        f"{service.base_url}/api/upload/",
        fields={"file": ("p.csv", csv_text.encode(), "text/csv"), "webhook_url": hook},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status == 202, response.data


def test_a_rotated_secret_signs_beside_the_new_one_and_other_accounts_keep_theirs(
    production_service: Service, origin: Origin
) -> None:
    # Given two accounts, each with its own key and secret
    service = production_service
    name = f"rotating-{uuid.uuid4().hex[:6]}"
    key = service.manage("apikey", "create", "--account", name).splitlines()[-1]
    old = service.manage("account", "secret", name).splitlines()[-1]
    assert old != service.webhook_secret

    # When the account's secret is rotated, then a request of it finishes
    new = service.manage("account", "rotate-secret", name).splitlines()[-1]
    hook = f"/{uuid.uuid4().hex}/hook"
    upload_with_webhook(service, key, origin, origin.base_url + hook)
    [(headers, body)] = wait_until(lambda: origin.posts_to(hook), timeout=60, what="the webhook")

    # Then the event carries two signatures, and a receiver with either secret verifies it
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert Webhook(old).verify(body, headers)["status"] == "completed"
    assert Webhook(new).verify(body, headers)["status"] == "completed"
    # but not one with another account's secret
    with pytest.raises(WebhookVerificationError):
        Webhook(service.webhook_secret).verify(body, headers)
