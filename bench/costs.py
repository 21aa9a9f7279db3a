"""`make costs`: what PostgreSQL and the broker see per image, for the capacity guide.

Runs one request of 500 products x 3 images (a tenth of the URLs repeated, as in
`make bench`) through the real services and tasks in this process, with Celery in eager
mode so that every task runs here, and counts the SQL statements each kind of work sends
and the tasks (one broker message each) it queues. Needs PostgreSQL: DATABASE_URL
(default postgres://postgres@127.0.0.1:5432/postgres) names the server a scratch database
is made on.
"""

import os
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
os.environ.setdefault("SECRET_KEY", "costs-only-not-secret")
# postgres_database() asks for both; nothing is sent to this broker (tasks run eagerly).
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/9")

from tests.harness.origin import origin_serve  # noqa: E402
from tests.harness.service import postgres_database  # noqa: E402
from tests.support import encoded, photo  # noqa: E402

PRODUCTS = 500
PER_PRODUCT = 3


def main() -> None:
    origin, server = origin_serve()
    body = encoded(photo(64, 64), "JPEG", quality=90)
    total = PRODUCTS * PER_PRODUCT
    distinct = total - total // 10
    urls = [origin.add(f"/costs/{n}.jpg", body) for n in range(distinct)]
    urls += urls[: total - distinct]
    rows = [
        f'{p + 1},Product {p + 1},"{",".join(urls[p * PER_PRODUCT : (p + 1) * PER_PRODUCT])}"'
        for p in range(PRODUCTS)
    ]
    csv_data = ("S. No.,Product Name,Input Image Urls\n" + "\n".join(rows) + "\n").encode()

    with postgres_database() as database_url, tempfile.TemporaryDirectory() as scratch:
        os.environ.update(
            DATABASE_URL=database_url,
            CELERY_BROKER_URL="memory://",
            VAR_DIR=scratch,
            STORAGE_DIR=f"{scratch}/storage",
            IMAGE_FETCH_ALLOW_NETWORKS="127.0.0.1/32",
            IMAGE_FETCH_ALLOW_PORTS=str(origin.port),
            UPLOAD_RATE_LIMIT="",
            LOG_LEVEL="WARNING",
        )
        costs = measure(csv_data)
        from django.db import connections

        connections.close_all()
    server.shutdown()

    print(f"{total} images ({distinct} distinct URLs), {PRODUCTS} products")
    print(f"{'work':<28}{'runs':>6}{'SQL statements':>16}{'per image':>11}")
    for name, (runs, statements) in sorted(costs.items()):
        print(f"{name:<28}{runs:>6}{statements:>16}{statements / total:>11.2f}")
    runs = sum(r for r, _ in costs.values() if r)
    statements = sum(s for _, s in costs.values())
    print(f"{'all':<28}{runs:>6}{statements:>16}{statements / total:>11.2f}")
    print(f"broker messages (tasks queued) per image: {runs / total:.3f}")


def measure(csv_data: bytes) -> dict[str, tuple[int, int]]:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    from celery import signals
    from django.core.management import call_command
    from django.db import connection

    from accounts.services import account_get_or_create
    from config.celery import app
    from processing import intake
    from processing import tasks as _registered  # noqa: F401  (eager runs need the tasks)

    call_command("migrate", verbosity=0)
    account, _ = account_get_or_create(name="costs")
    app.conf.task_always_eager = True
    statements: Counter[str] = Counter()
    runs: Counter[str] = Counter()
    current = ["upload"]

    def count(execute: Callable[..., Any], sql: str, *args: Any) -> Any:
        statements[current[-1]] += 1
        return execute(sql, *args)

    def started(task: Any = None, **_: Any) -> None:
        runs[task.name] += 1
        current.append(task.name)

    def ended(**_: Any) -> None:
        current.pop()

    signals.task_prerun.connect(started, weak=False)
    signals.task_postrun.connect(ended, weak=False)
    with connection.execute_wrapper(count):
        intake.request_create(
            account=account, csv_data=csv_data, public_base_url="http://127.0.0.1:8000"
        )
    return {name: (runs[name], statements[name]) for name in statements | runs}


if __name__ == "__main__":
    main()
