"""pg-supervise's database guarantees for an app served by gunicorn.

In ``gunicorn.conf.py``, last::

    from supervisor.integrations.gunicorn import install
    install(globals(), migrations="migrations/")

:func:`install` defines gunicorn server hooks (and keeps any the file already
defined, calling them in the order pg-supervise calls its own hooks):

=================== ========= ==================================================
gunicorn hook       process   what it does
=================== ========= ==================================================
``on_starting``     master    after yours: wait for PostgreSQL, check the
                              connection budget, run migrations once under the
                              advisory lock; a failure exits (5 for migrations)
                              before any worker is forked
``pre_fork``        master    after yours: the fork guard (close the master's
                              pools, dispose tracked SQLAlchemy engines, close
                              and report stray psycopg connections and pools)
``post_fork``       worker    before yours: drop inherited database objects
                              without I/O
``post_worker_init`` worker   before yours (the app is imported by then): open
                              this worker's pool for each ``Database``
``worker_exit``     worker    after yours: close those pools cleanly
=================== ========= ==================================================

Settings are pg-supervise's (``database_url``, ``migrations``,
``pool_min_size``...): keywords of :func:`install`, else ``SUPERVISE_*``
variables, else ``supervise.toml``; the URL also comes from ``DATABASE_URL``.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from supervisor.database import fork_guard, registry
from supervisor.errors import ConfigError, SupervisorError
from supervisor.logging import get_logger, set_process
from supervisor.settings.config import Config
from supervisor.settings.load import load

__all__ = ["install"]

log = get_logger()

# (gunicorn hook, its arguments, whether the user's version runs before ours)
_HOOKS: dict[str, tuple[tuple[str, ...], bool]] = {
    "on_starting": (("server",), True),
    "pre_fork": (("server", "worker"), True),
    "post_fork": (("server", "worker"), False),
    "post_worker_init": (("worker",), False),
    "worker_exit": (("server", "worker"), True),
}
_MARK = "_supervise_hook"


@dataclass
class _State:
    explicit: dict[str, tuple[Any, str]] = field(default_factory=dict)
    config: Config | None = None
    default_db: Any = None  # the Database for the URL (the registry only holds weak references)


_state = _State()


def install(namespace: dict[str, Any], **settings: Any) -> None:
    """Add pg-supervise's hooks to a gunicorn config module's ``namespace``
    (pass ``globals()``). Keywords are pg-supervise settings, such as
    ``migrations="migrations/"`` or ``database_url=...``; unknown ones raise
    :class:`~supervisor.errors.ConfigError`. Call it at the end of the file: a
    hook defined after it would replace the one it installed (``on_starting``
    then refuses to start and says so)."""
    from supervisor.settings.config import setting_names

    known = setting_names()
    for name in settings:
        if name not in known:
            raise ConfigError(f"install(): unknown setting {name!r}")
    _state.explicit = {name: (value, f"install({name}=)") for name, value in settings.items()}
    for name, (params, user_first) in _HOOKS.items():
        ours: Callable[..., None] = globals()[f"_{name}"]
        current = namespace.get(name)
        if getattr(current, _MARK, False):
            current = getattr(current, "_user", None)  # install() ran twice: rewrap the user's
        namespace[name] = _chain(name, params, ours, current, user_first)


def _chain(
    name: str,
    params: tuple[str, ...],
    ours: Callable[..., None],
    user: Callable[..., Any] | None,
    user_first: bool,
) -> Callable[..., None]:
    steps = [s for s in ((user, ours) if user_first else (ours, user)) if s is not None]

    # gunicorn checks each hook's arity, so the wrapper takes exactly the
    # hook's positional arguments
    def one(a: Any) -> None:
        for step in steps:
            step(a)

    def two(a: Any, b: Any) -> None:
        for step in steps:
            step(a, b)

    hook = one if len(params) == 1 else two
    hook.__name__ = hook.__qualname__ = name
    setattr(hook, _MARK, True)
    setattr(hook, "_user", user)  # noqa: B010 - an attribute of a function
    return hook


# -- master -------------------------------------------------------------------


def _on_starting(server: Any) -> None:
    _route_logs()
    try:
        for name in _HOOKS:
            if not getattr(getattr(server.cfg, name, None), _MARK, False):
                raise ConfigError(
                    f"gunicorn's {name} hook was redefined after install(); call "
                    "install(globals(), ...) at the end of gunicorn.conf.py (it keeps your hooks)"
                )
        target = str(getattr(server.cfg, "wsgi_app", None) or getattr(server.app, "app_uri", None) or "")
        config = load(target or "gunicorn", _state.explicit)
        _state.config = config
        if config.database_url:
            _database_phases(config, int(server.num_workers))
    except SupervisorError as exc:
        # gunicorn would print a traceback and exit 1; say it in one line and
        # exit with pg-supervise's code instead, before any worker exists
        log.error(str(exc), exit_code=int(exc.exit_code))
        if getattr(server, "pidfile", None) is not None:
            server.pidfile.unlink()
        sys.exit(int(exc.exit_code))


def _database_phases(config: Config, workers: int) -> None:
    from supervisor.database import preflight
    from supervisor.database.pools import Database

    if registry.default() is None:
        _state.default_db = Database.configured()
    budget, _ = preflight.run(config, workers)
    if budget.member is not None:
        # gunicorn's arbiter has no loop of ours to renew a lease: the fleet's
        # budget is checked at start, and this master holds no reservation
        budget.member.leave()


def _pre_fork(server: Any, worker: Any) -> None:
    # A stable, small id per live worker (gunicorn's "age" only grows): the
    # lowest one no running worker has, so application_name stays readable.
    taken = {getattr(w, "_supervise_id", None) for w in server.WORKERS.values()}
    worker._supervise_id = next(i for i in range(1, len(taken) + 2) if i not in taken)
    fork_guard.before_fork()


# -- worker -------------------------------------------------------------------


def _post_fork(server: Any, worker: Any) -> None:
    set_process("worker", getattr(worker, "_supervise_id", None))
    fork_guard.after_fork_in_child()


def _post_worker_init(worker: Any) -> None:
    config = _state.config
    if config is None or (not config.database_url and not registry.in_use()):
        return

    def unreachable() -> None:  # from a pool thread: let gunicorn replace this worker
        log.error("database unreachable past --pool-reconnect-timeout; exiting to be replaced")
        worker.alive = False

    for db in registry.in_use():
        db._open(getattr(worker, "_supervise_id", 0), config, unreachable)


def _worker_exit(server: Any, worker: Any) -> None:
    fork_guard.worker_exiting()


# -- logs ---------------------------------------------------------------------


class _ToGunicorn(logging.Handler):
    """Hands our records to gunicorn's error log, whatever handlers it has now
    (it replaces them when its config is reloaded)."""

    def emit(self, record: logging.LogRecord) -> None:
        logging.getLogger("gunicorn.error").handle(record)


def _render(_: Any, __: str, event: MutableMapping[str, Any]) -> str:
    text = str(event.pop("event", ""))
    for key in ("role", "worker_id", "pid", "level", "logger"):
        event.pop(key, None)
    exc = event.pop("exception", None)
    fields = " ".join(f"{k}={v}" for k, v in event.items())
    return " ".join(p for p in (text, fields) if p) + (f"\n{exc}" if exc else "")


def _route_logs() -> None:
    """Our lines go to gunicorn's error log, unless the app set up structlog."""
    import structlog

    if structlog.is_configured():
        return
    ours = logging.getLogger("supervisor")
    if not any(isinstance(h, _ToGunicorn) for h in ours.handlers):
        ours.addHandler(_ToGunicorn())
    ours.propagate = False
    ours.setLevel(os.environ.get("SUPERVISE_LOG_LEVEL", "info").upper())
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.stdlib.add_log_level,
            structlog.processors.format_exc_info,
            _render,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
