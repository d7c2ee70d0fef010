"""Options people bring from gunicorn and uvicorn. Each is answered with the
option that does the job here (or why there is none), as one line and exit 2,
instead of click's "No such option" with an unrelated guess. None is shown in
``--help``. A name that becomes a real setting later is skipped here, so the
setting wins without editing this table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from supervisor.settings.config import settings

# flag(s), takes a value, the answer
HABITS: list[tuple[tuple[str, ...], bool, str]] = [
    (("--host",), True, "--host is uvicorn's; here the address and port go together: -b HOST:PORT"),
    (("--port",), True, "--port is uvicorn's; here the address and port go together: -b HOST:PORT"),
    (("--uds",), True, "--uds is uvicorn's; here: -b unix:PATH"),
    (("--fd",), True, "--fd is uvicorn's; here: -b fd://N"),
    (
        ("-k", "--worker-class"),
        True,
        "there are no worker classes: the kind of app is detected (or --interface asgi|wsgi|main); "
        "WSGI apps get --threads N request threads per worker, ASGI apps an event loop",
    ),
    (
        ("--worker-connections",),
        True,
        "gunicorn's --worker-connections is --limit-concurrency N here (503 past N connections "
        "per worker); WSGI concurrency is --threads",
    ),
    (
        ("-D", "--daemon"),
        False,
        "no --daemon: run under systemd (or another supervisor) in the "
        "foreground; see docs/deploy/systemd.md (Type=notify, `supervise reload`)",
    ),
    (("--pidfile", "-p"), True, "the pid file option is --pid FILE"),
    (("--keep-alive", "--timeout-keep-alive"), True, "uvicorn's --timeout-keep-alive is --keep-alive S"),
    (("--certfile",), True, "gunicorn's --certfile is --ssl-certfile PATH"),
    (("--keyfile",), True, "gunicorn's --keyfile is --ssl-keyfile PATH"),
    (("--ca-certs",), True, "gunicorn's --ca-certs is --ssl-ca-certs PATH"),
    (("--cert-reqs",), True, "gunicorn's --cert-reqs is --ssl-cert-reqs none|optional|required"),
    (("--ciphers",), True, "gunicorn's --ciphers is --ssl-ciphers LIST"),
    (
        ("--ssl-keyfile-password", "--keyfile-password"),
        True,
        "a password on the command line is readable by every user (ps): put it in a file "
        "only you can read and pass --ssl-keyfile-password-file PATH",
    ),
    (("--ssl-version",), True, "no --ssl-version: TLS 1.2 or newer, as OpenSSL negotiates"),
    (
        ("--access-logformat",),
        True,
        "the access log is structured, not formatted: --access-log gives fields (client, method, "
        "path, query, status, bytes, duration_ms, request_id) in --log-format json|console; "
        "the mapping from gunicorn's format is in docs/serving.md",
    ),
    (("--timeout-graceful-shutdown",), True, "uvicorn's --timeout-graceful-shutdown is --graceful-timeout S"),
    (("--limit-max-requests",), True, "uvicorn's --limit-max-requests is --max-requests N"),
    (
        ("--access-logfile",),
        True,
        "--access-log turns request lines on; every log line goes to stderr "
        "(--log-format json|console): redirect it, or let journald or Kubernetes collect it",
    ),
    (
        ("--error-logfile", "--log-file"),
        True,
        "logs go to stderr (--log-format json|console): "
        "redirect it, or let journald or Kubernetes collect it",
    ),
    (
        ("--log-config",),
        True,
        "there is no logging config file: --log-level and --log-format; "
        "stdlib loggers are routed through the same output",
    ),
    (
        ("--user", "-u", "--group", "-g"),
        True,
        "no --user/--group: start supervise as that user (systemd User= and Group=)",
    ),
    (("--chdir",), True, "no --chdir: start supervise in the app's directory (systemd WorkingDirectory=)"),
    (("--app-dir",), True, "no --app-dir: start supervise in the app's directory, or add it to PYTHONPATH"),
    (("--name", "-n"), True, "no --name: the process title is 'supervise: master TARGET' / 'worker N'"),
    (("--check-config",), False, "to check the configuration: supervise check TARGET"),
    (("--print-config",), False, "to show the effective configuration: supervise check TARGET"),
    (
        ("-e", "--env"),
        True,
        "gunicorn's --env KEY=VALUE: set the variable in supervise's environment (the workers "
        "inherit it), or put KEY=VALUE lines in a file and pass --env-file FILE",
    ),
    (
        ("--loop",),
        True,
        "no --loop: each worker's event loop is uvloop when it is installed (uvicorn[standard] "
        "brings it), else asyncio, as uvicorn's --loop auto",
    ),
    (
        ("--lifespan",),
        True,
        "no --lifespan: lifespan runs in each worker when the app supports it (uvicorn's auto); "
        "a failed startup is a boot failure (exit 3)",
    ),
    (("--ws",), True, "no --ws: WebSockets use uvicorn's default implementation (websockets)"),
    (("--ws-max-queue",), True, "no --ws-max-queue: uvicorn's default applies (32 messages)"),
    (
        ("--ws-per-message-deflate",),
        True,
        "no --ws-per-message-deflate: uvicorn's default applies (on)",
    ),
    (
        ("--reload-extra-file",),
        True,
        "gunicorn's --reload-extra-file is --reload-include GLOB (with --reload-dir DIR for "
        "files outside the working directory)",
    ),
    (
        ("--do-handshake-on-connect", "--suppress-ragged-eofs"),
        False,
        "no such TLS switch here: TLS 1.2 or newer, as OpenSSL negotiates",
    ),
]

# Values people bring to an option that exists here with other values:
# setting -> value -> the answer.
VALUE_HABITS: dict[str, dict[str, str]] = {
    "http": dict.fromkeys(
        ("h11", "httptools", "auto"),
        "--http chooses the HTTP engine here (uvicorn or granian); uvicorn's --http h11|httptools "
        "has no counterpart: the uvicorn engine always parses with httptools",
    ),
    "interface": dict.fromkeys(
        ("asgi3", "asgi2"), "ASGI 2 and 3 are told apart by signature: --interface asgi"
    ),
    "ssl_cert_reqs": {
        "0": "uvicorn's --ssl-cert-reqs 0 is --ssl-cert-reqs none here",
        "1": "uvicorn's --ssl-cert-reqs 1 is --ssl-cert-reqs optional here",
        "2": "uvicorn's --ssl-cert-reqs 2 is --ssl-cert-reqs required here",
    },
    "log_level": dict.fromkeys(
        ("trace", "critical"), "uvicorn's log levels trace and critical are debug and error here"
    ),
}


class HabitChoice(click.Choice[str]):
    """A choice option that answers a peer's value for it (``VALUE_HABITS``)
    as the options above are answered: one line, exit 2."""

    def __init__(self, choices: tuple[str, ...], habits: dict[str, str]) -> None:
        super().__init__(choices)
        self.habits = habits

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and value not in self.choices and value in self.habits:
            click.echo(f"supervise: error: {self.habits[value]}", err=True)
            if ctx is not None:
                ctx.exit(2)
            raise SystemExit(2)
        return super().convert(value, param, ctx)


def _taken() -> set[str]:
    flags: set[str] = set()
    for _, meta in settings():
        for flag in meta.flags:
            flags.update(flag.split("/"))
    return flags


def _answer(message: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value not in (None, False):
            click.echo(f"supervise: error: {message}", err=True)
            ctx.exit(2)
        return value

    return callback


def accept_habits(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add the hidden options of HABITS that are not real options; their values
    never reach ``fn``."""
    taken = _taken()
    for flags, takes_value, message in HABITS:
        free = [f for f in flags if f not in taken]
        if not free:
            continue
        name = "habit_" + free[0].lstrip("-").replace("-", "_")
        kwargs: dict[str, Any] = {"hidden": True, "expose_value": False, "callback": _answer(message)}
        if takes_value:
            kwargs["metavar"] = "X"
        else:
            kwargs["is_flag"] = True
        fn = click.option(*free, name, **kwargs)(fn)
    return fn
