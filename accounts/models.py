"""Who is asking: accounts, their API keys, their people and their webhook secrets.

Every processing request belongs to an account; an API key or a logged-in user acts for
exactly one account, and sees nothing of any other.
"""

import base64
import secrets
from datetime import datetime
from typing import ClassVar

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from rest_framework_api_key.models import AbstractAPIKey, APIKeyManager

ACCOUNT_NAME = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
    "An account name is 1 to 64 letters, digits, '.', '-' or '_', starting with a letter or digit.",
)


def new_webhook_secret() -> str:
    """A Standard Webhooks signing key: 'whsec_' + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


class Account(models.Model):
    name = models.CharField(max_length=64, unique=True, validators=[ACCOUNT_NAME])
    created_at = models.DateTimeField(auto_now_add=True)
    # Signs this account's webhook events. After a rotation the previous secret signs too,
    # until previous_secret_expires_at, so that receivers can switch without a gap.
    webhook_secret = models.CharField(max_length=128, default=new_webhook_secret)
    previous_webhook_secret = models.CharField(max_length=128, blank=True)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "accounts"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def signing_secrets(self, now: datetime) -> list[str]:
        """The secrets an event is signed with now: the current one, and the previous one
        while its overlap lasts."""
        current = [self.webhook_secret]
        expires = self.previous_secret_expires_at
        if self.previous_webhook_secret and expires is not None and now < expires:
            return [*current, self.previous_webhook_secret]
        return current

    def previous_secret_until(self, now: datetime) -> datetime | None:
        """Until when the previous secret signs too; None where it no longer does."""
        return self.previous_secret_expires_at if self.signing_secrets(now)[1:] else None


class ApiKeyManager(APIKeyManager):
    def get_usable_keys(self) -> models.QuerySet["ApiKey"]:
        # The account comes with the key: authenticating a request is one query.
        return super().get_usable_keys().select_related("account")


class ApiKey(AbstractAPIKey):
    """A key for the API, acting for its account. Stored as a SHA-512 hash; the key itself is
    shown once, when it is made. `prefix` (its first 8 characters) names it in lists."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="api_keys")
    last_used_at = models.DateTimeField(null=True, blank=True)

    objects: ClassVar[ApiKeyManager] = ApiKeyManager()

    @property
    def in_use(self) -> bool:
        """Neither revoked nor past its expiry: what the API takes."""
        return not (self.revoked or self.has_expired)

    class Meta(AbstractAPIKey.Meta):
        db_table = "api_keys"
        verbose_name = "API key"
        verbose_name_plural = "API keys"


class Member(models.Model):
    """A person's login, and the one account it acts for."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="membership"
    )
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="members")

    class Meta:
        db_table = "account_members"

    def __str__(self) -> str:
        return f"{self.user} in {self.account}"


class LoginLink(models.Model):
    """A one-time login: valid once, until expires_at. Only the token's hash is stored."""

    token_hash = models.CharField(max_length=64, unique=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "login_links"

    def __str__(self) -> str:
        return f"login link for {self.user} (until {self.expires_at})"
