"""Resolve ``module:attr`` targets and tell what kind of thing they are.

Errors are :class:`TargetError` with one line that says what to fix: a typo in
the module or attribute gets a suggestion, and an exception raised *inside*
the user's module is shown as that exception, with its file and line.
"""

from __future__ import annotations

import difflib
import enum
import importlib
import importlib.util
import inspect
import pkgutil
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from supervisor.errors import TargetError


class Kind(enum.Enum):
    MAIN = "main"
    ASGI = "asgi"
    WSGI = "wsgi"


@dataclass(frozen=True)
class Target:
    """A resolved target: the object and how workers run it."""

    spec: str
    obj: Callable[..., Any]
    kind: Kind
    is_async: bool


def split(spec: str) -> tuple[str, str]:
    module, sep, attr = spec.partition(":")
    if not sep or not module or not attr:
        raise TargetError(f"target {spec!r} must look like 'module:attribute', e.g. 'app:main'")
    return module, attr


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    user = [f for f in frames if "importlib" not in f.filename]
    if not user:
        return ""
    last = user[-1]
    return f" ({last.filename}, line {last.lineno})"


def _missing_module(module: str) -> TargetError:
    top = module.split(".")[0]
    names = sorted({m.name for m in pkgutil.iter_modules(sys.path[:1] or ["."])})
    hint = difflib.get_close_matches(top, names, n=1)
    suggestion = f"; did you mean '{hint[0]}'?" if hint and hint[0] != top else ""
    return TargetError(f"could not import module {module!r}: no such module{suggestion}")


def check_importable(spec: str) -> None:
    """Fail early if the module cannot be found, without executing it.

    Used by the master when it must not import the target (no preload): a
    typo then exits 4 before any worker is forked.
    """
    module, _ = split(spec)
    try:
        found = importlib.util.find_spec(module)
    except ModuleNotFoundError:
        found = None
    except Exception as exc:  # a parent package raised while being imported
        raise TargetError(f"importing {module!r} failed: {type(exc).__name__}: {exc}{_where(exc)}") from exc
    if found is None:
        raise _missing_module(module)


def load(spec: str) -> Any:
    """Import ``module`` and walk the dotted ``attr`` path."""
    module_name, attr = split(spec)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only a missing *target* module is our user's typo; any other missing
        # module was imported by their code and its own error is the useful one.
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise _missing_module(module_name) from exc
        raise TargetError(f"importing {module_name!r} failed: {exc}{_where(exc)}") from exc
    except SyntaxError as exc:
        raise TargetError(
            f"importing {module_name!r} failed: SyntaxError: {exc.msg} ({exc.filename}, line {exc.lineno})"
        ) from exc
    except Exception as exc:
        raise TargetError(
            f"importing {module_name!r} failed: {type(exc).__name__}: {exc}{_where(exc)}"
        ) from exc
    obj: Any = module
    walked = module_name
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(obj) if not n.startswith("_")]
            hint = difflib.get_close_matches(part, names, n=1)
            suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
            raise TargetError(f"module {walked!r} has no attribute {part!r}{suggestion}")
        obj = getattr(obj, part)
        walked = f"{walked}.{part}" if walked != module_name else f"{module_name}:{part}"
    return obj


def _positional(fn: Callable[..., Any]) -> int | None:
    """How many positional arguments ``fn`` takes, or None if unknowable."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    count = 0
    for p in sig.parameters.values():
        if p.kind is p.VAR_POSITIONAL:
            return None
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty:
            count += 1
    return count


def _is_async(obj: Any) -> bool:
    if inspect.iscoroutinefunction(obj):
        return True
    call = getattr(obj, "__call__", None)  # noqa: B004 - instances with async __call__
    return call is not None and not inspect.isfunction(obj) and inspect.iscoroutinefunction(call)


def classify(spec: str, obj: Any, interface: str = "auto") -> Target:
    """Decide how to run ``obj``; ``interface`` other than ``auto`` is trusted."""
    if not callable(obj):
        raise TargetError(f"target {spec!r} is a {type(obj).__name__}, not a callable")
    is_async = _is_async(obj)
    if interface != "auto":
        kind = Kind(interface)
    else:
        n = _positional(obj)
        if is_async and n == 3:
            kind = Kind.ASGI
        elif inspect.isclass(obj) and is_async and _positional(obj.__call__) == 3:
            kind = Kind.ASGI  # ASGI 2: a class built per scope, awaited with (receive, send)
        elif not is_async and not inspect.isclass(obj) and n == 2:
            kind = Kind.WSGI
        elif n == 1 and not inspect.isclass(obj):
            kind = Kind.MAIN
        elif n == 0 and not inspect.isclass(obj):
            raise TargetError(
                f"target {spec!r} takes no arguments: if it builds the app (an app factory), "
                "pass --factory to call it; a main target is 'def main(worker)'"
            )
        else:
            raise TargetError(
                f"cannot tell what kind of target {spec!r} is; a main target is "
                "'def main(worker)'; pass --interface asgi|wsgi|main to say so"
            )
    if kind is Kind.MAIN and _positional(obj) not in (1, None):
        raise TargetError(f"main target {spec!r} must take one argument, the Worker: def main(worker)")
    return Target(spec=spec, obj=obj, kind=kind, is_async=is_async)


def resolve(spec: str, interface: str = "auto", factory: bool = False) -> Target:
    """Import and classify ``spec``; with ``factory``, call it (no arguments) for the app."""
    obj = load(spec)
    if factory:
        if not callable(obj):
            raise TargetError(f"--factory: {spec!r} is a {type(obj).__name__}, not a callable")
        try:
            obj = obj()
        except Exception as exc:
            raise TargetError(
                f"--factory: calling {spec!r} raised {type(exc).__name__}: {exc}{_where(exc)}"
            ) from exc
    return classify(spec, obj, interface)
