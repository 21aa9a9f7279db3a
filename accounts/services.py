"""Every write to accounts: make one, issue and revoke keys, rotate the webhook secret, add
people (new, or of no account yet), make and redeem one-time login links."""

import hashlib
import logging
import secrets
import unicodedata
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final, cast

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from accounts.models import Account, ApiKey, LoginLink, Member, new_webhook_secret

logger = logging.getLogger(__name__)

LOGIN_LINK_LIFETIME: Final = timedelta(minutes=15)
LOCAL_ACCOUNT: Final = "local"
# Keys an account may hold unrevoked when its people make them on the account page: one
# for each script and environment, with room to rotate; not a key a click for ever.
ACTIVE_KEYS_LIMIT: Final = 25
KEY_LABEL_LENGTH: Final = 50  # ApiKey.name's column


class AccountError(Exception):
    """What a command or the admin was asked that cannot be done; the message says why."""


def account_get_or_create(*, name: str) -> tuple[Account, bool]:
    """The account with this name, made (with a new webhook secret) if there is none."""
    try:
        Account(name=name).clean_fields(exclude=["webhook_secret", "previous_webhook_secret"])
    except ValidationError as invalid:
        raise AccountError(" ".join(invalid.messages)) from None
    return Account.objects.get_or_create(name=name)


def account_get(*, name: str) -> Account:
    try:
        return Account.objects.get(name=name)
    except Account.DoesNotExist:
        raise AccountError(f"There is no account named {name!r}.") from None


def api_key_create(
    *,
    account: Account,
    label: str = "",
    limit: int | None = None,
    by: str = "",
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """A new key for account; the key itself is returned here and never again. With a
    limit, refused while the account holds that many usable keys; by names who asked;
    with expires_at, refused from then on."""
    # As typed and as shown: é typed as e and its accent counts once.
    label = unicodedata.normalize("NFC", label).strip()
    if any(unicodedata.category(char) in {"Cc", "Cf"} for char in label):
        # A NUL reached PostgreSQL (500); zero-width characters make a label look blank.
        raise AccountError("A key's label is plain text: no control or invisible characters.")
    if len(label) > KEY_LABEL_LENGTH:
        raise AccountError(
            f"A key's label is at most {KEY_LABEL_LENGTH} characters; this one has {len(label)}."
        )
    with transaction.atomic():
        if limit is not None:
            account_lock(account_id=account.pk)  # two clicks at once make one key past it, not two
            usable = [key for key in account.api_keys.filter(revoked=False) if key.in_use]
            if len(usable) >= limit:
                raise AccountError(
                    f"This account already has {len(usable)} keys in use, the most it may "
                    "hold. Revoke one it no longer needs, then make the new one."
                )
        made, key = ApiKey.objects.create_key(
            account=account, name=label or "key", expiry_date=expires_at
        )
    api_key = cast(ApiKey, made)
    logger.info("API key %s made for account %s%s", api_key.prefix, account.name, _by(by))
    return api_key, key


def api_key_revoke(*, prefix: str, account: Account | None = None, by: str = "") -> ApiKey:
    """Revoke the key with this prefix, for good; with an account, only a key of its own."""
    keys = ApiKey.objects.select_related("account")
    if account is not None:
        keys = keys.filter(account=account)
    try:
        api_key: ApiKey = keys.get(prefix=prefix)
    except ApiKey.DoesNotExist:
        raise AccountError(f"There is no API key with the prefix {prefix!r}.") from None
    if not api_key.revoked:
        api_key.revoked = True
        api_key.save(update_fields=["revoked"])  # post_save: forgotten by checked_keys
        logger.info("API key %s of account %s revoked%s", prefix, api_key.account.name, _by(by))
    return api_key


def api_key_used(*, api_key: ApiKey) -> None:
    """Note that the key was used: at most one write a minute per key, whatever the traffic."""
    now = timezone.now()
    last = api_key.last_used_at
    if last is not None and now - last < timedelta(minutes=1):
        return
    ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
    api_key.last_used_at = now  # the copy checked_keys holds, too


def account_lock(*, account_id: int) -> None:
    """Hold the account's row until the transaction ends: what changes or checks its
    requests (an upload, a re-run, a retry, the upload rate) then goes one at a time per
    account, each seeing the others' effect."""
    Account.objects.select_for_update().filter(pk=account_id).first()


def account_secret_rotate(*, account: Account, by: str = "", replacing: str | None = None) -> str:
    """A new webhook secret; the old one signs too for WEBHOOK_SECRET_OVERLAP seconds.
    replacing: the fingerprint of the secret the asker saw; refused if that secret has been
    replaced already (a confirmation sent twice would otherwise end, at once, the secret
    receivers still use: the first rotation's secret, never seen, became the previous)."""
    now = timezone.now()
    with transaction.atomic():
        locked = Account.objects.select_for_update().get(pk=account.pk)
        if replacing is not None and replacing != secret_fingerprint(locked.webhook_secret):
            raise AccountError(
                "The secret was rotated already, since the page you confirmed on was shown: "
                "nothing more was changed. The current secret is shown below."
            )
        locked.previous_webhook_secret = locked.webhook_secret
        locked.previous_secret_expires_at = now + timedelta(seconds=settings.WEBHOOK_SECRET_OVERLAP)
        locked.webhook_secret = new_webhook_secret()
        locked.save(
            update_fields=[
                "webhook_secret",
                "previous_webhook_secret",
                "previous_secret_expires_at",
            ]
        )
    logger.info("webhook secret of account %s rotated%s", account.name, _by(by))
    return locked.webhook_secret


def secret_fingerprint(secret: str) -> str:
    """Names a secret in a form without showing it."""
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


def user_create(*, account: Account, username: str, password: str | None) -> Any:
    """A person who logs in to the page for account; without a password, only login links
    let them in."""
    users = get_user_model()
    if users.objects.filter(username=username).exists():
        raise AccountError(f"There is already a user named {username!r}.")
    with transaction.atomic():
        user = users.objects.create_user(username=username, password=password)
        Member.objects.create(user=user, account=account)
    return user


def user_join(*, account: Account, username: str) -> tuple[Any, bool]:
    """Put an existing user of no account into account; True where they joined now, False
    where they were in it already. A user of another account is not moved."""
    user = user_get(username=username)
    member = Member.objects.filter(user=user).select_related("account").first()
    if member is None:
        Member.objects.create(user=user, account=account)
        return user, True
    if member.account_id != account.pk:
        raise AccountError(
            f"User {user.get_username()} belongs to account {member.account.name}; a user acts "
            f"for one account. Change it on the user's page in the admin if it should be "
            f"{account.name}."
        )
    return user, False


def user_get(*, username: str) -> Any:
    try:
        return get_user_model().objects.get(username=username)
    except get_user_model().DoesNotExist:
        raise AccountError(f"There is no user named {username!r}.") from None


def login_link_create(*, user: Any) -> str:
    """A token that logs user in once, within LOGIN_LINK_LIFETIME; refused for a
    deactivated user, whom it would not let in."""
    if not user.is_active:
        raise AccountError(
            f"User {user.get_username()} is deactivated, so a login link would not let them "
            "in: make them active again in the admin first."
        )
    token = secrets.token_urlsafe(32)
    LoginLink.objects.create(
        token_hash=_token_hash(token),
        user=user,
        expires_at=timezone.now() + LOGIN_LINK_LIFETIME,
    )
    return token


def login_link_user(*, token: str) -> Any | None:
    """The user the token would log in, without using it up; None where it is used or
    expired, or its user deactivated."""
    link = _usable_links(token).select_related("user").first()
    return link.user if link is not None else None


def login_link_redeem(*, token: str) -> Any | None:
    """The user the token logs in, once: a second use, a use after it expired, or one for a
    deactivated user, is None."""
    links = _usable_links(token)
    link = links.select_related("user").first()
    if link is None or not links.filter(pk=link.pk).update(used_at=timezone.now()):
        return None
    return link.user


def _usable_links(token: str) -> "QuerySet[LoginLink]":
    # Not a deactivated user's, made before: it was offered, used up and recorded a login
    # that the next page undid (Django lets no inactive user stay logged in).
    return LoginLink.objects.filter(
        token_hash=_token_hash(token),
        used_at__isnull=True,
        expires_at__gt=timezone.now(),
        user__is_active=True,
    )


def local_setup(*, var_dir: Path) -> tuple[str | None, str | None]:
    """The embedded default's first start: the account, user and API key `local`, the key
    written to var_dir/api_key (mode 0600). Returns the key when it is new, and a fresh
    login token every time (none while the user is deactivated)."""
    account, _ = account_get_or_create(name=LOCAL_ACCOUNT)
    users = get_user_model()
    user = users.objects.filter(username=LOCAL_ACCOUNT).first()
    if user is None:
        user = user_create(account=account, username=LOCAL_ACCOUNT, password=None)
    key_file = var_dir / "api_key"
    new_key = None
    if not _key_file_valid(key_file, account):
        _, new_key = api_key_create(account=account, label="make run")
        var_dir.mkdir(parents=True, exist_ok=True)
        key_file.touch(mode=0o600)
        key_file.chmod(0o600)
        key_file.write_text(new_key + "\n")
    return new_key, login_link_create(user=user) if user.is_active else None


def _key_file_valid(key_file: Path, account: Account) -> bool:
    if not key_file.exists():
        return False
    key = key_file.read_text().strip()
    try:
        api_key = cast(ApiKey, ApiKey.objects.get_from_key(key))
    except ApiKey.DoesNotExist:
        return False
    return bool(api_key.account_id == account.pk and not api_key.has_expired)


def _by(username: str) -> str:
    """Who did it, for the log: a person on the account page; a command says nothing."""
    return f" by {username!r} on the account page" if username else ""


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
