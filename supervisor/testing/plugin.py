"""pytest plugin: PostgreSQL fixtures.

``postgres_server`` finds a server once per session (see
:mod:`supervisor.testing.postgres`). When none can be had the tests that need
it are skipped, unless ``--require-postgres`` or ``SUPERVISE_TEST_REQUIRE_DB=1``
asks for a failure instead (CI should).
"""

from __future__ import annotations

import contextlib
import gc
import os
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from supervisor.testing.postgres import (
    ENV_REQUIRE,
    ENV_URL,
    LocalCluster,
    PostgresServer,
    container,
    local_cluster,
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--require-postgres",
        action="store_true",
        default=False,
        help="fail (instead of skip) tests that need PostgreSQL when none is found",
    )


def _required(config: pytest.Config) -> bool:
    flag = os.environ.get(ENV_REQUIRE, "").strip().lower() in ("1", "true", "yes")
    return bool(config.getoption("--require-postgres")) or flag


@pytest.fixture(scope="session")
def postgres_server(request: pytest.FixtureRequest) -> Iterator[PostgresServer]:
    """A PostgreSQL server for this test session."""
    if os.environ.get(ENV_URL):
        yield PostgresServer(os.environ[ENV_URL], "env")
        return
    reasons = []
    with contextlib.ExitStack() as stack:
        try:
            url = stack.enter_context(container())
            yield PostgresServer(url, "testcontainers")
            return
        except Exception as exc:  # no package, no engine, pull failed: try the next way
            reasons.append(f"testcontainers: {type(exc).__name__}: {exc}")
            # Without an engine, docker's client leaves an unclosed socket behind;
            # collect it now, quietly, rather than as a ResourceWarning in a later test.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ResourceWarning)
                gc.collect()
        try:
            cluster = stack.enter_context(local_cluster())
        except Exception as exc:
            reasons.append(f"local initdb: {type(exc).__name__}: {exc}")
        else:
            request.config.stash[_CLUSTER] = cluster
            yield PostgresServer(cluster.url, "local")
            return
    message = "no PostgreSQL server for tests: " + "; ".join(reasons)
    if _required(request.config):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


_CLUSTER = pytest.StashKey[LocalCluster]()


@pytest.fixture
def postgres_cluster(request: pytest.FixtureRequest, postgres_server: PostgresServer) -> LocalCluster:
    """The local cluster behind ``postgres_server`` (for tests that stop or restart the
    server); skipped when the server is not a local one."""
    cluster = request.config.stash.get(_CLUSTER, None)
    if cluster is None:
        pytest.skip("needs a local cluster (the server is not one we started)")
    return cluster


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database for one test; dropped afterwards."""
    from supervisor.testing.postgres import fresh_database

    with fresh_database(postgres_server.url) as url:
        yield url


@pytest.fixture
def supervise_process(request: pytest.FixtureRequest) -> Iterator[Any]:
    """Start the supervisor as a subprocess: ``supervise_process("app:main", "-w", "2",
    env={...})`` returns a :class:`~supervisor.testing.launch.SupervisorProcess`.
    It starts in the project's root (pytest's rootdir: where its configuration or
    ``pyproject.toml`` is), as ``supervise`` run there would, so ``app:main`` and
    ``migrations/`` are found there; ``cwd=`` starts it elsewhere. After the test
    every process it started is gone, and the test fails if any outlived its master."""
    from supervisor.testing.launch import SupervisorProcess

    runs: list[SupervisorProcess] = []

    def start(
        *args: str, env: dict[str, str] | None = None, cwd: Any = None, cmd: list[str] | None = None
    ) -> SupervisorProcess:
        run = SupervisorProcess(list(args), cwd or request.config.rootpath, env, cmd)
        runs.append(run)
        return run

    yield start
    leftovers = {run.pid: left for run in runs if (left := run.finish())}
    assert not leftovers, f"processes outlived their master: {leftovers}"
