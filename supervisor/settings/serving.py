"""Settings of HTTP serving: sockets, threads, the engine, the health endpoint
(ServingSettings); and of the HTTP server itself: TLS, proxies, connections,
WebSockets, the request id (HTTPSettings).

Declared once here; config.py gathers every group into :class:`~supervisor.settings.config.Config`.
"""

from __future__ import annotations

from dataclasses import dataclass

from supervisor.settings.declare import (
    MAX_BACKLOG,
    MAX_COUNT,
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


@dataclass(frozen=True, kw_only=True)
class HTTPSettings:
    keep_alive: float = _setting(
        5.0,
        flags=("--keep-alive",),
        kind="float",
        minimum=0,
        maximum=3600,
        metavar="S",
        group="Serving",
        help="Close a keep-alive connection idle for S seconds (0: after each response).",
    )
    limit_concurrency: int = _setting(
        0,
        flags=("--limit-concurrency",),
        kind="int",
        minimum=0,
        maximum=MAX_COUNT,
        metavar="N",
        group="Serving",
        help="A request arriving while a worker holds N connections (its own included) or runs N "
        "requests is answered 503 (0: no limit). uvicorn's meaning: N=1 refuses everything.",
    )
    ssl_certfile: str | None = _setting(
        None,
        flags=("--ssl-certfile",),
        kind="str",
        metavar="PATH",
        group="TLS",
        help="Certificate chain (PEM) for HTTPS; checked against the key before anything starts.",
    )
    ssl_keyfile: str | None = _setting(
        None,
        flags=("--ssl-keyfile",),
        kind="str",
        metavar="PATH",
        group="TLS",
        help="Private key (PEM) for HTTPS; with --ssl-certfile, every --bind listener speaks TLS.",
        default_doc="in --ssl-certfile",
    )
    ssl_keyfile_password_file: str | None = _setting(
        None,
        flags=("--ssl-keyfile-password-file",),
        kind="str",
        metavar="PATH",
        group="TLS",
        help="File whose first line is the password of an encrypted --ssl-keyfile (a password "
        "itself is never an option: command lines are readable by every user).",
    )
    ssl_ca_certs: str | None = _setting(
        None,
        flags=("--ssl-ca-certs",),
        kind="str",
        metavar="PATH",
        group="TLS",
        help="CA certificates (PEM) that client certificates are verified against.",
    )
    ssl_cert_reqs: str = _setting(
        "none",
        flags=("--ssl-cert-reqs",),
        kind="choice",
        choices=("none", "optional", "required"),
        group="TLS",
        help="Whether clients must present a certificate signed by --ssl-ca-certs.",
    )
    ssl_ciphers: str | None = _setting(
        None,
        flags=("--ssl-ciphers",),
        kind="str",
        metavar="LIST",
        group="TLS",
        help="OpenSSL cipher list for TLS 1.2 and older (TLS 1.3 suites are not affected).",
        default_doc="OpenSSL's defaults",
    )
    proxy_headers: bool = _setting(
        True,
        flags=("--proxy-headers/--no-proxy-headers",),
        kind="bool",
        group="Proxies",
        help="Take the client address and scheme from X-Forwarded-For and X-Forwarded-Proto when "
        "the connection comes from --forwarded-allow-ips (for ASGI and WSGI apps).",
    )
    forwarded_allow_ips: tuple[str, ...] = _setting(
        ("127.0.0.1", "::1"),
        flags=("--forwarded-allow-ips",),
        kind="list",
        metavar="IP",
        group="Proxies",
        also_env=("FORWARDED_ALLOW_IPS",),
        help="Proxies whose X-Forwarded-* headers are trusted: addresses or networks "
        "(10.0.0.0/8), or '*' for any; repeatable (comma-separated in the environment; also read "
        "from FORWARDED_ALLOW_IPS).",
    )
    ws_ping_interval: float = _setting(
        20.0,
        flags=("--ws-ping-interval",),
        kind="float",
        minimum=0,
        maximum=MAX_SECONDS,
        metavar="S",
        group="WebSockets",
        help="Ping each WebSocket client every S seconds (0: never).",
    )
    ws_ping_timeout: float = _setting(
        20.0,
        flags=("--ws-ping-timeout",),
        kind="float",
        minimum=0,
        maximum=MAX_SECONDS,
        metavar="S",
        group="WebSockets",
        help="Close a WebSocket whose client has not answered a ping within S seconds (0: never).",
    )
    ws_max_size: int = _setting(
        16 * 1024 * 1024,
        flags=("--ws-max-size",),
        kind="int",
        minimum=1,
        maximum=2**31 - 1,
        metavar="BYTES",
        group="WebSockets",
        help="Largest WebSocket message accepted; a larger one closes the connection (1009).",
    )
    request_timeout: float = _setting(
        30.0,
        flags=("--request-timeout",),
        kind="float",
        minimum=0.001,
        maximum=MAX_SECONDS,
        metavar="S",
        group="Overload",
        help="An HTTP request not answered S seconds after it arrived gets 504 at once, and its "
        "wait for a connection or the query it runs is cancelled (in PostgreSQL too). Until its "
        "response starts; an app may give one request more (supervisor.set_request_timeout).",
    )
    shed: bool = _setting(
        True,
        flags=("--shed/--no-shed",),
        kind="bool",
        group="Overload",
        help="Past capacity, refuse work fast with 503 and Retry-After instead of queueing it for "
        "clients that will have left (CoDel on the time requests wait for a connection or a thread).",
    )
    queue_target: float | None = _setting(
        None,
        flags=("--queue-target",),
        kind="float",
        minimum=0.001,
        maximum=60,
        metavar="S",
        group="Overload",
        help="The queue is overloaded while the shortest wait in this worker over 5 targets (at "
        "least 0.2 s) stays above S; while it is, requests that waited 2 x S are refused and the "
        "newest are served first.",
        default_doc="the median time a connection or thread is held, from 0.1 to 1",
    )
    queue_order: str = _setting(
        "adaptive",
        flags=("--queue-order",),
        kind="choice",
        choices=("adaptive", "fifo"),
        group="Overload",
        help="adaptive: serve the newest request first while overloaded (its client is still "
        "there), else in arrival order; fifo: always in arrival order.",
    )
    retry_after: int = _setting(
        1,
        flags=("--retry-after",),
        kind="int",
        minimum=1,
        maximum=3600,
        metavar="S",
        group="Overload",
        help="The Retry-After header of a 503 refused as overload, in seconds.",
    )
