"""The web server's start (the Procfile's `web`): gunicorn with the arguments given, once
what gunicorn reads from the environment itself is checked as settings check it.

gunicorn reads FORWARDED_ALLOW_IPS as it is imported and refuses a value that is not an
address or a network before it reads config/gunicorn.py, so nothing there can name it:
FORWARDED_ALLOW_IPS=proxy.local stopped the web with "Error: 'proxy.local' does not
appear to be an IPv4 or IPv6 network" alone, where the workers named the variable."""

import os
import sys

from django.core.exceptions import ImproperlyConfigured

from config.env import env_proxies


def main() -> None:
    try:
        env_proxies("FORWARDED_ALLOW_IPS")
    except ImproperlyConfigured as error:
        sys.exit(f"ImproperlyConfigured: {error}")  # an operator's mistake: no frames, as manage.py
    # gunicorn in this process's place: the same pid for the process manager's signals, and
    # a master that re-executes itself (USR2) as gunicorn, not as this module.
    os.execvp("gunicorn", ["gunicorn", *sys.argv[1:]])  # noqa: S606 (the Procfile's own)


if __name__ == "__main__":
    main()
