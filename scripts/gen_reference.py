"""Write docs/reference.md from the declarations in the code.

Options come from the fields of ``supervisor.settings.config.Config``, commands and
their own options from the click group in ``supervisor.cli``, hooks from
``supervisor.hooks.SPECS``, exit codes from ``supervisor.errors.ExitCode`` and
the errors from the ``SupervisorError`` classes; ``tests/processes/test_docs_build.py`` fails
when the committed file is out of date.

    python scripts/gen_reference.py          # rewrite docs/reference.md
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import click

from supervisor import errors
from supervisor.cli import cli
from supervisor.errors import ExitCode, SupervisorError
from supervisor.hooks import SPECS
from supervisor.settings.config import env_name, settings
from supervisor.settings.declare import describe_range

PROG = "supervise"
# click's convention: _<PROG>_COMPLETE, upper case, dashes as underscores
COMPLETE_VAR = "_" + PROG.replace("-", "_").upper() + "_COMPLETE"

EXIT_MEANING = {
    ExitCode.OK: "clean stop: a signal, or every `main` worker returned",
    ExitCode.INTERNAL: "unexpected internal error, or an `on_starting` hook failed",
    ExitCode.USAGE: "usage or configuration error: a bad option or config file, the name clash, the "
    "connection budget exceeded, an address already in use, a login the database refused, a database "
    "URL that can never work (malformed, an unknown parameter, a bad port or sslmode)",
    ExitCode.BOOT_FAILED: "a worker failed to boot during start-up (raised, exited or timed out "
    "before it was ready)",
    ExitCode.TARGET: "the target could not be imported or is not a supported kind",
    ExitCode.MIGRATION: "migrations failed or the migration lock timed out",
    ExitCode.CRASH_LOOP: "gave up: a worker slot kept crashing after boot (`--crash-limit`)",
    ExitCode.NOT_RUNNING: "`status`, `reload`, `scale`, `stop`: no master is running there (no pid "
    "file, a pid that has exited, nothing listening on the control socket)",
}

SIGNALS = [
    (
        "TERM, INT",
        "graceful stop: workers get TERM and `worker.stopping` is set; after "
        "`--graceful-timeout` they are killed. A second TERM/INT makes it fast.",
    ),
    ("QUIT", "fast stop: workers get QUIT and exit at once; KILL after 1 s."),
    (
        "HUP",
        "rolling reload: re-reads the config file; one worker at a time, a new worker is "
        "ready before the old one with the same id is stopped. A new worker that fails to boot "
        "aborts the reload and the running workers are kept.",
    ),
    ("TTIN / TTOU", "one worker more / fewer (the highest id is stopped gracefully)."),
    (
        "USR1",
        "log one `worker status` line per worker (pid, state, age, heartbeat age, work "
        "count, crashes in a row).",
    ),
    (
        "USR2",
        "ignored with a warning (gunicorn uses it for a binary upgrade; here HUP loads new "
        "code, with `--preload` by re-executing the master in place).",
    ),
    ("CHLD", "reaped at once by the loop."),
]


def _anchor(group: str) -> str:
    return group.lower().replace(" ", "-")


def commands() -> list[str]:
    """The subcommands, with the options that only they take and the groups of
    settings they accept."""
    out = [
        "## Commands",
        "",
        f"`{PROG} TARGET [OPTIONS]` is short for `{PROG} run TARGET [OPTIONS]`. "
        "TARGET is `module:attribute`, imported from the current directory.",
        "",
    ]
    group_of = {f.name: meta.group for f, meta in settings()}
    all_groups = list(dict.fromkeys(group_of.values()))
    for name, command in cli.commands.items():
        ctx = click.Context(command, info_name=f"{PROG} {name}")
        usage = " ".join(command.collect_usage_pieces(ctx))
        summary = " ".join(inspect.cleandoc(command.help or "").split())
        out += [f"### `{PROG} {name}`", "", f"`{PROG} {name} {usage}`", "", summary, ""]
        extra = [
            p
            for p in command.params
            if isinstance(p, click.Option) and p.name not in group_of and not p.hidden
        ]
        if extra:
            out += ["| option | meaning |", "| --- | --- |"]
            for param in extra:
                flag = ", ".join(f"`{o}`" for o in param.opts)
                if not param.is_flag and param.metavar:
                    flag += f" {param.metavar}"
                out.append(f"| {flag} | {param.help} |")
            out.append("")
        groups = list(dict.fromkeys(group_of[p.name] for p in command.params if p.name in group_of))
        if groups == all_groups:
            out += ["It also takes every [setting](#settings) as an option.", ""]
        elif groups:
            links = ", ".join(f"[{g}](#{_anchor(g)})" for g in groups)
            out += [f"It also takes the settings of these groups as options: {links}.", ""]
    out += [
        f"`{PROG} --version` prints pg-supervise's own version; `-h` / `--help` works on every command.",
        "",
        "### Shell completion",
        "",
        "Completion scripts come from click. Load one from your shell's start-up file:",
        "",
        "```sh",
        f'eval "$({COMPLETE_VAR}=bash_source {PROG})"    # in ~/.bashrc',
        f'eval "$({COMPLETE_VAR}=zsh_source {PROG})"     # in ~/.zshrc',
        f"{COMPLETE_VAR}=fish_source {PROG} > ~/.config/fish/completions/{PROG}.fish",
        "```",
        "",
    ]
    if "completion" in cli.commands:
        out += [f"`{PROG} completion bash` (or `zsh`, `fish`) prints the same script.", ""]
    out += [
        "Commands, options and the values of choice options (`--log-level`, `--interface`...) "
        f"complete. Options complete after an explicit command (`{PROG} run --wor<TAB>`), "
        f"not after the short form `{PROG} TARGET`.",
        "",
    ]
    return out


def error_classes() -> list[type[SupervisorError]]:
    """The public error classes, in the order ``supervisor/errors.py`` declares them."""
    found = [
        obj
        for obj in vars(errors).values()
        if inspect.isclass(obj) and issubclass(obj, SupervisorError) and not obj.__name__.startswith("_")
    ]
    return found


def render() -> str:
    out = [
        "# Reference",
        "",
        "Generated by `scripts/gen_reference.py` from the code; do not edit by hand.",
        "",
        *commands(),
        "## Settings",
        "",
        "Every setting is a command-line option, a `SUPERVISE_*` environment variable and a "
        "key of `supervise.toml` (or `[tool.supervise]` in `pyproject.toml`); precedence: "
        "command line (or `Supervisor(...)` keywords) > environment > file > default. "
        "`supervise check TARGET` prints the effective value of each and where it came from. "
        "A file key is the variable's name without `SUPERVISE_`, in lower case "
        "(`pool_max_size = 8`; `pool-max-size` works too).",
    ]
    by_group: dict[str, list[str]] = {}
    for field, meta in settings():
        default = meta.default_doc or ("-" if field.default is None else repr(field.default))
        flags = ", ".join(f"`{f}`" for f in meta.flags)
        if meta.metavar:
            flags += f" {meta.metavar}"
        if meta.choices:
            flags += " " + "\\|".join(meta.choices)
        meaning = meta.help + ("" if meta.in_file else " Not a file key.")
        if meta.kind in ("int", "float"):
            meaning += f" Range: {describe_range(meta)}" + (", finite." if meta.kind == "float" else ".")
        row = f"| {flags} | `{env_name(field.name)}` | {default} | {meaning} |"
        by_group.setdefault(meta.group, []).append(row)
    for group, rows in by_group.items():
        out += ["", f"### {group}", "", "| option | env | default | meaning |", "| --- | --- | --- | --- |"]
        out += rows
    out += ["", "## Exit codes", "", "| code | meaning |", "| --- | --- |"]
    out += [f"| {int(code)} | {EXIT_MEANING[code]} |" for code in ExitCode]
    out += [
        "",
        "## Errors",
        "",
        "Every error pg-supervise reports is one of these classes (importable from "
        "`supervisor.errors`). The message is one line that says what to do next; "
        "`--log-level debug` adds the traceback. The exit code applies when the error ends "
        "`supervise`. A `HookError` follows the failure policy of its hook (see Hooks below); "
        "a `ForkSafetyError` is usually raised in your own code, in a worker.",
        "",
        "| error | exit code | meaning |",
        "| --- | --- | --- |",
    ]
    for cls in error_classes():
        base = cls.__mro__[1].__name__
        doc = " ".join((cls.__doc__ or "").split())
        kind = f" (a `{base}`)" if base != "SupervisorError" and cls is not SupervisorError else ""
        out.append(f"| `{cls.__name__}`{kind} | {int(cls.exit_code)} | {doc} |")
    out += ["", "## Signals (to the master)", "", "| signal | effect |", "| --- | --- |"]
    out += [f"| {sig} | {text} |" for sig, text in SIGNALS]
    out += [
        "",
        "## Hooks",
        "",
        "Register with a decorator (`@sup.after_fork`) or name a module with `--hooks` / "
        '`hooks = "module"` whose functions are named after the hooks. Every hook takes '
        "one argument: master hooks get a `MasterInfo` (`before_fork` and `child_exit` a "
        "`WorkerInfo`, whose `exit_description` reads 'exited with code 1' or 'killed by "
        "signal SIGKILL'), worker hooks get the `Worker`.",
        "",
        "| hook | runs in | when | if it raises |",
        "| --- | --- | --- | --- |",
    ]
    out += [f"| `{s.name}` | {s.process} | {s.moment} | {s.on_failure} |" for s in SPECS]
    return "\n".join(out) + "\n"


def main() -> None:
    target = Path(__file__).resolve().parent.parent / "docs" / "reference.md"
    text = render()
    if sys.argv[1:] == ["--check"]:
        sys.exit(0 if target.read_text() == text else 1)
    target.write_text(text)


if __name__ == "__main__":
    main()
