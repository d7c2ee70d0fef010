"""Testing helpers (also a pytest plugin, registered as ``supervisor``).

Fixtures: ``postgres_server`` (session: a reachable PostgreSQL server),
``postgres_url`` (a fresh database per test), ``supervise_process`` (run the
supervisor as a subprocess and watch its log). See docs/database.md#testing-your-app-the-pytest-plugin.
"""

from supervisor.testing.launch import SupervisorProcess, wait_until
from supervisor.testing.postgres import PostgresServer, local_cluster

__all__ = ["PostgresServer", "SupervisorProcess", "local_cluster", "wait_until"]
