"""A key saved in this process (revoked, given an expiry) is checked afresh at its next use."""

from typing import Any

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from accounts.authentication import checked_keys
from accounts.models import ApiKey


@receiver(post_save, sender=ApiKey)
@receiver(post_delete, sender=ApiKey)
def api_key_changed(**_: Any) -> None:
    checked_keys.clear()
