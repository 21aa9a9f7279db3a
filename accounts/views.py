"""The page's doors: log in with a username and password or a one-time link, log out."""

import logging
import math
import time
from typing import Any

from django.contrib import messages
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.forms import AuthenticationForm
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from accounts import services
from config.proxies import client_address

logger = logging.getLogger(__name__)

# Failed password logins allowed per user name and address before a pause.
LOGIN_FAILURES_ALLOWED = 10
LOGIN_PAUSE_SECONDS = 15 * 60


class LoginForm(AuthenticationForm):
    """Django's login form, refusing more than LOGIN_FAILURES_ALLOWED wrong passwords for
    one user name from one address in LOGIN_PAUSE_SECONDS. The name counted is the one
    authentication uses (spaces trimmed, Unicode normalised, any case): counted as typed,
    "otto " and otto in full-width letters each had ten fresh tries at otto's password.
    A paused login says so, and until when: it answered the right password as a wrong one,
    which sent its owner to try more. The pause tells nothing of the name: any is paused."""

    def clean(self) -> dict[str, Any]:
        key = self._failures_key()
        if _failures(key) >= LOGIN_FAILURES_ALLOWED:
            raise ValidationError(
                "Too many wrong passwords were sent for this user name from your address: "
                f"try again in about {_pause_left(key)}, or log in with a "
                "one-time link (whoever runs the service makes one with "
                "python manage.py login-link USERNAME).",
                code="login_paused",
            )
        try:
            return super().clean()
        except Exception:
            _failure_count(key)
            raise

    def _failures_key(self) -> str:
        address = client_address(self.request) if self.request else ""
        typed = self.cleaned_data.get("username") or ""
        username = AbstractBaseUser.normalize_username(str(typed))[:150].lower()
        return f"login-failures:{address}:{username}"


def _failures(key: str) -> int:
    """The failures counted under key; none while the counts cannot be read. The counts live
    in Redis (CACHE_URL): while it was away, every login, right or wrong, answered 500."""
    try:
        return int(cache.get(key, 0))
    except Exception:
        logger.warning("login failures cannot be counted; the login is let through", exc_info=True)
        return 0


def _failure_count(key: str) -> None:
    try:
        failures = int(cache.get(key, 0)) + 1
        cache.set(key, failures, LOGIN_PAUSE_SECONDS)
        if failures >= LOGIN_FAILURES_ALLOWED:  # the pause starts: none is counted during it
            cache.set(f"{key}:until", time.time() + LOGIN_PAUSE_SECONDS, LOGIN_PAUSE_SECONDS)
    except Exception:
        logger.warning("login failures cannot be counted", exc_info=True)


def _pause_left(key: str) -> str:
    """The whole minutes, rounded up, until the pause under key ends; its full length where
    its end is not known (a pause that began before its end was kept)."""
    try:
        until = cache.get(f"{key}:until")
    except Exception:
        until = None
    left = until - time.time() if until is not None else LOGIN_PAUSE_SECONDS
    minutes = max(1, math.ceil(left / 60))
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


class AdminLoginForm(LoginForm, AdminAuthenticationForm):
    """The admin's login (staff only), under the same limit: it had none."""


class LoginView(auth_views.LoginView):
    template_name = "accounts/login.html"
    authentication_form = LoginForm
    redirect_authenticated_user = True


class LogoutView(auth_views.LogoutView):
    """Django's logout, then the login page saying that it happened. A GET (/logout/ typed
    in the address bar; it was a blank 405) shows a page with the button: logging out on a
    GET would let any page that loads the address log its visitors out."""

    http_method_names = ["get", "head", "post", "options"]

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return render(request, "accounts/logout.html")

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = super().post(request, *args, **kwargs)
        # Kept in a cookie (the session has just been emptied) until the login page shows it.
        messages.info(request, "You are logged out.")
        return response


@never_cache
@require_http_methods(["GET", "POST"])
def login_link(request: HttpRequest, token: str) -> HttpResponse:
    """Log in with a one-time link (`python manage.py login-link USERNAME` prints one).

    Opening the link shows a button; the POST it sends, with the page's CSRF token, logs
    in. Logging in on the GET let any page that loaded the link (an image tag) log a
    visitor into the link's account, whose catalogue the visitor would then upload to its
    owner; and a mail scanner fetching every link used the link up before its person
    could."""
    if request.method == "POST":
        user = services.login_link_redeem(token=token)
    else:
        user = services.login_link_user(token=token)
    if user is None:
        return render(request, "accounts/link_expired.html", status=410)
    if request.method == "GET":
        return render(request, "accounts/link_confirm.html", {"username": user.get_username()})
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    return redirect("home")
