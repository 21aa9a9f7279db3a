"""The account's own page: its API keys (make one, revoke one) and the secret that signs
its webhooks (see it, rotate it), for the people of the account, without asking whoever
runs the service. A person logged in does this, never an API key: a leaked key must not
be able to make itself a successor or lock its owner out."""

import contextlib
import functools
import logging
import re
import secrets
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from accounts import services
from accounts.authentication import KEY_CHECK_SECONDS, user_account
from accounts.models import Account, ApiKey

logger = logging.getLogger(__name__)

AccountView = Callable[..., HttpResponseBase]  # a page, or a download (FileResponse)

# djangorestframework-api-key's: 8 letters and digits.
KEY_PREFIX = re.compile(r"[A-Za-z0-9]{8}")
# How long a page's key form stays used: longer than anyone keeps a page open.
FORM_TOKEN_SECONDS = 24 * 3600


def _form_first_use(used: str) -> bool:
    """Whether the key form's token is sent for the first time; taken for so while the
    tokens cannot be read (they live in Redis, CACHE_URL): no key could be made then, 500."""
    try:
        return bool(cache.add(used, True, FORM_TOKEN_SECONDS))
    except Exception:
        logger.warning("key forms sent again cannot be told; the key is made", exc_info=True)
        return True


def account_page(*methods: str) -> Callable[[AccountView], AccountView]:
    """A page for a logged-in person (else the login page), acting for their account (a
    user of none gets a page that says so), answering these methods alone."""

    # HEAD wherever GET: what a link checker or monitor sends (it was 405). A view changes
    # something on a POST alone: HEAD, answered as GET, passes no CSRF check.
    allowed = [*methods, "HEAD"] if "GET" in methods else list(methods)

    def decorate(view: AccountView) -> AccountView:
        @login_required
        @require_http_methods(allowed)
        @functools.wraps(view)
        def page(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            account = user_account(request.user)
            if account is None:
                return render(request, "accounts/no_account.html", {}, status=403)
            return view(request, account, *args, **kwargs)

        return page

    return decorate


@account_page("GET")
def account_detail(request: HttpRequest, account: Account) -> HttpResponse:
    return account_page_render(request, account)


@account_page("GET", "POST")
def api_key_create(request: HttpRequest, account: Account) -> HttpResponse:
    """Make a key and show it, on this answer alone: not after a redirect, which would have
    to carry it in the session or a cookie. A GET (the login page sending back a person
    whose session had ended as they pressed the button) shows the account page."""
    if request.method != "POST":
        return redirect("account")
    label = request.POST.get("label", "")
    # Each page's form makes one key: sent again (a reload of this answer, Back and send)
    # it made a second key while the first, never seen, stayed in use.
    form_token = request.POST.get("form_token", "")
    used = f"key-form:{form_token}"
    if not form_token or not _form_first_use(used):
        refused = (
            "This form was sent already: the key it made is listed below, and cannot be "
            "shown again. Revoke it if you did not keep it, and make another here."
        )
        return account_page_render(
            request, account, {"key_error": refused, "label": label}, status=409
        )
    try:
        api_key, key = services.api_key_create(
            account=account,
            label=label,
            limit=services.ACTIVE_KEYS_LIMIT,
            by=request.user.get_username(),
        )
    except services.AccountError as refused_key:
        # No key made: the form may be sent again (a reload of this answer was told the
        # key it had made was listed below).
        with contextlib.suppress(Exception):  # the cache away: nothing was kept
            cache.delete(used)
        context = {"key_error": str(refused_key), "label": label}
        return account_page_render(request, account, context, status=400)
    return account_page_render(request, account, {"new_key": key, "new_key_prefix": api_key.prefix})


@account_page("GET", "POST")
def api_key_revoke(request: HttpRequest, account: Account, prefix: str) -> HttpResponse:
    """GET asks to confirm; the POST revokes. A key of another account is not found."""
    api_key = None
    if KEY_PREFIX.fullmatch(prefix):  # else not asked of the database: a NUL was a 500
        api_key = ApiKey.objects.filter(account=account, prefix=prefix, revoked=False).first()
    if api_key is None:
        return render(request, "accounts/key_not_found.html", {}, status=404)
    if request.method != "POST":
        return render(
            request,
            "accounts/key_revoke.html",
            {"api_key": api_key, "key_check_seconds": round(KEY_CHECK_SECONDS)},
        )
    services.api_key_revoke(prefix=prefix, account=account, by=request.user.get_username())
    messages.info(
        request,
        f"Key {prefix}… revoked: every script that sends it is refused from now on "
        f"(within {round(KEY_CHECK_SECONDS)} seconds on every server).",
    )
    return redirect("account")


@account_page("GET", "POST")
def webhook_secret_rotate(request: HttpRequest, account: Account) -> HttpResponse:
    """GET asks to confirm; the POST makes a new secret, shown on the account page, if the
    secret is still the one the confirmation was shown with."""
    if request.method != "POST":
        context = {
            "overlap": _duration_words(settings.WEBHOOK_SECRET_OVERLAP),
            "overlap_seconds": settings.WEBHOOK_SECRET_OVERLAP,
            "fingerprint": services.secret_fingerprint(account.webhook_secret),
        }
        return render(request, "accounts/secret_rotate.html", context)
    try:
        services.account_secret_rotate(
            account=account,
            by=request.user.get_username(),
            replacing=request.POST.get("replacing", ""),
        )
    except services.AccountError as refused:
        return account_page_render(request, account, {"secret_error": str(refused)}, status=409)
    return redirect("account")


def _duration_words(seconds: float) -> str:
    """24 hours, 1.5 minutes, 45 seconds: the overlap as a person reads it (it read "0.025
    hours")."""
    if seconds >= 3600:
        count, unit = seconds / 3600, "hour"
    elif seconds >= 60:
        count, unit = seconds / 60, "minute"
    else:
        count, unit = seconds, "second"
    words = f"{count:.1f}".removesuffix(".0")
    return f"{words} {unit}{'' if words == '1' else 's'}"


def account_page_render(
    request: HttpRequest, account: Account, extra: dict[str, Any] | None = None, status: int = 200
) -> HttpResponse:
    """The account page, with extra in its context (a new key, a refusal, a test event's
    outcome)."""
    account.refresh_from_db()  # the secret as rotated by anyone, a moment ago
    keys = account.api_keys.order_by("revoked", "-created")
    context = {
        "account": account,
        "api_keys": keys,
        "active_keys": sum(key.in_use for key in keys),
        "keys_limit": services.ACTIVE_KEYS_LIMIT,
        "label_length": services.KEY_LABEL_LENGTH,
        "form_token": secrets.token_urlsafe(16),
        "previous_secret_until": account.previous_secret_until(timezone.now()),
        **(extra or {}),
    }
    return render(request, "accounts/account.html", context, status=status)
