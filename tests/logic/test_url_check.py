"""Which connection failures waiting can cure: libpq's and the server's own texts
and SQLSTATEs, as text (the waits themselves are in processes/test_dburl.py)."""

from __future__ import annotations

import pytest

from supervisor.database.url_check import retryable


# libpq's and the server's own texts (a server starting up cannot be caught
# reliably in a test, so its message is checked here as text)
@pytest.mark.parametrize(
    ("message", "sqlstate", "expected"),
    [
        ('connection to server at "127.0.0.1", port 5 failed: Connection refused', None, True),
        ('connection to server at "10.9.9.9", port 5432 failed: No route to host', None, True),
        ('could not translate host name "db" to address: Name or service not known', None, True),
        ('could not translate host name "db" to address: Temporary failure in name resolution', None, True),
        ("connection failed: connection timeout expired", None, True),
        ('connection to server on socket "/tmp/.s.PGSQL.5432" failed: No such file or directory', None, True),
        ("connection to server at ... failed: FATAL:  the database system is starting up", None, True),
        ("FATAL:  the database system is not yet accepting connections", None, True),
        ("FATAL:  sorry, too many clients already", None, True),
        ("anything", "57P03", True),
        ("anything", "08006", True),
        ('FATAL:  password authentication failed for user "app"', None, False),
        ('FATAL:  database "x" does not exist', None, False),
        ("fe_sendauth: no password supplied", None, False),
        ('invalid integer value "notaport" for connection option "port"', None, False),
        ('invalid sslmode value: "bogus"', None, False),
        ("server does not support SSL, but SSL was required", None, False),
        ("anything", "28P01", False),
    ],
)
def test_which_failures_are_retried(message: str, sqlstate: str | None, expected: bool):
    assert retryable(message, sqlstate) is expected
