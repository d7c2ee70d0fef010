"""The HTTP server's settings (TLS, proxies, connections, WebSockets, the
request id), as the keywords of their ``_setting(...)`` fields in
:class:`supervisor.config.Config` (kept here so config.py stays small;
config.py is still where every setting is a field)."""

from __future__ import annotations

from typing import Any

from supervisor._setting import MAX_COUNT, MAX_SECONDS

SSL_KEYFILE: dict[str, Any] = {
    "default": None,
    "flags": ("--ssl-keyfile",),
    "kind": "str",
    "metavar": "PATH",
    "group": "TLS",
    "help": "Private key (PEM) for HTTPS; with --ssl-certfile, every --bind listener speaks TLS.",
    "default_doc": "in --ssl-certfile",
}
SSL_CERTFILE: dict[str, Any] = {
    "default": None,
    "flags": ("--ssl-certfile",),
    "kind": "str",
    "metavar": "PATH",
    "group": "TLS",
    "help": "Certificate chain (PEM) for HTTPS; checked against the key before anything starts.",
}
SSL_KEYFILE_PASSWORD_FILE: dict[str, Any] = {
    "default": None,
    "flags": ("--ssl-keyfile-password-file",),
    "kind": "str",
    "metavar": "PATH",
    "group": "TLS",
    "help": "File whose first line is the password of an encrypted --ssl-keyfile (a password "
    "itself is never an option: command lines are readable by every user).",
}
SSL_CA_CERTS: dict[str, Any] = {
    "default": None,
    "flags": ("--ssl-ca-certs",),
    "kind": "str",
    "metavar": "PATH",
    "group": "TLS",
    "help": "CA certificates (PEM) that client certificates are verified against.",
}
SSL_CERT_REQS: dict[str, Any] = {
    "default": "none",
    "flags": ("--ssl-cert-reqs",),
    "kind": "choice",
    "choices": ("none", "optional", "required"),
    "group": "TLS",
    "help": "Whether clients must present a certificate signed by --ssl-ca-certs.",
}
SSL_CIPHERS: dict[str, Any] = {
    "default": None,
    "flags": ("--ssl-ciphers",),
    "kind": "str",
    "metavar": "LIST",
    "group": "TLS",
    "help": "OpenSSL cipher list for TLS 1.2 and older (TLS 1.3 suites are not affected).",
    "default_doc": "OpenSSL's defaults",
}
PROXY_HEADERS: dict[str, Any] = {
    "default": True,
    "flags": ("--proxy-headers/--no-proxy-headers",),
    "kind": "bool",
    "group": "Proxies",
    "help": "Take the client address and scheme from X-Forwarded-For and X-Forwarded-Proto when "
    "the connection comes from --forwarded-allow-ips (for ASGI and WSGI apps).",
}
FORWARDED_ALLOW_IPS: dict[str, Any] = {
    "default": ("127.0.0.1", "::1"),
    "flags": ("--forwarded-allow-ips",),
    "kind": "list",
    "metavar": "IP",
    "group": "Proxies",
    "also_env": ("FORWARDED_ALLOW_IPS",),
    "help": "Proxies whose X-Forwarded-* headers are trusted: addresses or networks "
    "(10.0.0.0/8), or '*' for any; repeatable (comma-separated in the environment; also read "
    "from FORWARDED_ALLOW_IPS).",
}
KEEP_ALIVE: dict[str, Any] = {
    "default": 5.0,
    "flags": ("--keep-alive",),
    "kind": "float",
    "minimum": 0,
    "maximum": 3600,
    "metavar": "S",
    "group": "Serving",
    "help": "Close a keep-alive connection idle for S seconds (0: after each response).",
}
LIMIT_CONCURRENCY: dict[str, Any] = {
    "default": 0,
    "flags": ("--limit-concurrency",),
    "kind": "int",
    "minimum": 0,
    "maximum": MAX_COUNT,
    "metavar": "N",
    "group": "Serving",
    "help": "A request arriving while a worker holds N connections (its own included) or runs N "
    "requests is answered 503 (0: no limit). uvicorn's meaning: N=1 refuses everything.",
}
WS_PING_INTERVAL: dict[str, Any] = {
    "default": 20.0,
    "flags": ("--ws-ping-interval",),
    "kind": "float",
    "minimum": 0,
    "maximum": MAX_SECONDS,
    "metavar": "S",
    "group": "WebSockets",
    "help": "Ping each WebSocket client every S seconds (0: never).",
}
WS_PING_TIMEOUT: dict[str, Any] = {
    "default": 20.0,
    "flags": ("--ws-ping-timeout",),
    "kind": "float",
    "minimum": 0,
    "maximum": MAX_SECONDS,
    "metavar": "S",
    "group": "WebSockets",
    "help": "Close a WebSocket whose client has not answered a ping within S seconds (0: never).",
}
WS_MAX_SIZE: dict[str, Any] = {
    "default": 16 * 1024 * 1024,
    "flags": ("--ws-max-size",),
    "kind": "int",
    "minimum": 1,
    "maximum": 2**31 - 1,
    "metavar": "BYTES",
    "group": "WebSockets",
    "help": "Largest WebSocket message accepted; a larger one closes the connection (1009).",
}
REQUEST_ID_HEADER: dict[str, Any] = {
    "default": "X-Request-ID",
    "flags": ("--request-id-header",),
    "kind": "str",
    "metavar": "NAME",
    "group": "Logging",
    "help": "Request header whose value is the access log's request_id; a request without it "
    "gets a generated id, added to the request's headers and echoed in the response.",
}
