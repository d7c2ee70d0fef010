"""Settings of the HTTP server: TLS, proxies, connections, WebSockets, the
request id.

Declared once here; config.py gathers every group into :class:`~supervisor.config.Config`.
"""

from __future__ import annotations

from dataclasses import dataclass

from supervisor._setting import MAX_COUNT, MAX_SECONDS, _setting


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
