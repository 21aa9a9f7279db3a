"""`python manage.py login-link USERNAME`: a link that logs the user in to the page once,
within 15 minutes (the URL alone on the last line of standard output)."""

from typing import Any
from urllib.parse import urlsplit

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts import services
from accounts.links import login_link_url


class Command(BaseCommand):
    help = "Print a one-time login link for a user of the web page."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--base-url", help="the service's address (default: PUBLIC_BASE_URL, else local)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        base_url = options["base_url"]
        if base_url is not None and not _absolute_http(base_url):
            # It was taken: "notaurl/login/link/…", a link that opened nothing.
            raise CommandError(
                "--base-url must be the service's absolute http(s) address "
                f"(https://images.example.com), not {base_url!r}."
            )
        try:
            user = services.user_get(username=options["username"])
            token = services.login_link_create(user=user)
        except services.AccountError as error:
            raise CommandError(str(error)) from None
        self.stdout.write("Valid once, for 15 minutes:")
        self.stdout.write(login_link_url(token, base_url=base_url))


def _absolute_http(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in {"http", "https"} and bool(parts.hostname) and " " not in url
