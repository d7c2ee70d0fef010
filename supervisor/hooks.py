"""Lifecycle hooks: names, where and when each runs, what a failure does.

A hook takes one context argument: the :class:`~supervisor.context.MasterInfo`
in the master, a :class:`~supervisor.context.WorkerInfo` for master hooks about
one worker, the :class:`~supervisor.worker.Worker` inside a worker. Built-in
steps (the database layer's, for instance) register with ``builtin=True``:
they run before user hooks when a process sets up and after them when it tears
down, so a user's ``after_fork`` can already use what a built-in opened.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from supervisor.errors import HookError, TargetError
from supervisor.logging import get_logger

HookFn = Callable[[Any], object]

log = get_logger()


@dataclass(frozen=True)
class HookSpec:
    """A hook: where and when it runs, and what its failure does.

    ``on_failure`` is the policy in words (for the reference); ``teardown``
    hooks run user functions before built-ins and every one of them even if
    some fail, and so do ``log_failures`` hooks: their failures are logged and
    the process goes on. Any other hook raises :class:`HookError` at its first
    failure, for its caller to apply ``on_failure``.
    """

    name: str
    process: Literal["master", "worker"]
    moment: str
    on_failure: str
    teardown: bool = False
    log_failures: bool = False


SPECS: tuple[HookSpec, ...] = (
    HookSpec(
        "on_starting", "master", "after config is loaded, before anything else", "start aborted, exit 1"
    ),
    HookSpec("before_migrate", "master", "before migrations run (once per start)", "start aborted, exit 1"),
    HookSpec("after_migrate", "master", "after migrations succeeded", "start aborted, exit 1"),
    HookSpec(
        "when_ready",
        "master",
        "once every initial worker has reported ready",
        "logged; the supervisor keeps running",
        log_failures=True,
    ),
    HookSpec(
        "before_fork",
        "master",
        "just before each worker is forked",
        "that worker is not forked: a boot failure at start, a crash later",
    ),
    HookSpec(
        "after_fork",
        "worker",
        "first thing in a new worker, signals already reset",
        "the worker fails to boot",
    ),
    HookSpec(
        "worker_ready",
        "worker",
        "after the target is loaded, just before the worker reports ready",
        "the worker fails to boot",
    ),
    HookSpec(
        "worker_exit",
        "worker",
        "after the target returned or stopped, before the process exits",
        "logged; the worker still exits",
        teardown=True,
        log_failures=True,
    ),
    HookSpec(
        "child_exit",
        "master",
        "after a worker process was reaped",
        "logged; supervision goes on",
        teardown=True,
        log_failures=True,
    ),
    HookSpec(
        "on_reload",
        "master",
        "on HUP, after the config file was re-read, before new workers start",
        "reload aborted; running workers are kept",
    ),
    HookSpec(
        "on_exit",
        "master",
        "last thing before the master exits",
        "logged; the exit code is unchanged",
        teardown=True,
        log_failures=True,
    ),
)
NAMES: tuple[str, ...] = tuple(s.name for s in SPECS)
BY_NAME = {s.name: s for s in SPECS}


# gunicorn's server hooks, for a hooks module carried over from a gunicorn.conf.py
GUNICORN = {
    "pre_fork": "before_fork",
    "post_fork": "after_fork",
    "post_worker_init": "worker_ready",
    "worker_int": None,
    "worker_abort": None,
    "pre_exec": None,
    "pre_request": None,
    "post_request": None,
    "nworkers_changed": None,
}


def _not_a_hook(name: str) -> str:
    """What to say about a function of a hooks module named like a hook but
    not one ('' for a helper function: one not close to any hook's name)."""
    if name in GUNICORN:
        ours = GUNICORN[name]
        if ours is None:
            return f": gunicorn's {name} has no counterpart here (hooks are: {', '.join(NAMES)})"
        return f": gunicorn's {name} is {ours} here (it takes one argument)"
    if name.startswith("_"):
        return ""
    close = difflib.get_close_matches(name, NAMES, n=1, cutoff=0.8)
    return f"; did you mean {close[0]!r}? (a helper's name may start with _)" if close else ""


def describe(fn: HookFn) -> str:
    module = getattr(fn, "__module__", None) or "?"
    name = getattr(fn, "__qualname__", None) or repr(fn)
    return f"{module}:{name}"


class Hooks:
    """Hook functions by name, built-ins kept apart from user hooks."""

    def __init__(self) -> None:
        self._builtin: dict[str, list[HookFn]] = {n: [] for n in NAMES}
        self._user: dict[str, list[HookFn]] = {n: [] for n in NAMES}

    def register(self, name: str, fn: HookFn, *, builtin: bool = False) -> HookFn:
        if name not in BY_NAME:
            raise ValueError(f"unknown hook {name!r}; hooks are: {', '.join(NAMES)}")
        if not callable(fn):
            raise TypeError(f"hook {name} must be callable, got {type(fn).__name__}")
        (self._builtin if builtin else self._user)[name].append(fn)
        return fn

    def load_module(self, module_name: str) -> None:
        """Register every function of ``module_name`` named after a hook. A
        function of the module named almost like one (``on_startin``), or after
        a gunicorn hook, would never run: :class:`TargetError`, as a misspelt
        target is."""
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            raise TargetError(
                f"hooks module {module_name!r} could not be imported: {type(exc).__name__}: {exc}"
            ) from exc
        for name in NAMES:
            fn = getattr(module, name, None)
            if fn is not None:
                self.register(name, fn)
        for name, fn in vars(module).items():
            if name not in BY_NAME and inspect.isfunction(fn) and fn.__module__ == module.__name__:
                hint = _not_a_hook(name)
                if hint:
                    raise TargetError(f"hooks module {module_name!r}: {name} is not a hook{hint}")

    def functions(self, name: str) -> list[HookFn]:
        builtin, user = self._builtin[name], self._user[name]
        return user + builtin if BY_NAME[name].teardown else builtin + user

    def run(self, name: str, context: Any) -> None:
        """Call every function for ``name`` in order, under the hook's policy:
        a ``log_failures`` hook logs each failure and goes on; any other raises
        :class:`HookError` at the first (its caller applies ``on_failure``)."""
        keep_going = BY_NAME[name].log_failures
        for fn in self.functions(name):
            try:
                fn(context)
            except Exception as exc:
                if not keep_going:
                    raise HookError(name, describe(fn), exc) from exc
                log.error("hook failed", hook=name, function=describe(fn), exc_info=exc)

    def copy(self) -> Hooks:
        new = Hooks()
        for n in NAMES:
            new._builtin[n] = list(self._builtin[n])
            new._user[n] = list(self._user[n])
        return new
