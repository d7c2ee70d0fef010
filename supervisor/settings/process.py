"""Settings of the supervisor process itself: hooks, logging, its config and
env files, control (pid file, control socket), development reload.

Declared once here; config.py gathers every group into :class:`~supervisor.settings.config.Config`.
"""

from __future__ import annotations

from dataclasses import dataclass

from supervisor.settings.declare import CONFIG_FILE, _setting


@dataclass(frozen=True, kw_only=True)
class ProcessSettings:
    hooks: str | None = _setting(
        None,
        flags=("--hooks",),
        kind="str",
        metavar="MODULE",
        group="Hooks",
        help="Module whose functions named after hooks (on_starting, after_fork, ...) are registered; "
        "one named almost like a hook, or like a gunicorn hook, is refused (exit 4).",
    )
    log_level: str = _setting(
        "info",
        flags=("--log-level",),
        kind="choice",
        choices=("debug", "info", "warning", "error"),
        group="Logging",
        help="Lowest level logged; 'debug' also shows tracebacks of reported errors.",
    )
    log_format: str = _setting(
        "auto",
        flags=("--log-format",),
        kind="choice",
        choices=("auto", "console", "json"),
        group="Logging",
        help="'auto': console when stderr is a terminal, JSON lines otherwise.",
    )
    request_id_header: str = _setting(
        "X-Request-ID",
        flags=("--request-id-header",),
        kind="str",
        metavar="NAME",
        group="Logging",
        help="Request header whose value is the access log's request_id; a request without it "
        "gets a generated id, added to the request's headers and echoed in the response.",
    )
    config: str | None = _setting(
        None,
        flags=("-c", "--config"),
        kind="str",
        metavar="PATH",
        group="General",
        in_file=False,
        help=f"Config file (default: ./{CONFIG_FILE}, else [tool.supervise] in "
        "./pyproject.toml). Re-read on HUP.",
    )
    env_file: str | None = _setting(
        None,
        flags=("--env-file",),
        kind="str",
        metavar="PATH",
        group="General",
        help="Load KEY=VALUE lines (dotenv) into the environment before settings are read; "
        "variables already set win. Re-read on HUP. Named in a config file, a relative PATH is "
        "relative to that file.",
    )
    pid: str | None = _setting(
        None,
        flags=("--pid",),
        kind="str",
        metavar="FILE",
        group="Control",
        help="Write the master's pid to FILE (atomically), remove it on exit; refuse to start "
        "while a live master holds it. `supervise status/reload/scale/stop` find the master by it.",
    )
    control_socket: str | None = _setting(
        None,
        flags=("--control-socket",),
        kind="str",
        metavar="PATH",
        group="Control",
        help="Unix socket (owner only) that `supervise status/reload/scale/stop` talk to; "
        "'none' turns it off.",
        default_doc="next to --pid FILE (NAME.sock), else $XDG_RUNTIME_DIR/supervise/ (or "
        "/tmp/supervise-UID/) DIR-HASH.sock for the working directory",
    )
    reload: bool = _setting(
        False,
        flags=("--reload/--no-reload",),
        kind="bool",
        group="Development",
        help="Watch files and reload the workers (as HUP does) when one changes. For development.",
    )
    reload_dir: tuple[str, ...] = _setting(
        (),
        flags=("--reload-dir",),
        kind="list",
        metavar="DIR",
        group="Development",
        help="Directory --reload watches; repeatable.",
        default_doc="the working directory",
    )
    reload_include: tuple[str, ...] = _setting(
        ("*.py",),
        flags=("--reload-include",),
        kind="list",
        metavar="GLOB",
        group="Development",
        help="File names (glob) whose change reloads; repeatable. Given, it replaces the default.",
    )
    reload_exclude: tuple[str, ...] = _setting(
        (".*", "*~", "__pycache__", ".git", ".venv", "node_modules"),
        flags=("--reload-exclude",),
        kind="list",
        metavar="GLOB",
        group="Development",
        help="File or directory names (glob) whose changes are ignored; repeatable. Given, it "
        "replaces the default.",
    )
