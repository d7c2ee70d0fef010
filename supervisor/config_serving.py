"""Settings of HTTP serving: sockets, threads, the engine, health endpoint.

Declared once here; config.py gathers every group into :class:`~supervisor.config.Config`.
"""

from __future__ import annotations

from dataclasses import dataclass

from supervisor._setting import (
    MAX_BACKLOG,
    MAX_HEAD_BYTES,
    MAX_HEAD_FIELDS,
    MAX_SECONDS,
    MAX_THREADS,
    _setting,
)


@dataclass(frozen=True, kw_only=True)
class ServingSettings:
    bind: tuple[str, ...] = _setting(
        (),
        flags=("-b", "--bind"),
        kind="list",
        metavar="ADDR",
        group="Serving",
        help="Listen on ADDR: HOST:PORT, [IPv6]:PORT, unix:PATH or fd://N; repeatable (comma-"
        "separated in the environment). HTTP targets default to 127.0.0.1:8000, or to the "
        "sockets systemd passes (LISTEN_FDS).",
        default_doc="127.0.0.1:8000 for HTTP targets",
    )
    backlog: int = _setting(
        2048,
        flags=("--backlog",),
        kind="int",
        minimum=1,
        maximum=MAX_BACKLOG,
        metavar="N",
        group="Serving",
        help="Connections the kernel queues on each listener before refusing.",
    )
    socket_mode: str | None = _setting(
        None,
        flags=("--socket-mode",),
        kind="str",
        metavar="OCTAL",
        group="Serving",
        help="Permissions of unix sockets (e.g. 660).",
    )
    threads: int = _setting(
        4,
        flags=("--threads",),
        kind="int",
        minimum=1,
        maximum=MAX_THREADS,
        metavar="N",
        group="Serving",
        help="Request threads per worker for WSGI apps (they share the worker's db.pool); "
        "1 serves one request at a time, gunicorn's sync model.",
    )
    root_path: str = _setting(
        "",
        flags=("--root-path",),
        kind="str",
        metavar="PREFIX",
        group="Serving",
        also_env=("SCRIPT_NAME",),
        help="The URL prefix the app is mounted at behind a proxy (e.g. /app): ASGI's root_path; "
        "WSGI's SCRIPT_NAME, taken off the front of PATH_INFO (also read from SCRIPT_NAME, "
        "as gunicorn does).",
    )
    limit_request_line: int = _setting(
        4094,
        flags=("--limit-request-line",),
        kind="int",
        minimum=0,
        maximum=MAX_HEAD_BYTES,
        metavar="BYTES",
        group="Serving",
        help="Longest HTTP request line (method, target, version); longer gets 414 (0: no limit).",
    )
    limit_request_fields: int = _setting(
        100,
        flags=("--limit-request-fields",),
        kind="int",
        minimum=0,
        maximum=MAX_HEAD_FIELDS,
        metavar="N",
        group="Serving",
        help="Most header fields in one request; more gets 431 (0: no limit).",
    )
    limit_request_field_size: int = _setting(
        8190,
        flags=("--limit-request-field-size",),
        kind="int",
        minimum=0,
        maximum=MAX_HEAD_BYTES,
        metavar="BYTES",
        group="Serving",
        help="Longest request header field (name and value); longer gets 431 (0: no limit).",
    )
    header_timeout: float = _setting(
        10.0,
        flags=("--header-timeout",),
        kind="float",
        minimum=0,
        maximum=MAX_SECONDS,
        metavar="S",
        group="Serving",
        help="Seconds a client has to send a whole request head once it connects or starts a "
        "request; slower gets 408 and the connection closed (0: no limit).",
    )
    http: str = _setting(
        "uvicorn",
        flags=("--http",),
        kind="choice",
        choices=("uvicorn", "granian"),
        group="Serving",
        help="HTTP engine in each worker for ASGI and WSGI apps: uvicorn (WSGI through our "
        "bridge), or granian (Rust; pip install 'pg-supervise[granian]').",
    )
    health_bind: str | None = _setting(
        None,
        flags=("--health-bind",),
        kind="str",
        metavar="HOST:PORT",
        group="Serving",
        help="Serve /livez and /readyz from the master (Kubernetes probes).",
    )
    access_log: bool = _setting(
        False,
        flags=("--access-log/--no-access-log",),
        kind="bool",
        group="Serving",
        help="Log one line per HTTP request.",
    )
