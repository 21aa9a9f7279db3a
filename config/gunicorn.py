"""gunicorn's settings, read from the environment like the rest (README's table)."""

import contextlib
import fcntl
import os
import socket
from pathlib import Path
from typing import Any

from config.env import env, env_choice, env_float, env_int
from config.logs import LOG_LEVELS, log_format, logging_config

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
# gunicorn's own lines (start, worker boots, timeouts) at LOG_LEVEL as Django's are: they
# were at INFO whatever it said, "Listening at" and each "Booting worker" under WARNING.
_log_level = env_choice("LOG_LEVEL", "INFO", LOG_LEVELS)
loglevel = _log_level.lower()
if log_format() == "json":
    # As JSON too, through the same configuration as Django's; gunicorn does not let
    # gunicorn.error propagate.
    logconfig_dict = logging_config(level=_log_level, fmt="json")
    logconfig_dict["loggers"]["gunicorn.error"] = {
        "level": _log_level,
        "handlers": ["console"],
        "propagate": False,
    }


def post_worker_init(worker: Any) -> None:
    """Import every view as each worker starts, not during its first requests: Django
    loads its URL patterns lazily, and that cost each new worker about 100 ms of CPU
    (bench/run.py's CPU line showed gunicorn at 14% of a short run, 6% of a long one).
    The first worker a master starts says which variables look like misspelt settings
    (config/checks.py), once for the server rather than once a worker."""
    from django.urls import get_resolver

    from config.checks import unread_variables_logged

    if worker.age == 1:  # first: a view that fails to import stops the server next
        unread_variables_logged()
    get_resolver().url_patterns  # noqa: B018  (the property imports the views)


# The lock that says a master serves with the control socket: held (by its open file) from
# on_starting for as long as the master lives, and let go by the kernel however it ends. The
# file is left open across exec, so that a master re-executed by USR2 holds the same lock:
# with it closed there, nobody held it once the old master stopped, and a second gunicorn
# (or `make run`) on the folder started.
_control_socket_held: list[int] = []


def on_starting(server: Any) -> None:
    """Stop a second gunicorn whose control socket is another's running one, before it
    binds its port: it took the socket over (gunicorn removes what is at the path), and
    removed it as it stopped, even one that failed to boot (its port in use, a worker that
    would not start), leaving the running server without one (`gunicornc`: "No such file").
    A master re-executed by USR2 to upgrade (GUNICORN_PID set) takes it over, as meant,
    holding the lock it inherited."""
    cfg = server.cfg
    if cfg.control_socket_disable:
        return
    socket_path = Path(os.getcwd(), cfg.control_socket)
    lock_path = socket_path.with_name(socket_path.name + ".lock")
    try:
        socket_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as error:
        # The control server fails on such a folder too, and gunicorn serves on without
        # it ("Control server error"); so does this check, saying so.
        _unchecked(
            server, socket_path, f"its lock {lock_path} cannot be opened "
            f"({error.strerror or error}); a second one started on it would take the socket over",
        )  # fmt: skip
        return
    inherited = _inherited_lock(descriptor) if "GUNICORN_PID" in os.environ else None
    if inherited is not None:
        os.close(descriptor)
        descriptor = inherited
    else:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(descriptor)
            if "GUNICORN_PID" in os.environ:
                # The old master's lock was not left open to this one (it ran before
                # locks were): this one serves on, unchecked once the old one stops.
                _unchecked(
                    server, socket_path, f"the master this one upgrades (pid {holder}) "
                    f"holds its lock {lock_path} and did not pass it on",
                )  # fmt: skip
                return
            raise RuntimeError(
                f"another gunicorn (master pid {holder}) is running with the control socket "
                f"{socket_path}; this one stops, and leaves it be. Give this one a VAR_DIR of "
                f"its own (or --control-socket), or stop the other first."
            ) from None
        except OSError as error:
            os.close(descriptor)
            _unchecked(
                server, socket_path,
                f"its lock {lock_path} cannot be taken ({error.strerror or error})",
            )  # fmt: skip
            return
        if "GUNICORN_PID" not in os.environ and _answering(socket_path):
            # A master of a release from before the lock serves on it, holding none: an
            # upgrade's new web started beside the old took its socket, and removed it.
            os.close(descriptor)
            raise RuntimeError(
                f"another gunicorn is running with the control socket {socket_path} (one "
                f"that takes no lock: a release before this check); this one stops, and "
                f"leaves it be. Give this one a VAR_DIR of its own (or --control-socket), "
                f"or stop the other first."
            )
    os.set_inheritable(descriptor, True)
    with contextlib.suppress(OSError):  # the pid only names the holder in messages
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
    _control_socket_held.append(descriptor)


def _inherited_lock(opened: int) -> int | None:
    """The descriptor of the lock file this master inherited from the one it upgrades
    (the same file as opened, open before it), if any."""
    lock = os.fstat(opened)
    try:
        descriptors = sorted(int(name) for name in os.listdir("/dev/fd"))
    except OSError:
        return None
    for descriptor in descriptors:
        if descriptor == opened:
            continue
        try:
            found = os.fstat(descriptor)
        except OSError:  # the listing's own, closed by now
            continue
        if (found.st_dev, found.st_ino) == (lock.st_dev, lock.st_ino):
            return descriptor
    return None


def _answering(socket_path: Path) -> bool:
    """Whether a server accepts connections on the Unix socket at socket_path (a file
    left by a master that ended does not)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(socket_path))
        except OSError:
            return False
    return True


def _unchecked(server: Any, socket_path: Path, why: str) -> None:
    """Say that this master serves without the check for a second one, and why."""
    server.log.warning(
        "No check for a second gunicorn on the control socket %s: %s.", socket_path, why
    )


def on_exit(server: Any) -> None:
    for descriptor in _control_socket_held:
        with contextlib.suppress(OSError):
            os.close(descriptor)
    _control_socket_held.clear()
