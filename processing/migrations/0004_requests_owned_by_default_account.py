"""Requests made before accounts existed belong to the account `default`, made here when
there are any (or when WEBHOOK_SECRET is set), with WEBHOOK_SECRET as its webhook secret
when that is set, so that receivers of existing deployments keep verifying."""

from typing import Any

from django.conf import settings
from django.db import migrations


def requests_to_default_account(apps: Any, schema_editor: Any) -> None:
    account_model = apps.get_model("accounts", "Account")
    request_model = apps.get_model("processing", "ProcessingRequest")
    unowned = request_model.objects.filter(account__isnull=True)
    if not unowned.exists() and not settings.WEBHOOK_SECRET:
        return
    account, made = account_model.objects.get_or_create(name="default")
    if made and settings.WEBHOOK_SECRET:
        account.webhook_secret = settings.WEBHOOK_SECRET
        account.save(update_fields=["webhook_secret"])
    unowned.update(account=account)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
        ("processing", "0003_request_account"),
    ]

    operations = [
        migrations.RunPython(requests_to_default_account, migrations.RunPython.noop),
    ]
