import re
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from processing import control
from processing.models import is_reason_code
from processing.policies import QuotaExceeded

_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def duration(text: str) -> timedelta:
    found = re.fullmatch(r"([0-9]+)([mhd])", text)
    if found is None:
        raise ValueError(text)
    return timedelta(**{_UNITS[found.group(2)]: int(found.group(1))})


class Command(BaseCommand):
    help = (
        "Retry the failed images of every account's requests that failed for a reason now "
        "mended (a full storage freed), as POST /api/requests/<id>/retry/ does for one."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--code",
            action="append",
            required=True,
            help="an image's error_code (storage_full, http_503, ...); may be given again",
        )
        parser.add_argument(
            "--since",
            type=duration,
            default="24h",
            help="requests finished within this long: 90m, 6h, 2d (default 24h)",
        )
        parser.add_argument(
            "--failed-requests",
            action="store_true",
            help="also the requests that failed as a whole (their results not written)",
        )
        parser.add_argument("--dry-run", action="store_true", help="list them, retry none")

    def handle(self, *args: Any, **options: Any) -> None:
        codes: list[str] = options["code"]
        unknown = [code for code in codes if not is_reason_code(code)]
        if unknown:
            raise CommandError(f"Not a reason code: {', '.join(unknown)}.")
        found = control.requests_failed_since(
            codes=codes,
            since=timezone.now() - options["since"],
            whole=options["failed_requests"],
        )
        retried, refused = 0, 0
        for request in found:
            named = f"{request.pk} (account {request.account.name})"
            if options["dry_run"]:
                self.stdout.write(f"Would retry {named}")
                continue
            try:
                control.request_retry(request=request)
            except (control.NotFinished, control.NothingToRetry, control.Expired):
                continue  # retried, deleted or retrying meanwhile
            except QuotaExceeded as over:
                refused += 1
                self.stdout.write(f"Not retried {named}: over the account's quota ({over})")
                continue
            retried += 1
            self.stdout.write(f"Retried {named}")
        if not options["dry_run"]:
            self.stdout.write(f"{retried} request(s) retried.")
        if refused:
            raise CommandError(
                f"{refused} request(s) not retried: their accounts have too many images "
                "waiting. Run it again once some have finished."
            )
