"""Who is asking, for the API: an API key (`Authorization: Bearer <key>` or `X-API-Key`),
or a person logged in to the page (Django's session, CSRF enforced on every unsafe
method). Either way the request acts for one account: request_account() says which."""

import hashlib
import threading
import time
from typing import Any, cast

from django.http import HttpRequest
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from accounts import services
from accounts.models import Account, ApiKey


class AccountUser:
    """request.user for a request made with an API key: the key's account."""

    is_authenticated = True
    is_anonymous = False

    def __init__(self, api_key: ApiKey) -> None:
        self.api_key = api_key
        self.account = api_key.account

    def __str__(self) -> str:
        return f"API key {self.api_key.prefix} of {self.account.name}"


class ApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[AccountUser, ApiKey] | None:
        key = api_key_sent(request)
        if key is None:
            return None  # no key: perhaps a session; else 401 from the permission check
        api_key = checked_keys.get(key)
        if api_key is None:
            try:
                api_key = cast(ApiKey, ApiKey.objects.get_from_key(key))
            except ApiKey.DoesNotExist:
                raise exceptions.AuthenticationFailed() from None
            checked_keys.put(key, api_key)
        if api_key.has_expired:
            raise exceptions.AuthenticationFailed()
        services.api_key_used(api_key=api_key)
        return AccountUser(api_key), api_key

    def authenticate_header(self, request: Request) -> str:
        return "Bearer"


class CheckedKeys:
    """Keys this process checked against the database in the last KEY_CHECK_SECONDS, so
    that a client polling its status costs one query a call, not two. A key revoked in
    another process (a command, another web worker's admin) stops working here within that
    time; one revoked or changed in this process, at once (accounts.signals)."""

    def __init__(self, seconds: float, size: int) -> None:
        self.seconds = seconds
        self.size = size
        self._keys: dict[bytes, tuple[ApiKey, float]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> ApiKey | None:
        found = self._keys.get(_digest(key))
        if found is None or time.monotonic() - found[1] > self.seconds:
            return None
        return found[0]

    def put(self, key: str, api_key: ApiKey) -> None:
        with self._lock:
            if len(self._keys) >= self.size:
                self._keys.clear()
            self._keys[_digest(key)] = (api_key, time.monotonic())

    def clear(self) -> None:
        with self._lock:
            self._keys.clear()


def _digest(key: str) -> bytes:
    # Not the key itself in memory longer than its request.
    return hashlib.sha256(key.encode()).digest()


KEY_CHECK_SECONDS = 10.0
checked_keys = CheckedKeys(seconds=KEY_CHECK_SECONDS, size=10_000)


class AccountSessionAuthentication(authentication.SessionAuthentication):
    """A logged-in person whose user belongs to an account; CSRF checked as DRF does."""

    def authenticate(self, request: Request) -> tuple[Any, None] | None:
        found = super().authenticate(request)
        if found is None or user_account(found[0]) is None:
            return None
        return found


def authorization_sent(request: Request | HttpRequest) -> tuple[str, str]:
    """The Authorization header's scheme and credentials, "" for either not sent."""
    scheme, _, credentials = str(request.META.get("HTTP_AUTHORIZATION", "")).partition(" ")
    return scheme.strip(), credentials.strip()


def api_key_sent(request: Request | HttpRequest) -> str | None:
    """The key in `Authorization: Bearer <key>` or `X-API-Key: <key>`; None if neither."""
    scheme, credentials = authorization_sent(request)
    if scheme.lower() == "bearer" and credentials:
        return credentials
    key = str(request.META.get("HTTP_X_API_KEY", "")).strip()
    return key or None


def user_account(user: Any) -> Account | None:
    """The account a user (a person, or an API key's AccountUser) acts for, if any."""
    if isinstance(user, AccountUser):
        return user.account
    if not getattr(user, "is_authenticated", False):
        return None
    membership = getattr(user, "membership", None)
    return membership.account if membership is not None else None


def account_known(user: Any) -> Account | None:
    """The account user acts for, if known without asking the database (an API key's, a
    person's whose membership and account were read already): for the access log, which
    must not query, and cannot when the database is away."""
    if isinstance(user, AccountUser):
        return user.account
    descriptor = getattr(type(user), "membership", None)  # a person's User; never the anonymous
    if descriptor is None or not descriptor.is_cached(user):
        return None
    membership = getattr(user, "membership", None)  # cached: no query
    if membership is None or not type(membership).account.is_cached(membership):
        return None
    account: Account = membership.account
    return account


def request_account(request: Request | HttpRequest) -> Account:
    """The account of an authenticated request (the views' permission check ran first)."""
    account = user_account(request.user)
    if account is None:
        raise exceptions.NotAuthenticated()
    return account
