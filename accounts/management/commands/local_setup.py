"""`python manage.py local_setup`: what `make run` runs before it starts the service. On the
first start it makes the account, user and API key `local` and writes the key to
var/api_key (mode 0600); every start prints a fresh one-time login link for the page."""

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from accounts import services
from accounts.links import login_link_url


class Command(BaseCommand):
    help = "Make the embedded default's account, user and key; print a login link."

    def handle(self, *args: Any, **options: Any) -> None:
        key, token = services.local_setup(var_dir=settings.VAR_DIR)
        key_file = settings.VAR_DIR / "api_key"
        if key is not None:
            self.stdout.write(f"API key of account 'local' (also in {key_file}):")
            self.stdout.write(f"    {key}")
        else:
            self.stdout.write(f"API key of account 'local': in {key_file}")
        if token is None:  # the service starts all the same: the API key works
            self.stdout.write(
                f"User {services.LOCAL_ACCOUNT} is deactivated: no login link (make it active "
                "again in the admin to log in with one)."
            )
            return
        self.stdout.write("Log in to the page with this link (valid once, for 15 minutes):")
        self.stdout.write(f"    {login_link_url(token, base_url=None)}")
