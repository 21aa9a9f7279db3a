"""Settings read from the environment, each checked as the process starts and naming
itself when it is wrong. settings.py reads every value through these; gunicorn's
configuration (config/gunicorn.py) and the web worker too, before Django is set up."""

import ipaddress
import os
import re
from typing import TypeVar
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from net import parse_networks

# DRF's throttle rates: its throttles read the period's first letter.
RATE_PATTERN = re.compile(r"[0-9]+/(s|sec|second|m|min|minute|h|hour|d|day)")


# Every name the readers below were asked for, in this process: config/checks.py warns of
# a variable named like them that none reads (IMAGE_QUALTY=30 was ignored in silence, and
# every image went on at 50).
NAMES_READ: set[str] = set()


def env(name: str, default: str = "") -> str:
    NAMES_READ.add(name)
    return os.environ.get(name, default).strip()


def env_int(name: str, default: int, *, positive: bool = False, most: int | None = None) -> int:
    """A whole number; positive=True where 0 or less cannot work (a batch of no URLs
    queued nothing, and every request stayed processing); else 0 or more, up to most."""
    raw = env(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {raw!r}.") from None
    if positive:
        return _checked_positive(name, value, raw)
    if value < 0 or (most is not None and value > most):
        bounds = f"from 0 to {most}" if most is not None else "0 or more"
        raise ImproperlyConfigured(f"{name} must be {bounds}, not {raw!r}.")
    return value


def env_float(name: str, default: float, *, positive: bool = False) -> float:
    """A number; positive=True where 0 or less cannot work (a lease of 0 s renewed itself
    against the database without pause), else 0 or more (a length of time cannot be
    negative: an overlap of -3600 s was taken, and said as "-1 hours")."""
    raw = env(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {raw!r}.") from None
    if positive:
        return _checked_positive(name, value, raw)
    if not value >= 0:  # NaN too
        raise ImproperlyConfigured(f"{name} must be 0 or more, not {raw!r}.")
    return value


_Number = TypeVar("_Number", int, float)


def _checked_positive(name: str, value: _Number, raw: str) -> _Number:
    if not value > 0:
        raise ImproperlyConfigured(f"{name} must be more than 0, not {raw!r}.")
    return value


def env_bool(name: str, default: bool) -> bool:
    raw = env(name).lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {raw!r}.")


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env(name, default).split(",") if item.strip()]


# Each setting below is checked as the process starts, naming itself: read where it is
# used, a bad value passed every check and then failed every image, or every upload.


def env_ports(name: str) -> list[int]:
    ports = env_list(name)
    bad = [port for port in ports if not port.isdigit() or not 0 < int(port) < 65536]
    if bad:
        raise ImproperlyConfigured(f"{name} must be port numbers (1-65535), not {bad[0]!r}.")
    return [int(port) for port in ports]


def env_networks(name: str) -> list[str]:
    networks = env_list(name)
    try:
        parse_networks(networks)
    except ValueError as error:
        raise ImproperlyConfigured(f"{name}: {error}") from None
    return networks


def env_proxies(name: str, default: str = "") -> list[str]:
    """Addresses and networks of proxies, or "*" for any, as gunicorn reads them (a network
    with host bits set, 10.0.0.1/24, refused): gunicorn stopped on such a value naming no
    variable ("Error: 'proxy.local' does not appear to be an IPv4 or IPv6 network")."""
    proxies = env_list(name, default)
    for proxy in proxies:
        if proxy == "*":
            continue
        try:
            ipaddress.ip_network(proxy)
        except ValueError as error:
            raise ImproperlyConfigured(
                f"{name} must be addresses or networks (10.0.0.2, 10.0.0.0/24) or *, "
                f"not {proxy!r}: {error}."
            ) from None
    return proxies


def env_origins(name: str) -> list[str]:
    """Origins as a browser sends them, a scheme and a host (a port, a "*." for any
    subdomain), nothing after: one without its scheme (images.example.com), or with a path,
    was taken, and every POST of the page from it refused as forged; only `manage.py
    check` said so (Django's 4_0.E001, for the scheme), which no web host runs."""
    origins = env_list(name)
    for origin in origins:
        if not re.fullmatch(r"https?://[^/?#\s@]+", origin):
            raise ImproperlyConfigured(
                f"{name} must be origins, a scheme and a host (https://images.example.com), "
                f"not {origin!r}."
            )
    return origins


def env_seconds(name: str, default: str) -> list[float]:
    try:
        seconds = [float(item) for item in env_list(name, default)]
    except ValueError:
        seconds = None
    if seconds is None or any(not second >= 0 for second in seconds):  # NaN too
        raise ImproperlyConfigured(f"{name} must be numbers of seconds, not {env(name)!r}.")
    return seconds


def env_rate(name: str, default: str) -> str:
    """A rate as Django REST framework's throttles read it ("60/minute"), or "" for none."""
    rate = env(name, default)
    if rate and not RATE_PATTERN.fullmatch(rate):
        raise ImproperlyConfigured(
            f"{name} must be a number per second, minute, hour or day (60/minute), not {rate!r}."
        )
    return rate


def env_choice(name: str, default: str, choices: list[str]) -> str:
    """One of choices, whatever its case, spelt as choices spell it."""
    value = env(name, default)
    for choice in choices:
        if value.upper() == choice.upper():
            return choice
    raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, not {value!r}.")


def env_base_url(name: str) -> str:
    """An absolute http(s) URL without its trailing slash, or "" when unset: without a
    scheme every link the service wrote was relative to nothing ("images.example.com/api/
    status/…"), and each request's row kept it."""
    return env_url(name, example="https://images.example.com").rstrip("/")


def env_url(name: str, *, example: str) -> str:
    """An absolute http(s) URL, or "" when unset: one without a scheme or a host was
    taken, and failed only where it was used (every webhook, every stored output)."""
    url = env(name)
    if url and not re.fullmatch(r"https?://[^/?#\s]+([/?#]\S*)?", url):
        raise ImproperlyConfigured(
            f"{name} must be an absolute http(s) URL ({example}), "
            f"not {redacted(url.rstrip('/'))!r}."
        )
    return url


SERVICE_URL = re.compile(r"[a-z][a-z0-9+.-]*://\S*", re.IGNORECASE)


def env_service_url(name: str, default: str, *, example: str, failover: bool = False) -> str:
    """A URL of a database or broker, scheme://…: one with its colon missing ("redis//h")
    was taken for a host name and retried a hundred times, naming no setting."""
    url = env(name, default)
    if not SERVICE_URL.fullmatch(url):
        raise ImproperlyConfigured(f"{name} must be a URL ({example}), not {redacted(url)!r}.")
    # kombu's failover list, url;url; a database URL's ";" is its own (a password's, say)
    for one in url.split(";") if failover else [url]:
        try:
            urlsplit(one).port  # noqa: B018 (it is the check)
        except ValueError:
            # Taken, and the worker stopped on a bare ValueError naming no setting.
            raise ImproperlyConfigured(
                f"{name} has a port that is not a number from 0 to 65535: {redacted(url)!r}."
            ) from None
    return url


def redacted(url: str) -> str:
    """url without the password it may hold (user:password@host), however malformed: one
    without its "//" (postgres:hunter2@db/x) was quoted whole, password and all. Whatever
    lies between the user's colon and the last "@" goes; a password may hold "@" or "/"."""
    at = url.rfind("@")
    if at < 0:
        return url
    user = url.find("//", 0, at) + 2 if "//" in url[:at] else 0
    colon = url.find(":", user, at)
    if colon < 0:
        return url  # a user, no password
    return f"{url[: colon + 1]}***{url[at:]}"
