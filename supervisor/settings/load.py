"""Reading the settings: defaults, then a config file, the environment and
the command line (or ``Supervisor(...)`` keywords), each value converted and
checked against its declaration in :mod:`supervisor.settings.config`."""

from __future__ import annotations

import difflib
import math
import os
import tomllib
from collections.abc import Callable, Mapping, MutableMapping
from pathlib import Path
from typing import Any

from supervisor.errors import ConfigError
from supervisor.settings.config import Config, env_name, settings
from supervisor.settings.declare import _FALSE, _TRUE, CONFIG_FILE, Setting, describe_range


def _suggest(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def _from_text(name: str, meta: Setting, raw: str, origin: str) -> Any:
    """Convert a string from the environment or command line."""
    text = raw.strip()
    if meta.kind == "int":
        try:
            value: Any = int(text)
        except ValueError:
            raise ConfigError(f"{name}: expected a whole number, got {raw!r} (from {origin})") from None
    elif meta.kind == "float":
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"{name}: expected a number of seconds, got {raw!r} (from {origin})") from None
    elif meta.kind == "bool":
        low = text.lower()
        if low not in _TRUE | _FALSE:
            raise ConfigError(f"{name}: expected true or false, got {raw!r} (from {origin})")
        value = low in _TRUE
    elif meta.kind == "list":
        value = tuple(part.strip() for part in text.split(",") if part.strip())
    else:
        value = text
    return _check(name, meta, value, origin)


def _check(name: str, meta: Setting, value: Any, origin: str) -> Any:
    """Type- and range-check a value that is already a Python object."""
    if value is None and meta.kind == "str":
        return None
    if meta.kind == "list":
        if (
            isinstance(value, str)
            or not isinstance(value, list | tuple)
            or not all(isinstance(v, str) for v in value)
        ):
            raise ConfigError(f"{name}: expected a list of strings, got {value!r} (from {origin})")
        return tuple(value)
    expected: tuple[type, ...]
    if meta.kind == "int":
        expected = (int,)
    elif meta.kind == "float":
        expected = (int, float)
    elif meta.kind == "bool":
        expected = (bool,)
    else:
        expected = (str,)
    # bool is an int in Python; 'workers = true' is still a mistake.
    if not isinstance(value, expected) or (meta.kind != "bool" and isinstance(value, bool)):
        raise ConfigError(
            f"{name}: expected {meta.kind}, got {type(value).__name__} {value!r} (from {origin})"
        )
    if meta.kind == "float":
        value = float(value)
        if not math.isfinite(value):  # nan compares false with everything: it would pass any range
            raise ConfigError(
                f"{name}: must be a finite number of seconds, got {value!r} (from {origin}); "
                f"allowed {describe_range(meta)}"
            )
    if (meta.minimum is not None and value < meta.minimum) or (
        meta.maximum is not None and value > meta.maximum
    ):
        raise ConfigError(f"{name}: must be {describe_range(meta)}, got {value!r} (from {origin})")
    if meta.choices and value not in meta.choices:
        raise ConfigError(
            f"{name}: must be one of {', '.join(meta.choices)}, got {value!r} (from {origin})"
            + _suggest(value, list(meta.choices))
        )
    return value


def find_config_file(explicit: str | None, cwd: Path) -> tuple[Path, str] | None:
    """The file to read and the table in it ('' for the top level)."""
    if explicit:
        path = Path(explicit)
        if not path.is_absolute():
            path = cwd / path
        if not path.is_file():
            raise ConfigError(f"config: file not found: {explicit}")
        return path, "tool.supervise" if path.name == "pyproject.toml" else ""
    own = cwd / CONFIG_FILE
    if own.is_file():
        return own, ""
    pyproject = cwd / "pyproject.toml"
    if pyproject.is_file():
        try:
            data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError):
            return None  # not ours to judge; it only matters if it had our table
        if isinstance(data.get("tool"), dict) and "supervise" in data["tool"]:
            return pyproject, "tool.supervise"
    return None


def read_config_file(path: Path, table: str) -> dict[str, Any]:
    try:
        data: Any = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"config: cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config: {path.name} is not valid TOML: {exc}") from None
    for part in filter(None, table.split(".")):
        data = data.get(part, {}) if isinstance(data, dict) else {}
    if not isinstance(data, dict):
        raise ConfigError(f"config: [{table}] in {path.name} must be a table")
    return {key.replace("-", "_"): value for key, value in data.items()}


# The settings that find a running master: all a control command needs.
LOCATING = ("pid", "control_socket")


def _file_settings(
    explicit: Mapping[str, tuple[Any, str]], environ: Mapping[str, str], cwd: Path
) -> tuple[tuple[Path, str] | None, dict[str, Any], str]:
    """The config file (if any), its values and its label ('supervise.toml')."""
    config_path = explicit.get("config", (None, ""))[0] or environ.get(env_name("config")) or None
    found = find_config_file(config_path, cwd)
    if not found:
        return None, {}, ""
    path, table = found
    return found, read_config_file(path, table), path.name + (f" [{table}]" if table else "")


def _env_file(
    explicit: Mapping[str, tuple[Any, str]],
    environ: Mapping[str, str],
    file_values: Mapping[str, Any],
    found: tuple[Path, str] | None,
    cwd: Path,
) -> tuple[Mapping[str, str], set[str], str]:
    """Apply the env file, if one is named; returns the environment to read, the
    variables whose value came from the file, and the file as the user named it."""
    env_file, env_origin = explicit.get("env_file", (None, "--env-file"))
    base = cwd
    if not env_file and environ.get(env_name("env_file"), "").strip():
        env_file, env_origin = environ[env_name("env_file")].strip(), f"env {env_name('env_file')}"
    if not env_file and found and isinstance(file_values.get("env_file"), str):
        # named in a config file: relative to that file, as a reader of the file expects
        env_file, env_origin, base = file_values["env_file"], found[0].name, found[0].parent
    if not env_file:
        return environ, set(), ""
    from supervisor.settings import envfile

    if environ is not os.environ:
        environ = dict(environ)  # a caller's mapping is not ours to change
    assert isinstance(environ, MutableMapping)
    taken = envfile.apply(base / str(env_file), environ, env_origin)
    return environ, taken, str(env_file)


def load(
    target: str,
    explicit: Mapping[str, tuple[Any, str]] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    cross_checks: bool = True,
) -> Config:
    """Build the effective :class:`Config`.

    ``explicit`` holds values given on the command line or as keywords, each
    with its origin (``--workers`` or ``Supervisor(workers=)``); they win over
    ``SUPERVISE_*`` variables (the real environment's, then an env file's),
    which win over the config file, which wins over defaults. Raises
    :class:`ConfigError` naming the setting and its origin.
    ``cross_checks=False`` skips the rules between settings (``supervise status
    --fleet`` from a shell without the master's other settings).
    """
    explicit = dict(explicit or {})
    environ = os.environ if environ is None else environ
    cwd = cwd or Path.cwd()
    known = dict((f.name, meta) for f, meta in settings())

    for name in explicit:
        if name not in known:
            raise ConfigError(f"unknown setting {name!r}" + _suggest(name, list(known)))

    found, file_values, file_label = _file_settings(explicit, environ, cwd)
    for key in file_values:
        if key not in known or not known[key].in_file:
            raise ConfigError(
                f"{file_label}: unknown setting {key!r}"
                + _suggest(key, [n for n, m in known.items() if m.in_file])
            )
    environ, from_env_file, env_file = _env_file(explicit, environ, file_values, found, cwd)

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, meta in known.items():
        env_var = env_name(name)
        env_value = environ.get(env_var, "")
        for other in meta.also_env:
            if not env_value.strip() and environ.get(other, "").strip():
                env_var, env_value = other, environ[other]
        if name in explicit:
            value, origin = explicit[name]
            values[name] = _check(name, meta, value, origin)
            sources[name] = origin
        elif env_value.strip():
            origin = f"env file {env_file}: {env_var}" if env_var in from_env_file else f"env {env_var}"
            values[name] = _from_text(name, meta, env_value, origin)
            sources[name] = origin
        elif name in file_values:
            values[name] = _check(name, meta, file_values[name], file_label)
            sources[name] = file_label
        else:
            sources[name] = "default"
    if found:
        values["config"] = str(found[0])
        sources.setdefault("config", "default")
    config = Config(target=target, sources=sources, **values)
    if cross_checks:
        _validate(config)
    return config


def locating(
    explicit: Mapping[str, tuple[Any, str]] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    warn: Callable[[str], None] = lambda message: None,
) -> Config:
    """Only the settings that find a running master (``LOCATING``), read the way
    the master read them. The rest of the config file and environment is not
    looked at: a file that broke while the master runs must not keep
    ``supervise status`` or ``stop`` from reaching it. A file (or env file) that
    cannot be read is passed to ``warn`` and left out; the command line is
    checked as always."""
    explicit = dict(explicit or {})
    environ = os.environ if environ is None else environ
    cwd = cwd or Path.cwd()
    known = dict((f.name, meta) for f, meta in settings())
    # a -c FILE or SUPERVISE_CONFIG that names nothing is the user's mistake, reported now
    found = find_config_file(explicit.get("config", (None, ""))[0] or environ.get(env_name("config")), cwd)
    file_values: dict[str, Any] = {}
    file_label = ""
    if found:
        try:
            file_values = read_config_file(*found)
            file_label = found[0].name + (f" [{found[1]}]" if found[1] else "")
        except ConfigError as exc:
            warn(f"{exc}; looking for the master without it")
            found = None
    try:
        environ, from_env_file, env_file = _env_file(explicit, environ, file_values, found, cwd)
    except ConfigError as exc:
        if "env_file" in explicit:
            raise
        warn(f"{exc}; looking for the master without it")
        from_env_file, env_file = set(), ""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name in ("config", "env_file", *LOCATING):
        meta = known[name]
        env_var = env_name(name)
        if name in explicit:
            value, origin = explicit[name]
            values[name] = _check(name, meta, value, origin)
            sources[name] = origin
        elif environ.get(env_var, "").strip():
            origin = f"env file {env_file}: {env_var}" if env_var in from_env_file else f"env {env_var}"
            values[name] = _from_text(name, meta, environ[env_var], origin)
            sources[name] = origin
        elif name in file_values:
            try:
                values[name] = _check(name, meta, file_values[name], file_label)
            except ConfigError as exc:
                warn(f"{exc}; looking for the master without it")
                continue
            sources[name] = file_label
    if found:
        values["config"] = str(found[0])
    return Config(sources=sources, **values)


def _validate(config: Config) -> None:
    """Rules that involve more than one setting."""
    if config.pool_min_size > config.pool_max_size:
        raise ConfigError(
            f"pool_min_size ({config.pool_min_size}, from {config.sources['pool_min_size']}) is "
            f"larger than pool_max_size ({config.pool_max_size}, from "
            f"{config.sources['pool_max_size']})"
        )
    if config.database_url:
        from supervisor.database import url_check  # imports psycopg: only when there is a database

        url_check.validate(config.database_url, config.sources.get("database_url", "default"))
    root = config.root_path
    if root and (not root.startswith("/") or any(c in root for c in "?# ")):
        raise ConfigError(
            f"root_path: expected a URL path such as /app, got {config.root_path!r} "
            f"(from {config.sources['root_path']})"
        )
    from supervisor.settings.workers import refork_schedule

    refork_schedule(config, config.http)  # a schedule that is not one is exit 2 here
    # A start's rule: `supervise migrate` (no target) says it itself, and --check needs no database.
    if config.target and config.migrations and config.migrate and not config.database_url:
        raise ConfigError(
            "migrations are set but no database: pass --database-url or set DATABASE_URL (or --no-migrate)"
        )


def from_text(name: str, raw: str, origin: str) -> Any:
    """Convert a command-line string for setting ``name`` (used by the CLI)."""
    meta = dict((f.name, m) for f, m in settings())[name]
    return _from_text(name, meta, raw, origin)
