"""A database URL that can never work is refused before any connection is tried.

libpq parses the URL (or conninfo) itself only when it connects, and reports a
malformed one (``port=notaport``, ``sslmode=bogus``) the way it reports a server
that is not up yet. Waiting ``--db-wait-timeout`` for such a URL helps nobody:
:func:`validate` checks what libpq would refuse, so it is an exit 2 at once, and
:func:`retryable` tells the connection failures that waiting can cure from the
rest.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from supervisor.errors import ConfigError
from supervisor.redact import redact_secret, scrub

_SCHEMES = ("postgresql://", "postgres://")

# Values libpq checks only at connect time; the keys it does not know at all
# it refuses while parsing (conninfo_to_dict), so they need no list here.
_CHOICES: dict[str, tuple[str, ...]] = {
    "sslmode": ("disable", "allow", "prefer", "require", "verify-ca", "verify-full"),
    "gssencmode": ("disable", "prefer", "require"),
    "channel_binding": ("disable", "prefer", "require"),
    "target_session_attrs": ("any", "read-write", "read-only", "primary", "standby", "prefer-standby"),
    "load_balance_hosts": ("disable", "random"),
    "sslnegotiation": ("postgres", "direct"),
}
_INTEGERS = (
    "connect_timeout",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
)
# the variables libpq falls back to for the keys above (a typo there is as fatal)
_ENV = {
    "port": "PGPORT",
    "sslmode": "PGSSLMODE",
    "gssencmode": "PGGSSENCMODE",
    "channel_binding": "PGCHANNELBINDING",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
    "load_balance_hosts": "PGLOADBALANCEHOSTS",
    "sslnegotiation": "PGSSLNEGOTIATION",
    "connect_timeout": "PGCONNECT_TIMEOUT",
}


def validate(url: str, origin: str, environ: Mapping[str, str] | None = None) -> None:
    """Raise :class:`ConfigError` (one line, password masked) when libpq would
    refuse ``url`` whatever the state of the server."""
    from psycopg import Error
    from psycopg.conninfo import conninfo_to_dict

    shown = redact_secret(url)
    where = f"database URL {shown} (from {origin})"
    head = url.strip().split(None, 1)[0] if url.strip() else ""
    scheme = head.partition("://")[0] if "://" in head and "=" not in head.partition("://")[0] else ""
    if scheme and not head.startswith(_SCHEMES):
        hint = (
            f"; drop '{scheme[scheme.index('+') :]}': that is SQLAlchemy's spelling"
            if scheme.startswith(("postgresql+", "postgres+"))
            else ""
        )
        raise ConfigError(
            f"{where} is not usable: scheme {scheme!r} is not postgresql:// or postgres://{hint}"
        )
    try:
        params = conninfo_to_dict(url)
    except Error as exc:
        reason = scrub(str(exc).strip(), url).splitlines()[0]
        raise ConfigError(f"{where} is not usable: {reason}") from None
    environ = os.environ if environ is None else environ
    for key, variable in _ENV.items():
        if key not in params and environ.get(variable, "").strip():
            _check(
                key, environ[variable], f"{where} with {variable}={environ[variable]!r} in the environment"
            )
    for key, value in params.items():
        if isinstance(value, str):
            _check(key, value, where)


def _check(key: str, value: str, where: str) -> None:
    if key == "port":
        # one port per host of a multi-host URL; an empty one means the default
        for port in value.split(","):
            if port.strip() and not (port.strip().isdigit() and 1 <= int(port) <= 65535):
                raise ConfigError(
                    f"{where} is not usable: port {port.strip()!r} is not a number from 1 to 65535"
                )
    elif key in _INTEGERS:
        if not value.strip().lstrip("-").isdigit():
            raise ConfigError(f"{where} is not usable: {key} {value!r} is not a whole number")
    elif key in _CHOICES and value not in _CHOICES[key]:
        raise ConfigError(f"{where} is not usable: {key} {value!r} is not one of {', '.join(_CHOICES[key])}")


# What a connection attempt says when the server is down, starting, stopping,
# full or not reachable *yet*: libpq's client-side texts (no SQLSTATE at
# connect) and the server's own refusals of that kind. Anything else (a login
# refused, a certificate or a setting rejected) will fail again the same way.
# Name resolution is retried on purpose: in Kubernetes and Docker Compose a
# database's host name resolves only once its container exists, so a typo in a
# host name waits --db-wait-timeout too (the log says why at every attempt).
_TRANSIENT = (
    "connection refused",
    "no route to host",
    "network is unreachable",
    "host is unreachable",
    "timeout expired",
    "timed out",
    "could not translate host name",
    "name or service not known",
    "temporary failure in name resolution",
    "no such file or directory",  # a unix socket not created yet
    "server closed the connection unexpectedly",
    "connection reset by peer",
    "could not receive data from server",
    "could not send data to server",
    "ssl syscall error",
    "cannot assign requested address",
    "resource temporarily unavailable",
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "the database system is not yet accepting connections",
    "the database system is not accepting connections",
    "too many clients already",
    "remaining connection slots are reserved",
)
_TRANSIENT_STATES = ("57P03", "53300")  # cannot_connect_now, too_many_connections


def retryable(message: str, sqlstate: str | None) -> bool:
    """Whether a failed connection attempt may succeed later by itself."""
    if sqlstate is not None:
        return sqlstate in _TRANSIENT_STATES or sqlstate.startswith("08")
    text = message.lower()
    return any(marker in text for marker in _TRANSIENT)


def cause(message: str) -> str:
    """What went wrong in a failed connection attempt, in one line: libpq's
    first line ('connection to server at "10.0.0.5", port 5432 failed:
    Connection refused'), without psycopg's 'connection failed: ' prefix. The
    lines after it are hints ('Is the server running on that host...?') or
    psycopg's list of every host it tried, which say nothing of the cause."""
    first = next((line.strip() for line in message.splitlines() if line.strip()), "")
    return first.removeprefix("connection failed: ")
