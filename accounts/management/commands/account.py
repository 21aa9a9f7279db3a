"""`python manage.py account create|list|secret|rotate-secret`: accounts and the secrets
that sign their webhooks (the secret alone on the last line of standard output)."""

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from accounts import services
from accounts.models import Account


class Command(BaseCommand):
    help = "Make and list accounts; show or rotate an account's webhook signing secret."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        actions.add_parser("create", help="a new account").add_argument("name")
        actions.add_parser("list", help="every account")
        actions.add_parser("secret", help="the current webhook secret").add_argument("name")
        rotate = actions.add_parser(
            "rotate-secret",
            help="a new webhook secret; the old one still signs for WEBHOOK_SECRET_OVERLAP",
        )
        rotate.add_argument("name")
        rotate.add_argument(
            "--force",
            action="store_true",
            help="rotate even while the previous secret still signs (ending it at once)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            self._run(options["action"], options.get("name", ""), force=options.get("force", False))
        except services.AccountError as error:
            raise CommandError(str(error)) from None

    def _run(self, action: str, name: str, *, force: bool) -> None:
        if action == "create":
            account, made = services.account_get_or_create(name=name)
            self.stdout.write(f"Account {account.name} {'made' if made else 'already exists'}.")
        elif action == "list":
            for account in Account.objects.order_by("name"):
                self.stdout.write(account.name)
        elif action == "secret":
            self.stdout.write(services.account_get(name=name).webhook_secret)
        else:
            secret = self._secret_rotate(services.account_get(name=name), force=force)
            hours = settings.WEBHOOK_SECRET_OVERLAP / 3600
            self.stdout.write(
                f"New webhook secret for {name}; events carry signatures with both secrets "
                f"for {hours:g} hours, then with this one alone:"
            )
            self.stdout.write(secret)

    def _secret_rotate(self, account: Account, *, force: bool) -> str:
        """Refused while the previous secret still signs, as the account page warns: a
        second rotation then ends, at once, the secret receivers still hold (the first
        rotation's, never given to them, became the previous one)."""
        expires = account.previous_secret_until(timezone.now())
        if expires is not None and not force:
            raise CommandError(
                f"The secret of {account.name} was rotated already: its previous secret signs "
                f"too until {expires:%Y-%m-%d %H:%M:%S} UTC, and receivers may still hold it. "
                "Rotating now would end it at once. Wait until then, or give --force."
            )
        # The page's rule too: refused if another rotation came between the look and this.
        return services.account_secret_rotate(
            account=account, replacing=services.secret_fingerprint(account.webhook_secret)
        )
