"""PostgreSQL: ``Database`` and its per-worker pools, the fork guard, and the
one home of the connection budget.

In a worker: ``pools`` (``Database``), ``checked_pool`` (a pool that tests a
connection only when it may have gone stale), ``retry`` (transient errors).
Across the fork: ``registry`` (every ``Database``, without psycopg) and
``fork_guard`` (no connection in the master at a fork). Before the first fork
(``preflight``: wait for the server, check the budget, migrate): ``url_check``
(a URL that can never work), ``budget`` (the server's limit, the per-master
check), ``fleet`` (the fleet-wide reservation) and ``fleet_view``
(``supervise status --fleet``), ``appname`` (what connections are called).

``Database`` is imported lazily: it imports psycopg (~80 ms), which a
supervisor without a database never pays for.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from supervisor.database.pools import Database


def __getattr__(name: str) -> Any:
    if name == "Database":
        from supervisor.database.pools import Database

        return Database
    raise AttributeError(f"module 'supervisor.database' has no attribute {name!r}")


__all__ = ["Database"]
