"""gunicorn's settings, read from the environment like the rest (README's table)."""

import os

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"  # noqa: S104
# gunicorn's own advice: two workers per core, plus one.
workers = int(os.environ.get("WEB_CONCURRENCY") or (os.cpu_count() or 1) * 2 + 1)
timeout = int(os.environ.get("WEB_TIMEOUT", "60"))
accesslog = "-"
