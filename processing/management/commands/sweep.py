from typing import Any

from django.core.management.base import BaseCommand

from processing.sweep import sweep_run


class Command(BaseCommand):
    help = "Queue again work the queue lost (what Celery beat runs every SWEEP_INTERVAL)."

    def handle(self, *args: Any, **options: Any) -> None:
        report = sweep_run()
        self.stdout.write(str(report))
