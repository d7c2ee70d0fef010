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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from supervisor.database import appname, registry, url_check
from supervisor.database.checked_pool import AsyncCheckedPool, CheckedPool
from supervisor.errors import ConfigError, ForkSafetyError, WorkerBootError
from supervisor.logging import get_logger
from supervisor.redact import redact_secret

if TYPE_CHECKING:
    from supervisor.settings.config import Config
    from supervisor.worker.admission import Admission

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
        registry.register(self)

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
            url_check.validate(url, f"Database {self.name!r}")
        return {
            "conninfo": url,
            "name": f"{self.name}-w{worker_id}",
            "min_size": min_size,
            "max_size": max(min_size, cfg.pool_max_size if self._max_size is None else self._max_size),
            "kwargs": {
                "application_name": appname.application_name(cfg, f"worker-{worker_id}"),
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

    async def _open_async(
        self,
        worker_id: int,
        config: Config,
        on_unreachable: Callable[[], None],
        admission: Admission | None = None,
    ) -> None:
        """Open worker ``worker_id``'s async pool, in the running event loop;
        with ``admission``, its checkouts queue in a gate of the worker's
        managed queue (worker/admission.py)."""
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
            gate=admission.gate(settings["max_size"]) if admission is not None else None,
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
