from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from processing import queue, selectors, webhooks
from processing.exceptions import WebhookPending


class Command(BaseCommand):
    help = "Deliver a finished request's webhook event again (same webhook-id)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("request_id")

    def handle(self, *args: Any, **options: Any) -> None:
        request = selectors.request_get_any(request_id=options["request_id"])
        if request is None:
            raise CommandError("Request not found.")
        try:
            with queue.queue_refusals_watched() as refused:
                delivery = webhooks.webhook_resend(request=request)
        except webhooks.RequestRunning:
            raise CommandError(
                "The request has not finished; its webhook is sent when it does."
            ) from None
        except WebhookPending as pending:
            raise CommandError(f"{pending.message} Details: {pending.details}") from None
        except webhooks.ResultsGone:
            request.refresh_from_db(fields=["deleted_by_owner"])
            why = "was deleted by its account" if request.deleted_by_owner else "has expired"
            raise CommandError(
                f"The request {why}: its results are deleted, and its webhook would name them."
            ) from None
        if delivery is None:
            raise CommandError("The request has no webhook URL, and WEBHOOK_URL is not set.")
        if refused:
            # It said "Queued" while nothing was: its send is due, and the sweep sends it.
            self.stdout.write(
                f"Not queued: the broker is unavailable ({refused[0]}). {delivery.event_id} "
                f"to {delivery.url} is due now: the sweep queues it within "
                f"{settings.SWEEP_INTERVAL:g} s of the broker answering again."
            )
            return
        self.stdout.write(f"Queued {delivery.event_id} to {delivery.url}")
