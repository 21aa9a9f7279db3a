"""`python manage.py apikey create|list|revoke`: API keys, for scripts (the new key alone on
the last line of standard output)."""

import argparse
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from accounts import services
from accounts.models import ApiKey


class Command(BaseCommand):
    help = "Make, list and revoke API keys."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        create = actions.add_parser("create", help="a new key (the account is made if new)")
        create.add_argument("--account", required=True, help="the account's name")
        create.add_argument("--label", default="", help="what the key is for")
        create.add_argument(
            "--expires-in-days",
            type=_days,
            metavar="N",
            help="refused N days from now (default: never)",
        )
        listing = actions.add_parser("list", help="keys, newest first")
        listing.add_argument("--account", help="only this account's")
        revoke = actions.add_parser("revoke", help="revoke a key for good")
        revoke.add_argument("prefix", help="the key's prefix (its first 8 characters)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            getattr(self, f"_{options['action']}")(options)
        except services.AccountError as error:
            raise CommandError(str(error)) from None

    def _create(self, options: dict[str, Any]) -> None:
        account, made = services.account_get_or_create(name=options["account"])
        days = options["expires_in_days"]
        api_key, key = services.api_key_create(
            account=account,
            label=options["label"],
            expires_at=timezone.now() + timedelta(days=days) if days else None,
        )
        if made:
            self.stdout.write(f"Account {account.name} made.")
        until = f", until {api_key.expiry_date:%Y-%m-%d %H:%M} UTC" if api_key.expiry_date else ""
        self.stdout.write(
            f"API key {api_key.prefix} for account {account.name}{until}; shown once, keep it safe:"
        )
        self.stdout.write(key)

    def _list(self, options: dict[str, Any]) -> None:
        keys = ApiKey.objects.select_related("account").order_by("account__name", "-created")
        if options["account"]:  # a misspelt name is said, as `account secret` says it
            keys = keys.filter(account=services.account_get(name=options["account"]))
        self.stdout.write(
            f"{'prefix':<10}{'account':<20}{'label':<24}{'made':<18}{'last used':<18}"
        )
        for key in keys:
            last = key.last_used_at.strftime("%Y-%m-%d %H:%M") if key.last_used_at else "never"
            state = " revoked" if key.revoked else " expired" if key.has_expired else ""
            self.stdout.write(
                f"{key.prefix:<10}{key.account.name:<20}{key.name:<24}"
                f"{key.created:%Y-%m-%d %H:%M}  {last:<18}{state}".rstrip()
            )

    def _revoke(self, options: dict[str, Any]) -> None:
        api_key = services.api_key_revoke(prefix=options["prefix"])
        self.stdout.write(f"API key {api_key.prefix} of account {api_key.account.name} revoked.")


def _days(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"a whole number of days, 1 or more, not {value!r}")
    return int(value)
