"""``Database``: declared anywhere, connected only inside a worker.

Every ``Database`` object registers itself. The supervisor then:

* in the master, before each fork, closes any pool a ``Database`` opened there;
* in a new worker, first *drops* whatever it inherited without any I/O (a
  ``close()`` in the child would send Terminate on the master's socket), then
  builds a fresh ``psycopg_pool.ConnectionPool`` with ``open=False``, opens it
  and waits for ``min_size`` connections before the worker reports ready;
* when the worker stops, closes its pool cleanly (the server sees a normal
  disconnection).

Using a pool in a process other than the one that opened it raises
:class:`ForkSafetyError` instead of corrupting the protocol stream.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from supervisor import _appname, _dbregistry, _dburl
from supervisor.errors import ConfigError, ForkSafetyError, WorkerBootError
from supervisor.logging import get_logger
from supervisor.pools import AsyncCheckedPool, CheckedPool
from supervisor.redact import redact_secret, scrub

if TYPE_CHECKING:
    from supervisor.config import Config

log = get_logger()

# Inherited pools are kept referenced in the child so that no finalizer of
# theirs ever runs there (os._exit skips them); dropping is then truly I/O-free.
_graveyard: list[object] = []

STATS_KEYS = (
    "pool_size",
    "pool_available",
    "requests_waiting",
    "requests_num",
    "requests_wait_ms",
    "requests_errors",
    "connections_errors",
    "connections_lost",
)


class Database:
    """A PostgreSQL database used by the workers, through one pool per worker.

    ``url`` defaults to ``--database-url`` / ``DATABASE_URL``; pool settings
    default to the ``--pool-*`` settings. ``configure`` is called on each new
    connection (register adapters, ``SET search_path``), ``kwargs`` go to
    ``psycopg.connect``.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        name: str = "db",
        min_size: int | None = None,
        max_size: int | None = None,
        configure: Callable[[psycopg.Connection[Any]], None] | None = None,
        kwargs: dict[str, Any] | None = None,
        _default: bool = False,
    ) -> None:
        self.name = name
        self._url = url
        self._min_size = min_size
        self._max_size = max_size
        self._configure = configure
        self._kwargs = dict(kwargs or {})
        self._pool: ConnectionPool[psycopg.Connection[Any]] | None = None
        self._async_pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()
        self._is_default = _default
        _dbregistry.register(self)

    @classmethod
    def configured(cls) -> Database:
        """The supervisor's own Database for ``--database-url``: what
        ``worker.db`` is unless the application declares one without a URL."""
        return cls(name="db", _default=True)

    @property
    def is_default(self) -> bool:
        """Made by the supervisor for ``--database-url`` (see :meth:`configured`)."""
        return self._is_default

    @property
    def explicit_url(self) -> str | None:
        """The URL given to the constructor; None means ``--database-url``."""
        return self._url

    # -- use inside a worker --------------------------------------------------

    @property
    def pool(self) -> ConnectionPool[psycopg.Connection[Any]]:
        """This worker's own pool. Raises :class:`ForkSafetyError` outside a worker."""
        pool, pid = self._pool, self._pid
        if pool is None and self._async_pool is not None and pid == os.getpid():
            raise ForkSafetyError(
                f"Database {self.name!r}: this worker runs an async target, so its pool is "
                "db.async_pool (use 'async with db.async_pool.connection() as conn:')."
            )
        if pool is None:
            raise ForkSafetyError(
                f"Database {self.name!r} has no pool in this process: pools are opened in each "
                "worker after fork. In the master (hooks, scripts) use 'with db.connect() as "
                "conn:' for a short-lived connection."
            )
        if pid != os.getpid():
            raise ForkSafetyError(
                f"Database {self.name!r}: this pool was opened in process {pid} and this is "
                f"process {os.getpid()}; a pool cannot cross fork(). Use the pool the worker "
                "opened (db.pool inside the worker), or open connections after fork."
            )
        return pool

    @property
    def async_pool(self) -> AsyncConnectionPool[psycopg.AsyncConnection[Any]]:
        """This worker's own async pool, opened in its event loop (async targets).
        Raises :class:`ForkSafetyError` outside such a worker."""
        pool, pid = self._async_pool, self._pid
        if pool is None or pid != os.getpid():
            raise ForkSafetyError(
                f"Database {self.name!r} has no async pool in this process: async pools are "
                "opened inside the event loop of workers that run an async target. A sync "
                "target uses db.pool / db.connection()."
            )
        return pool

    @contextmanager
    def connection(self, timeout: float | None = None) -> Iterator[psycopg.Connection[Any]]:
        """Lend a connection from this worker's pool (committed on success,
        rolled back on error, returned to the pool either way)."""
        with self.pool.connection(timeout=timeout) as conn:
            yield conn

    def connect(self, config: Config | None = None, **kwargs: Any) -> psycopg.Connection[Any]:
        """A new direct connection, owned by the caller (close it). For the master
        and for scripts; workers should use :meth:`connection`."""
        return psycopg.connect(self.url(config), **{**self._kwargs, **kwargs})

    def url(self, config: Config | None = None) -> str:
        url = self._url or (config.database_url if config else None) or os.environ.get("DATABASE_URL")
        if not url:
            raise ConfigError(f"Database {self.name!r} has no URL: pass --database-url or set DATABASE_URL")
        return url

    @property
    def max_size(self) -> int | None:
        """The pool size this database asked for, or None for ``--pool-max-size``."""
        return self._max_size

    def stats(self) -> dict[str, int]:
        """The pool's counters since the last call (psycopg_pool's pop_stats)."""
        pool = self._pool or self._async_pool
        if pool is None or self._pid != os.getpid():
            return {}
        raw = pool.pop_stats()
        return {key: int(raw.get(key, 0)) for key in STATS_KEYS}

    def snapshot(self) -> dict[str, int]:
        """The pool's current size and queue, without resetting the counters
        :meth:`stats` reports (so metrics and the ``pool stats`` lines agree)."""
        pool = self._pool or self._async_pool
        if pool is None or self._pid != os.getpid():
            return {}
        raw = pool.get_stats()
        return {
            key: int(raw.get(key, 0))
            for key in ("pool_max", "pool_size", "pool_available", "requests_waiting")
        }

    def __repr__(self) -> str:
        mine = self._pid == os.getpid() and (self._pool or self._async_pool) is not None
        state = "open" if mine else "not open"
        return f"<Database {self.name!r} {state}>"

    # -- lifecycle, driven by the supervisor -------------------------------------

    def _settings(self, worker_id: int, cfg: Config) -> dict[str, Any]:
        min_size = cfg.pool_min_size if self._min_size is None else self._min_size
        url = self.url(cfg)
        if self._url:  # its own URL, not the checked --database-url: a pool would retry a typo
            _dburl.validate(url, f"Database {self.name!r}")
        return {
            "conninfo": url,
            "name": f"{self.name}-w{worker_id}",
            "min_size": min_size,
            "max_size": max(min_size, cfg.pool_max_size if self._max_size is None else self._max_size),
            "kwargs": {
                "application_name": _appname.application_name(cfg, f"worker-{worker_id}"),
                **self._kwargs,
            },
            "max_lifetime": cfg.pool_max_lifetime,
            "max_idle": cfg.pool_max_idle,
            "timeout": cfg.pool_timeout,
            "reconnect_timeout": cfg.pool_reconnect_timeout,
            "check_idle": cfg.pool_check_idle,
        }

    def _boot_error(self, settings: dict[str, Any], timeout: float) -> WorkerBootError:
        return WorkerBootError(
            f"database {self.name!r} ({redact_secret(settings['conninfo'])}): the pool could not "
            f"open {settings['min_size']} connection(s) within {timeout:g} s (--pool-timeout)"
        )

    def _opened(self, settings: dict[str, Any], kind: str) -> None:
        log.info(
            "database pool open",
            database=self.name,
            kind=kind,
            min_size=settings["min_size"],
            max_size=settings["max_size"],
            application_name=settings["kwargs"]["application_name"],
        )

    def _open(self, worker_id: int, config: Config, on_unreachable: Callable[[], None]) -> None:
        """Open worker ``worker_id``'s sync pool and wait until it holds
        ``min_size`` connections; ``on_unreachable`` is called (from a pool
        thread) if the pool cannot reconnect within --pool-reconnect-timeout."""
        with self._lock:
            if self._pool is not None and self._pid == os.getpid():
                return
            settings = self._settings(worker_id, config)
            pool: ConnectionPool[psycopg.Connection[Any]] = CheckedPool(
                open=False,
                configure=self._configure,
                reconnect_failed=lambda _pool: on_unreachable(),
                **settings,
            )
            pool.open(wait=False)
            try:
                pool.wait(timeout=config.pool_timeout)
            except PoolTimeout:
                pool.close(timeout=1.0)  # ours, opened here: close what it did open
                raise self._boot_error(settings, config.pool_timeout) from None
            self._pool, self._pid = pool, os.getpid()
        self._opened(settings, "sync")

    async def _open_async(self, worker_id: int, config: Config, on_unreachable: Callable[[], None]) -> None:
        """Open worker ``worker_id``'s async pool, in the running event loop."""
        if self._async_pool is not None and self._pid == os.getpid():
            return
        if self._configure is not None:
            raise ConfigError(
                f"Database {self.name!r}: configure= takes a sync connection; async "
                "targets are not supported with it yet"
            )
        settings = self._settings(worker_id, config)
        pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncCheckedPool(
            open=False,
            reconnect_failed=lambda _pool: on_unreachable(),
            **settings,
        )
        await pool.open(wait=False)
        try:
            await pool.wait(timeout=config.pool_timeout)
        except PoolTimeout:
            await pool.close(timeout=1.0)
            raise self._boot_error(settings, config.pool_timeout) from None
        self._async_pool, self._pid = pool, os.getpid()
        self._opened(settings, "async")

    async def _close_async(self, timeout: float = 5.0) -> None:
        pool, pid = self._async_pool, self._pid
        self._async_pool = None
        if pool is not None and pid == os.getpid():
            await pool.close(timeout=timeout)

    def _close(self, timeout: float = 5.0) -> None:
        """Close the pool this process opened (never one it inherited)."""
        # An open() may hold the lock while it waits for the pool to fill; a
        # stopping worker must not wait that long (os._exit drops the pool).
        if not self._lock.acquire(timeout=1.0):
            return
        try:
            pool, pid = self._pool, self._pid
            self._pool = None
            if self._async_pool is None:
                self._pid = None
        finally:
            self._lock.release()
        if pool is not None and pid == os.getpid():
            pool.close(timeout=timeout)
        elif pool is not None:
            _graveyard.append(pool)

    def _drop_inherited(self) -> None:
        """In a new child: forget the parent's pools without any I/O."""
        if self._pid != os.getpid():
            _graveyard.extend(p for p in (self._pool, self._async_pool) if p is not None)
            self._pool = self._async_pool = self._pid = None
        self._lock = threading.Lock()  # a parent thread may have held the old one at fork


def wait_for_server(config: Config) -> psycopg.Connection[Any]:
    """Connect to ``--database-url``, retrying with backoff for ``--db-wait-timeout``
    seconds; the caller owns (and closes) the returned connection."""
    from supervisor.errors import DatabaseUnavailableError

    assert config.database_url
    url, started, delay, attempt = config.database_url, time.monotonic(), 0.25, 0
    app = _appname.application_name(config, "master")
    while True:
        attempt += 1
        try:
            return psycopg.connect(url, autocommit=True, connect_timeout=5, application_name=app)
        except psycopg.Error as exc:
            text = scrub(str(exc).strip(), url)
            reason = text.splitlines()[-1] if text else type(exc).__name__
            if not isinstance(exc, psycopg.OperationalError):  # a malformed URL, say
                raise ConfigError(f"database URL {redact_secret(url)} is not usable: {reason}") from None
            # Waiting cures a server that is down, starting or full, not a wrong
            # password, role, database name or setting: those fail at once.
            if not _dburl.retryable(str(exc), exc.sqlstate):
                state = f" (SQLSTATE {exc.sqlstate})" if exc.sqlstate else ""
                refused = "FATAL" in str(exc) or exc.sqlstate is not None
                raise ConfigError(
                    f"PostgreSQL at {redact_secret(url)} refused the connection: {reason}{state}"
                    if refused
                    else f"database URL {redact_secret(url)} is not usable: {reason} "
                    "(not retried: waiting would not change it)"
                ) from None
            waited = time.monotonic() - started
            if waited + delay > config.db_wait_timeout:
                raise DatabaseUnavailableError(
                    f"PostgreSQL at {redact_secret(url)} did not accept connections within "
                    f"{config.db_wait_timeout:g} s (--db-wait-timeout): {reason}"
                ) from None
            log.warning(
                "waiting for PostgreSQL",
                url=redact_secret(url),
                attempt=attempt,
                retry_in_s=round(delay, 2),
                error=reason,
            )
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def connection_limit(conn: psycopg.Connection[Any]) -> tuple[int, str]:
    """What the server lets non-superusers open, and how that was worked out."""
    settings = dict(
        conn.execute(
            "select name, setting from pg_settings where name in "
            "('max_connections', 'superuser_reserved_connections', 'reserved_connections')"
        ).fetchall()
    )
    total = int(settings["max_connections"])
    reserved = sum(
        int(settings.get(k, 0)) for k in ("superuser_reserved_connections", "reserved_connections")
    )
    return total - reserved, f"max_connections {total} less {reserved} reserved"


def connection_budget(conn: psycopg.Connection[Any], config: Config) -> tuple[int, str]:
    """The limit the budget is checked against, and where it came from:
    ``--max-db-connections``, else what the server allows; less
    ``--spare-db-connections``."""
    if config.max_db_connections is not None:
        limit, how = config.max_db_connections, "--max-db-connections"
    else:
        limit, how = connection_limit(conn)
    if config.spare_db_connections:
        spare = config.spare_db_connections
        limit, how = limit - spare, f"{how}, less {spare} spare (--spare-db-connections)"
    return limit, how


def per_worker_connections(config: Config) -> int:
    """Connections one worker may hold: every pool it will open, at its maximum.
    (Databases first declared by a module that only workers import are not
    known in the master; see docs/database.md.)"""
    sizes = [db.max_size or config.pool_max_size for db in _dbregistry.in_use()]
    return max(sum(sizes), config.pool_max_size)


def check_budget(workers: int, per_worker: int, limit: int, how: str) -> None:
    """Raise ConfigError when ``workers`` workers with ``per_worker`` connections
    each (their pools at maximum), plus the migration connection, could exceed
    ``limit``."""
    need = workers * per_worker + 1
    if need > limit:
        raise ConfigError(
            f"connection budget exceeded: {workers} workers x pool max size {per_worker} "
            f"+ 1 (migrations) = {need} > {limit} ({how}); lower --workers or --pool-max-size, "
            "or raise --max-db-connections if the server allows more"
        )
