"""The admin: an operator makes an account and a key for it (the key shown once), and
revokes it."""

import re

import pytest
from django.contrib.auth.models import User
from django.contrib.messages import get_messages
from django.test import Client

from accounts.models import Account, ApiKey

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("ops", "ops@example.com", "x"))
    return client


def test_an_operator_makes_an_account_and_a_key_shown_once_then_revokes_it(
    operator: Client,
) -> None:
    # When the operator adds an account, then a key for it
    made = operator.post("/admin/accounts/account/add/", {"name": "acme", **no_members()})
    assert made.status_code == 302, made.content
    account = Account.objects.get(name="acme")
    added = operator.post(
        "/admin/accounts/apikey/add/", {"name": "feed", "account": account.pk}, follow=True
    )

    # Then the key is shown once, and works
    shown = " ".join(str(message) for message in get_messages(added.wsgi_request))
    key = re.search(r"The API key for feed is: (\S+)\.", shown)
    assert key, shown
    status = Client(HTTP_AUTHORIZATION=f"Bearer {key.group(1)}").get("/api/upload/")
    assert status.status_code == 405  # authenticated; uploads are POSTs
    api_key = ApiKey.objects.get(account=account)
    page = operator.get(f"/admin/accounts/apikey/{api_key.pk}/change/")
    assert key.group(1).encode() not in page.content

    # When it is revoked in the admin, then it no longer works
    operator.post(
        f"/admin/accounts/apikey/{api_key.pk}/change/",
        {"name": "feed", "account": account.pk, "revoked": "on"},
    )
    status = Client(HTTP_AUTHORIZATION=f"Bearer {key.group(1)}").get("/api/upload/")
    assert status.status_code == 401


def test_the_admin_never_shows_a_webhook_secret(operator: Client) -> None:
    account = Account.objects.create(name="acme")
    page = operator.get(f"/admin/accounts/account/{account.pk}/change/")
    assert page.status_code == 200
    assert account.webhook_secret.encode() not in page.content


def no_members() -> dict[str, str]:
    return {
        "members-TOTAL_FORMS": "0",
        "members-INITIAL_FORMS": "0",
        "members-MIN_NUM_FORMS": "0",
        "members-MAX_NUM_FORMS": "1000",
    }
