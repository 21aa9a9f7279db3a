"""`python manage.py login-link USERNAME`: a link that logs the user in to the page once,
within 15 minutes (the URL alone on the last line of standard output)."""

from typing import Any

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
        try:
            user = services.user_get(username=options["username"])
        except services.AccountError as error:
            raise CommandError(str(error)) from None
        token = services.login_link_create(user=user)
        self.stdout.write("Valid once, for 15 minutes:")
        self.stdout.write(login_link_url(token, base_url=options["base_url"]))
