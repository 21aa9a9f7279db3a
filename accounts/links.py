"""Absolute links the service hands to people outside a request (login links)."""

import os

from django.conf import settings
from django.urls import reverse


def login_link_url(token: str, *, base_url: str | None) -> str:
    """The URL that redeems a login token: under base_url, PUBLIC_BASE_URL, or the local
    server (HOST and PORT, as `make run` starts it)."""
    local = f"http://127.0.0.1:{os.environ.get('PORT') or 8000}"
    base = base_url or settings.PUBLIC_BASE_URL or local
    return base.rstrip("/") + reverse("login-link", kwargs={"token": token})
