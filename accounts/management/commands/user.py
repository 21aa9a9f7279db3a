"""`python manage.py user create --account NAME --username U [--password P]`: a person who
logs in to the page for one account. Without --password, it asks for one at the terminal,
or reads one line of standard input where there is none (`... < secret-file`: kept out of
`ps` and the shell's history); with --no-password, the user logs in by one-time links
only.

`python manage.py user join --account NAME --username U`: an existing user of no account
(made in the admin, or by createsuperuser) acts for this one from now on."""

import getpass
import sys
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts import services


class Command(BaseCommand):
    help = "Make a user of an account, for the web page, or put an existing user into one."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        create = actions.add_parser("create", help="a new user (the account is made if new)")
        create.add_argument("--account", required=True)
        create.add_argument("--username", required=True)
        passwords = create.add_mutually_exclusive_group()
        passwords.add_argument("--password", help="else asked for")
        passwords.add_argument(
            "--no-password", action="store_true", help="log in by one-time links only"
        )
        join = actions.add_parser("join", help="an existing user of no account into this one")
        join.add_argument("--account", required=True, help="an account that exists")
        join.add_argument("--username", required=True)

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "join":
            self._join(options)
        else:
            self._create(options)

    def _join(self, options: dict[str, Any]) -> None:
        try:
            account = services.account_get(name=options["account"])
            user, joined = services.user_join(account=account, username=options["username"])
        except services.AccountError as error:
            raise CommandError(str(error)) from None
        name = user.get_username()
        self.stdout.write(
            f"User {name} joined account {account.name}."
            if joined
            else f"User {name} is in account {account.name} already."
        )

    def _create(self, options: dict[str, Any]) -> None:
        password = None if options["no_password"] else options["password"] or self._ask()
        if password is not None:
            # Checked against the user to be (unsaved): without one, Django's check of a
            # password against the user name never ran ("margaretsmith1" for margaretsmith).
            user_to_be = get_user_model()(username=options["username"])
            try:
                validate_password(password, user=user_to_be)
            except ValidationError as invalid:
                raise CommandError(" ".join(invalid.messages)) from None
        try:
            account, made = services.account_get_or_create(name=options["account"])
            user = services.user_create(
                account=account, username=options["username"], password=password
            )
        except services.AccountError as error:
            raise CommandError(str(error)) from None
        # Said as `apikey create` says it: a misspelt name makes a user of an empty account.
        if made:
            self.stdout.write(f"Account {account.name} made.")
        self.stdout.write(f"User {user.get_username()} of account {account.name} made.")

    def _ask(self) -> str:
        if not sys.stdin.isatty():  # a job, a pipe, `docker compose exec -T`
            password = sys.stdin.readline().rstrip("\r\n")
            if not password:
                raise CommandError(
                    "No password: there is no terminal to ask at and standard input is "
                    "empty. Give one line on standard input, --password, or --no-password."
                )
            return password
        password = getpass.getpass("Password: ")
        if password != getpass.getpass("Password (again): "):
            raise CommandError("The passwords differ.")
        return password
