"""A PostgreSQL for the benches that need one: ``PERF_DB_URL`` if set, else
``SUPERVISE_TEST_DATABASE_URL``, else a throwaway local cluster (initdb,
loopback only, fsync off) that is stopped when the bench ends."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


@contextlib.contextmanager
def database_url() -> Iterator[str]:
    for name in ("PERF_DB_URL", "SUPERVISE_TEST_DATABASE_URL"):
        if os.environ.get(name):
            yield os.environ[name]
            return
    from supervisor.testing.postgres import local_cluster

    with local_cluster() as cluster:
        yield cluster.url
