"""`python manage.py account create|list|secret|rotate-secret`: accounts and the secrets
that sign their webhooks (the secret alone on the last line of standard output)."""

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts import services
from accounts.models import Account


class Command(BaseCommand):
    help = "Make and list accounts; show or rotate an account's webhook signing secret."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        actions.add_parser("create", help="a new account").add_argument("name")
        actions.add_parser("list", help="every account")
        actions.add_parser("secret", help="the current webhook secret").add_argument("name")
        actions.add_parser(
            "rotate-secret",
            help="a new webhook secret; the old one still signs for WEBHOOK_SECRET_OVERLAP",
        ).add_argument("name")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            self._run(options["action"], options.get("name", ""))
        except services.AccountError as error:
            raise CommandError(str(error)) from None

    def _run(self, action: str, name: str) -> None:
        if action == "create":
            account, made = services.account_get_or_create(name=name)
            self.stdout.write(f"Account {account.name} {'made' if made else 'already exists'}.")
        elif action == "list":
            for account in Account.objects.order_by("name"):
                self.stdout.write(account.name)
        elif action == "secret":
            self.stdout.write(services.account_get(name=name).webhook_secret)
        else:
            secret = services.account_secret_rotate(account=services.account_get(name=name))
            hours = settings.WEBHOOK_SECRET_OVERLAP / 3600
            self.stdout.write(
                f"New webhook secret for {name}; events carry signatures with both secrets "
                f"for {hours:g} hours, then with this one alone:"
            )
            self.stdout.write(secret)
