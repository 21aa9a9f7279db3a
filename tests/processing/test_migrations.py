"""Accounts arriving on a database that already has requests: they all belong to the
account `default`, which signs with the WEBHOOK_SECRET receivers already verify with."""

from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from processing.models import ProcessingRequest

BEFORE = ("processing", "0002_recent_requests_and_labels")
BEFORE_ACCOUNTS = [BEFORE, ("accounts", None)]
OLD_SECRET = "whsec_dGVzdHMtb25seS13ZWJob29rLXNlY3JldC1rZXk="


@pytest.mark.django_db(transaction=True)
def test_requests_made_before_accounts_belong_to_default_signing_with_the_old_secret(
    settings: Any,
) -> None:
    # Given a database as it was before accounts, with a request in it
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE_ACCOUNTS)
    old_models = executor.loader.project_state(BEFORE).apps
    old = old_models.get_model("processing", "ProcessingRequest").objects.create(
        public_base_url="http://testserver", quality=50, total_images=1
    )

    # When the migrations run, with the deployment's WEBHOOK_SECRET set
    settings.WEBHOOK_SECRET = OLD_SECRET
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    # Then the request belongs to `default`, whose webhook secret is that one
    request = ProcessingRequest.objects.select_related("account").get(pk=old.pk)
    assert request.account.name == "default"
    assert request.account.webhook_secret == OLD_SECRET
