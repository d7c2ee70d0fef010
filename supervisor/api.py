"""``Supervisor``: the programmatic entry point, and what the CLI runs."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from supervisor import _clash
from supervisor import logging as slog
from supervisor.errors import ConfigError, ExitCode, SupervisorError
from supervisor.hooks import Hooks
from supervisor.master.loop import Master
from supervisor.settings.config import Config, setting_names
from supervisor.settings.load import load
from supervisor.target import Target, classify

if TYPE_CHECKING:
    from supervisor.database.pools import Database

F = TypeVar("F", bound=Callable[..., Any])


class Supervisor:
    """Run ``target`` in N supervised worker processes.

    ``target`` is ``"module:attr"`` or the callable itself; keywords are the
    settings of the command line (``workers=4``, ``timeout=10``, ...) and win
    over ``SUPERVISE_*`` variables and the config file. Hooks are registered
    with the decorators below. :meth:`run` blocks until the supervisor stops
    and returns the exit code; it never raises for a failure it can name.
    """

    def __init__(
        self, target: str | Callable[..., Any], *, database: Database | None = None, **settings: Any
    ) -> None:
        known = setting_names()
        for name in settings:
            if name not in known:
                import difflib

                close = difflib.get_close_matches(name, known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ConfigError(f"unknown setting {name!r}{hint}")
        self._target_obj: Callable[..., Any] | None = None
        if isinstance(target, str):
            self._spec = target
        elif callable(target):
            self._target_obj = target
            self._spec = f"{target.__module__}:{getattr(target, '__qualname__', repr(target))}"
        else:
            raise TypeError(f"target must be 'module:attr' or a callable, not {type(target).__name__}")
        self._explicit: dict[str, tuple[Any, str]] = {
            name: (value, f"Supervisor({name}=)") for name, value in settings.items()
        }
        self.hooks = Hooks()
        self.database = database

    @classmethod
    def _from_cli(cls, target: str, explicit: Mapping[str, tuple[Any, str]]) -> Supervisor:
        sup = cls(target)
        sup._explicit = dict(explicit)
        return sup

    def load_config(self) -> Config:
        """The effective configuration (re-read on HUP). Raises ConfigError."""
        return load(self._spec, self._explicit)

    # -- hook decorators: each registers and returns the function ------------
    def on_starting(self, fn: F) -> F:
        return self._hook("on_starting", fn)

    def before_migrate(self, fn: F) -> F:
        return self._hook("before_migrate", fn)

    def after_migrate(self, fn: F) -> F:
        return self._hook("after_migrate", fn)

    def when_ready(self, fn: F) -> F:
        return self._hook("when_ready", fn)

    def before_fork(self, fn: F) -> F:
        return self._hook("before_fork", fn)

    def after_fork(self, fn: F) -> F:
        return self._hook("after_fork", fn)

    def worker_ready(self, fn: F) -> F:
        return self._hook("worker_ready", fn)

    def worker_exit(self, fn: F) -> F:
        return self._hook("worker_exit", fn)

    def child_exit(self, fn: F) -> F:
        return self._hook("child_exit", fn)

    def on_reload(self, fn: F) -> F:
        return self._hook("on_reload", fn)

    def on_exit(self, fn: F) -> F:
        return self._hook("on_exit", fn)

    def _hook(self, name: str, fn: F) -> F:
        self.hooks.register(name, fn)
        return fn

    # -- running --------------------------------------------------------------
    def run(self) -> int:
        """Supervise until stopped; return the process exit code (see docs/reference.md#exit-codes)."""
        try:
            _clash.check()
            config = self.load_config()
        except SupervisorError as exc:
            print(f"supervise: error: {exc}", file=sys.stderr)
            return int(exc.exit_code)
        slog.configure(config.log_level, config.log_format)
        log = slog.get_logger()
        try:
            hooks = self.hooks.copy()
            if config.hooks:
                hooks.load_module(config.hooks)
            target: Target | None = None
            if self._target_obj is not None:
                target = classify(self._spec, self._target_obj, config.interface)
            database = self.database
            if database is None and config.database_url:
                from supervisor.database.pools import Database

                database = Database.configured()
            Master(config, hooks, target=target, reload_config=self.load_config, database=database).run()
        except SupervisorError as exc:
            log.error(
                str(exc), exit_code=int(exc.exit_code), exc_info=exc if config.log_level == "debug" else None
            )
            return int(exc.exit_code)
        except Exception:
            log.exception("internal error", exit_code=int(ExitCode.INTERNAL))
            return int(ExitCode.INTERNAL)
        log.info("stopped", exit_code=0)
        return 0
