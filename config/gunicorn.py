"""gunicorn's settings, read from the environment like the rest (README's table)."""

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Any

from config.env import env, env_float, env_int
from config.logs import log_format, logging_config

# A port or count that is not one stops the start naming its variable, as settings do.
bind = f"{env('HOST', '0.0.0.0')}:{env_int('PORT', 8000, positive=True)}"  # noqa: S104
# gunicorn's own advice: two workers per core, plus one.
workers = env_int("WEB_CONCURRENCY", (os.cpu_count() or 1) * 2 + 1, positive=True)
# Threads per worker for requests whose headers have all arrived (config/web_worker.py
# gathers headers without one, so slow clients hold none).
worker_class = "config.web_worker.HeadersFirstWorker"
threads = env_int("WEB_THREADS", 4, positive=True)
timeout = env_int("WEB_TIMEOUT", 60, positive=True)
# Read by each web worker as it starts (config/web_worker.py); checked here too, so that a
# bad value stops the start rather than every worker's boot.
env_float("WEB_HEADER_TIMEOUT", 10, positive=True)
env_float("WEB_BODY_TIMEOUT", 30, positive=True)
# gunicornc's socket (worker counts, reload, shutdown), in the deployment's own folder
# (settings.VAR_DIR): gunicorn's default, ~/.gunicorn/gunicorn.ctl, is one path for every
# gunicorn of the user, so a second service on the host took it over, and `gunicornc -c
# "worker remove 2"` or a shutdown meant for one reached the other. A path longer than a
# Unix socket's 107 bytes only costs the socket (gunicorn warns and serves on).
control_socket = str(
    Path(env("VAR_DIR", str(Path(__file__).resolve().parent.parent / "var"))) / "gunicorn.ctl"
)
# Requests are logged by Django (config.logs.AccessLogMiddleware), with the request id.
accesslog = None
if log_format() == "json":
    # gunicorn's own lines (start, worker boots, timeouts) as JSON too, through the same
    # configuration as Django's; gunicorn does not let gunicorn.error propagate.
    logconfig_dict = logging_config(level="INFO", fmt="json")
    logconfig_dict["loggers"]["gunicorn.error"] = {
        "level": "INFO",
        "handlers": ["console"],
        "propagate": False,
    }


def post_worker_init(worker: object) -> None:
    """Import every view as each worker starts, not during its first requests: Django
    loads its URL patterns lazily, and that cost each new worker about 100 ms of CPU
    (bench/run.py's CPU line showed gunicorn at 14% of a short run, 6% of a long one)."""
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018  (the property imports the views)


# The lock that says a master serves with the control socket: held (by its open file) from
# on_starting for as long as the master lives, and let go by the kernel however it ends.
_control_socket_held: list[int] = []


def on_starting(server: Any) -> None:
    """Stop a second gunicorn whose control socket is another's running one, before it
    binds its port: it took the socket over (gunicorn removes what is at the path), and
    removed it as it stopped, even one that failed to boot (its port in use, a worker that
    would not start), leaving the running server without one (`gunicornc`: "No such file").
    A master re-executed by USR2 to upgrade (GUNICORN_PID set) takes it over, as meant."""
    cfg = server.cfg
    if cfg.control_socket_disable or "GUNICORN_PID" in os.environ:
        return
    socket_path = Path(os.getcwd(), cfg.control_socket)
    socket_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    lock_path = socket_path.with_name(socket_path.name + ".lock")
    descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(descriptor, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(descriptor)
        raise RuntimeError(
            f"another gunicorn (master pid {holder}) is running with the control socket "
            f"{socket_path}; this one stops, and leaves it be. Give this one a VAR_DIR of "
            f"its own (or --control-socket), or stop the other first."
        ) from None
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
    _control_socket_held.append(descriptor)


def on_exit(server: Any) -> None:
    for descriptor in _control_socket_held:
        with contextlib.suppress(OSError):
            os.close(descriptor)
    _control_socket_held.clear()
