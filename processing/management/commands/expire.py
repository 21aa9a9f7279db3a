from typing import Any

from django.core.management.base import BaseCommand

from processing.expiry import requests_expire


class Command(BaseCommand):
    help = "Delete the results of requests finished more than RETENTION_DAYS ago (as beat does)."

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(f"{requests_expire()} request(s) expired.")
