from typing import Any

from django.core.management.base import BaseCommand

from processing.sweep import SweepReport, sweep_run


class Command(BaseCommand):
    help = "Queue again work the queue lost (what Celery beat runs every SWEEP_INTERVAL)."

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(sweep_words(sweep_run()))


def sweep_words(report: SweepReport) -> str:
    """The report as an operator reads it (it was printed as the raw SweepReport(...))."""
    if report.skipped_for:
        return f"Sweep: skipped, another sweep is under way ({report.skipped_for})."
    done = [
        _count(report.requests_restarted, "request", "requests", "started again"),
        _count(report.images_requeued, "lost image", "lost images", "queued again"),
        _count(report.images_given_up, "image", "images", "failed, past IMAGE_MAX_ATTEMPTS"),
        _count(report.images_queued, "waiting image", "waiting images", "queued"),
        _count(report.requests_finalised, "request", "requests", "finished"),
        _count(report.webhooks_requeued, "webhook delivery", "webhook deliveries", "queued again"),
    ]
    said = [words for words in done if words]
    return f"Sweep: {'; '.join(said)}." if said else "Sweep: nothing was overdue."


def _count(count: int, one: str, many: str, what: str) -> str:
    return f"{count} {one if count == 1 else many} {what}" if count else ""
