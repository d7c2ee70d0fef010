"""The ``supervise`` command. Each error carries its exit code (errors.py);
this module and ``Supervisor.run`` (``api.py``) are the two boundaries that report
an error as one line and turn it into the process's exit code.

Options are generated from the settings declared in :mod:`supervisor.settings.config`,
so the command line, ``SUPERVISE_*`` variables and config keys cannot drift.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from supervisor import _clash
from supervisor.cli_habits import VALUE_HABITS, HabitChoice, accept_habits
from supervisor.errors import ConfigError, MigrationError, SupervisorError
from supervisor.hooks import Hooks
from supervisor.settings.config import Config, env_name, option_name, settings
from supervisor.settings.load import from_text, load, locating
from supervisor.target import Kind, resolve


class _DefaultRun(click.Group):
    """``supervise app:main`` means ``supervise run app:main``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h", "--version"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


class _GroupedCommand(click.Command):
    """``--help`` lists options under the group their setting declares
    (Workers, Serving, Database...), with the command's own options first."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        group_of = {f.name: meta.group for f, meta in settings()}
        sections: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx) if isinstance(param, click.Option) else None
            if record is not None:
                group = group_of.get(param.name or "", "Options")
                sections.setdefault(group, []).append(record)
        ordered = ["Options", *dict.fromkeys(group_of.values())]
        for group in ordered:
            if group in sections:
                with formatter.section(group):
                    formatter.write_dl(sections[group])


def _setting_options(*groups: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add an option per declared setting of ``groups`` (every setting when none are named)."""
    return lambda fn: _add_setting_options(fn, groups or None)


def _add_setting_options(fn: Callable[..., Any], groups: tuple[str, ...] | None) -> Callable[..., Any]:
    for f, meta in reversed(list(settings())):
        if groups is not None and meta.group not in groups:
            continue
        kwargs: dict[str, Any] = {
            "default": None,
            "help": meta.help + f" [env: {env_name(f.name)}]",
        }
        if meta.kind == "choice":
            kwargs["type"] = HabitChoice(meta.choices, VALUE_HABITS.get(f.name, {}))
        elif meta.kind == "bool":
            kwargs["is_flag"] = True
        elif meta.kind == "list":
            kwargs.update(multiple=True, metavar=meta.metavar or "TEXT")
        else:
            kwargs["metavar"] = meta.metavar or "TEXT"
        fn = click.option(*meta.flags, f.name, **kwargs)(fn)
    return fn


def _explicit(options: dict[str, Any]) -> dict[str, tuple[Any, str]]:
    out: dict[str, tuple[Any, str]] = {}
    for f, meta in settings():
        value = options.get(f.name)
        if value is None or value == ():
            continue
        origin = option_name(meta)
        if meta.kind in ("int", "float", "str"):
            value = from_text(f.name, value, origin)
        out[f.name] = (value, origin)
    return out


def _app_dir() -> None:
    # Like gunicorn and uvicorn: 'app:main' is found in the current directory.
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)


def _fail(exc: SupervisorError, debug: bool) -> None:
    if debug:
        import traceback

        traceback.print_exception(exc)
    click.echo(f"supervise: error: {exc}", err=True)
    sys.exit(int(exc.exit_code))


def _debug(options: dict[str, Any]) -> bool:
    return (options.get("log_level") or os.environ.get(env_name("log_level"), "")) == "debug"


_CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(cls=_DefaultRun, context_settings=_CONTEXT)
@click.version_option(
    _clash.own_version(), "--version", prog_name="pg-supervise", message="%(prog)s %(version)s"
)
def cli() -> None:
    """Supervise N worker processes of a PostgreSQL application.

    \b
    supervise app:main -w 4           run main(worker) in 4 supervised workers
    supervise app:app -b 0.0.0.0:80   serve an ASGI or WSGI app
    supervise check app:main          show the effective config; fork nothing
    supervise migrate                 apply pending migrations once and exit

    Every option can also come from a SUPERVISE_* variable or a config file
    (--config); `supervise run --help` lists them by group.
    """


@cli.command("run", cls=_GroupedCommand)
@click.argument("target")
@_setting_options()
@accept_habits
def run_command(target: str, **options: Any) -> None:
    """Run TARGET (module:attr) under supervision."""
    from supervisor.api import Supervisor

    _app_dir()
    try:
        explicit = _explicit(options)
    except SupervisorError as exc:
        _fail(exc, _debug(options))
    sys.exit(Supervisor._from_cli(target, explicit).run())


@cli.command("check", cls=_GroupedCommand)
@click.argument("target")
@_setting_options()
@accept_habits
def check_command(target: str, **options: Any) -> None:
    """Validate the config and TARGET, print the effective config. Forks nothing.

    It finds what a start would find before touching the database: a bad
    setting, a target that does not import or is not runnable, a hooks module
    that does not load or misnames a hook, a socket that cannot be bound (in
    use, no permission).
    It does not connect to PostgreSQL.
    """
    _app_dir()
    try:
        _clash.check()
        config = load(target, _explicit(options))
        resolved = resolve(target, config.interface, config.factory)
        if config.hooks:
            Hooks().load_module(config.hooks)
        _check_sockets(config, resolved.kind)
    except SupervisorError as exc:
        _fail(exc, _debug(options))
    kind = resolved.kind.value + (" (async)" if resolved.is_async else "")
    click.echo(f"target: {target}  [{kind}]")
    rows = [(name, "-" if value is None else str(value), source) for name, value, source in config.describe()]
    width = max(len(r[0]) for r in rows)
    vwidth = max(len(r[1]) for r in rows)
    for name, value, source in rows:
        click.echo(f"  {name:<{width}}  {value:<{vwidth}}  {source}")


def _check_sockets(config: Config, kind: Kind) -> None:
    """Bind, then close, what a start would bind. Not when a running master
    checks its own new code before a re-exec: it holds those sockets."""
    from supervisor.http import engines, sockets
    from supervisor.shared import reexec
    from supervisor.worker.runners import listens

    sockets.validate(config)
    engines.check(config)
    if os.environ.get(reexec.CHECKING_NEW_CODE):
        return
    if config.bind or config.interface in ("asgi", "wsgi") or listens(kind):
        sockets.close(sockets.bind(config), unlink=True)
    if config.health_bind:
        sockets.close([sockets.health(config.health_bind)])


@cli.command("migrate", cls=_GroupedCommand)
@click.option(
    "--status",
    "show_status",
    is_flag=True,
    help="List applied, pending and edited migrations; change nothing.",
)
@click.option("--dry-run", is_flag=True, help="Take the lock and say what would be applied.")
@click.option(
    "--check",
    "check_only",
    is_flag=True,
    help="Parse the pending SQL files and list each operation that would lock or rewrite a live table "
    "or break the code still running (exit 5 if any); apply nothing. Needs pglast "
    "(pip install 'pg-supervise[check]'). Without a database every file counts as pending.",
)
@click.option(
    "--accept-edit",
    type=int,
    metavar="VERSION",
    help="Record the current checksum of an applied migration that was edited on purpose.",
)
@_setting_options("General", "Database", "Migrations", "Logging")
def migrate_command(
    show_status: bool, dry_run: bool, check_only: bool, accept_edit: int | None, **options: Any
) -> None:
    """Apply pending migrations once, then exit (deploy step, Kubernetes Job)."""
    from supervisor import logging as slog
    from supervisor import migrate

    _app_dir()
    try:
        _clash.check()
        config = load("", _explicit(options))
        if not config.migrations:
            raise ConfigError(
                "no migrations: pass --migrations DIR, module:callable or alembic:PATH/alembic.ini"
            )
        if not config.database_url and not check_only:
            raise ConfigError("no database: pass --database-url or set DATABASE_URL")
        slog.configure(config.log_level, config.log_format)
        if check_only:
            _check_migrations(config)
            return
        from supervisor.database.preflight import wait_for_server

        # as at start: a Job launched beside its database waits for it, and a
        # wrong role or password is a config error (exit 2), not a migration one
        wait_for_server(config).close()
        if show_status:
            rows = migrate.status(config)
            for row in rows:
                line = f"{row.version:>6}  {row.state:<8}  {row.file}  {row.applied_at}"
                if row.contract and row.state == "pending":
                    line += f"contract: waits for {row.waits_for}" if row.waits_for else "contract: due now"
                click.echo(line.rstrip())
            if not rows:
                click.echo("no migrations")
            return
        if accept_edit is not None:
            migrate.accept_edit(config, accept_edit)
            return
        migrate.run(config, dry_run=dry_run)
    except SupervisorError as exc:
        _fail(exc, _debug(options))


def _check_migrations(config: Config) -> None:
    """``supervise migrate --check``: one line per finding on stdout, then the verdict."""
    from supervisor import migrate
    from supervisor.migrate import unsafe

    unsafe.require()  # before waiting for a server the check could not use
    if config.database_url:
        from supervisor.database.preflight import wait_for_server

        wait_for_server(config).close()
    findings, files = migrate.unsafe_findings(config)
    for finding in findings:
        click.echo(str(finding))
    if findings:
        raise MigrationError(unsafe.summary(findings, applying=False))
    click.echo(f"no unsafe operations in {files} pending migration{'s' if files != 1 else ''}")


def _control_config(options: dict[str, Any]) -> Config:
    """The settings that locate a running master, resolved as the master
    resolves them (file, SUPERVISE_*, --env-file, options), and nothing else:
    a config file that broke while the master runs is a warning here, not the
    end of the way to ``supervise stop``."""
    return locating(_explicit(options), warn=_warn)


def _warn(message: str) -> None:
    click.echo(f"supervise: warning: {message}", err=True)


def _locate(options: dict[str, Any]) -> Path:
    from supervisor.control import client

    return client.locate(
        _control_config(options), note=lambda message: click.echo(f"supervise: {message}", err=True)
    )


def _control(fn: Callable[..., None]) -> Callable[..., None]:
    """A command that talks to a running master: its errors are one line."""

    def wrapper(**options: Any) -> None:
        try:
            fn(**options)
        except SupervisorError as exc:
            _fail(exc, _debug(options))

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return _setting_options("General", "Control")(wrapper)


@cli.command("status", cls=_GroupedCommand)
@click.option(
    "--fleet",
    "fleet_view",
    is_flag=True,
    help="List the fleet's masters, their reservations and ages, and the headroom left, "
    "read from PostgreSQL.",
)
@click.option("--fleet-name", metavar="NAME", help="With --fleet: only this fleet (default: every fleet).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of a table.")
@_setting_options("General", "Control", "Database", "Migrations")
def status_command(fleet_view: bool, fleet_name: str | None, as_json: bool, **options: Any) -> None:
    """Show the running master's workers: pid, state, age, heartbeat, work done, pool
    sizes; with --fleet, every master that shares the database, read from PostgreSQL,
    and (with --migrations) the contract migrations still pending and whom they wait for."""
    try:
        if fleet_view:
            config = load("", _explicit(options))
            if not config.database_url:
                raise ConfigError("no database: pass --database-url or set DATABASE_URL")
            from supervisor.database import fleet_view as view

            click.echo(view.show(config, fleet_name or config.fleet, as_json))
            return
        from supervisor.control import client

        data = client.call(_locate(options), {"command": "status"})
        data.pop("ok", None)
        click.echo(json.dumps(data) if as_json else "\n".join(client.render_status(data)))
    except SupervisorError as exc:
        _fail(exc, _debug(options))


@cli.command("reload", cls=_GroupedCommand)
@_control
def reload_command(**options: Any) -> None:
    """Reload the running master's workers with new code and config, one at a time (as HUP does)."""
    from supervisor.control import client

    reply = client.call(_locate(options), {"command": "reload"})
    if reply.get("queued"):
        click.echo("reload queued: it starts when the replacement in progress is ready")
    else:
        click.echo(f"reloading {reply.get('workers', 0)} workers; `supervise status` shows the progress")


@cli.command("scale", cls=_GroupedCommand, context_settings={"ignore_unknown_options": True})
@click.argument("workers", metavar="N")
@_control
def scale_command(workers: str, **options: Any) -> None:
    """Set the running master's number of workers to N (or +N / -N), within the connection budget."""
    from supervisor.control import client

    if not workers.lstrip("+-").isdigit():
        raise ConfigError(f"scale: N must be a whole number (or +N / -N), got {workers!r}")
    value: int | str = workers if workers[0] in "+-" else int(workers)
    reply = client.call(_locate(options), {"command": "scale", "workers": value})
    click.echo(f"scaling from {reply['workers_from']} to {reply['workers_to']} workers")


@cli.command("stop", cls=_GroupedCommand)
@click.option("--fast", is_flag=True, help="Stop at once (as QUIT): workers do not finish their work.")
@click.option(
    "--wait",
    "wait",
    type=float,
    default=120.0,
    show_default=True,
    metavar="S",
    help="Wait up to S seconds for the master to exit (0: do not wait).",
)
@_control
def stop_command(fast: bool, wait: float, **options: Any) -> None:
    """Stop the running master: workers finish their work (as TERM does), or at once with --fast."""
    from supervisor.control import client

    reply = client.stop(_locate(options), fast, wait or None)
    done = "stopped" if wait else "stopping"
    click.echo(f"{done}: master {reply.get('pid')} ({reply.get('workers', 0)} workers)")


@cli.command("completion")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion_command(shell: str) -> None:
    """Print the shell completion script: eval "$(supervise completion bash)"."""
    from click.shell_completion import get_completion_class

    completion_class = get_completion_class(shell)
    assert completion_class is not None  # every choice above has one
    click.echo(completion_class(cli, {}, "supervise", "_SUPERVISE_COMPLETE").source())


def main() -> None:
    cli(prog_name="supervise")
