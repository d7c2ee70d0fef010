"""The command line: config precedence, check, errors, version, name clash."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import supervisor

from conftest import APPS


def cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    import os

    full = {k: v for k, v in os.environ.items() if not k.startswith("SUPERVISE_")}
    full["PYTHONPATH"] = str(APPS)
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "supervisor", *args],
        cwd=cwd,
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _row(out: str, name: str) -> list[str]:
    for line in out.splitlines():
        parts = line.split(None, 2)
        if parts and parts[0] == name:
            return parts
    raise AssertionError(f"no row {name!r} in:\n{out}")


def test_precedence_cli_over_env_over_file_over_default(tmp_path: Path):
    (tmp_path / "supervise.toml").write_text("workers = 3\ntimeout = 5\n")
    env = {"SUPERVISE_WORKERS": "5"}
    out = cli("check", "mains:wait", "-w", "7", cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert "target: mains:wait  [main]" in out.stdout
    assert _row(out.stdout, "workers") == ["workers", "7", "--workers"]
    assert _row(out.stdout, "timeout") == ["timeout", "5.0", "supervise.toml"]
    assert _row(out.stdout, "graceful_timeout") == ["graceful_timeout", "30.0", "default"]
    out = cli("check", "mains:wait", cwd=tmp_path, env=env)
    assert _row(out.stdout, "workers") == ["workers", "5", "env SUPERVISE_WORKERS"]
    out = cli("check", "mains:wait", cwd=tmp_path)
    assert _row(out.stdout, "workers") == ["workers", "3", "supervise.toml"]


def test_pyproject_tool_table_and_explicit_config(tmp_path: Path):
    (tmp_path / "pyproject.toml").write_text("[project]\nname='x'\n[tool.supervise]\nworkers = 6\n")
    out = cli("check", "mains:async_wait", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "[main (async)]" in out.stdout
    assert _row(out.stdout, "workers") == ["workers", "6", "pyproject.toml [tool.supervise]"]
    other = tmp_path / "other.toml"
    other.write_text("workers = 9\n")
    out = cli("check", "mains:wait", "--config", str(other), cwd=tmp_path)
    assert _row(out.stdout, "workers") == ["workers", "9", "other.toml"]


def test_check_forks_nothing_and_reports_target_errors(tmp_path: Path):
    out = cli("check", "mains:wiat", cwd=tmp_path)
    assert out.returncode == 4
    assert out.stderr == "supervise: error: module 'mains' has no attribute 'wiat'; did you mean 'wait'?\n"


def test_bad_values_exit_2_with_one_line(tmp_path: Path):
    cases = [
        (["-w", "many"], {}, "workers: expected a whole number, got 'many' (from --workers)"),
        (["-w", "0"], {}, "workers: must be from 1 to 1024, got 0 (from --workers)"),
        (
            [],
            {"SUPERVISE_TIMEOUT": "soon"},
            "timeout: expected a number of seconds, got 'soon' (from env SUPERVISE_TIMEOUT)",
        ),
        ([], {"SUPERVISE_PRELOAD": "maybe"}, "preload: expected true or false, got 'maybe'"),
        (["--config", "nope.toml"], {}, "config: file not found: nope.toml"),
    ]
    for args, env, message in cases:
        out = cli("mains:wait", *args, cwd=tmp_path, env=env)
        assert out.returncode == 2, (args, out.stderr)
        assert message in out.stderr
        assert "Traceback" not in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_bad_config_file_exits_2(tmp_path: Path):
    (tmp_path / "supervise.toml").write_text("wokers = 2\n")
    out = cli("mains:wait", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr == (
        "supervise: error: supervise.toml: unknown setting 'wokers'; did you mean 'workers'?\n"
    )
    (tmp_path / "supervise.toml").write_text("workers = \n")
    out = cli("mains:wait", cwd=tmp_path)
    assert out.returncode == 2 and "is not valid TOML" in out.stderr
    (tmp_path / "supervise.toml").write_text("workers = true\n")
    out = cli("mains:wait", cwd=tmp_path)
    assert out.returncode == 2 and "workers: expected int, got bool True (from supervise.toml)" in out.stderr


def test_unknown_option_is_a_usage_error(tmp_path: Path):
    out = cli("mains:wait", "--wrokers", "2", cwd=tmp_path)
    assert out.returncode == 2
    assert "No such option '--wrokers'" in out.stderr and "'--workers'" in out.stderr


def test_debug_shows_the_traceback(tmp_path: Path):
    out = cli("check", "mains:wiat", "--log-level", "debug", cwd=tmp_path)
    assert out.returncode == 4 and "Traceback" in out.stderr


def test_version(tmp_path: Path):
    out = cli("--version", cwd=tmp_path)
    assert out.stdout == f"pg-supervise {supervisor.__version__}\n"


def test_supervisord_in_the_same_environment_is_refused(tmp_path: Path):
    fake = tmp_path / "site"
    dist = fake / "supervisor-4.2.5.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: supervisor\nVersion: 4.2.5\n")
    env = {"PYTHONPATH": f"{APPS}:{fake}"}
    out = cli("mains:wait", cwd=tmp_path, env=env)
    assert out.returncode == 2
    assert "Supervisord (the 'supervisor' distribution 4.2.5) is installed" in out.stderr
    assert "own virtual environment" in out.stderr
    version = cli("--version", cwd=tmp_path, env=env)
    assert version.returncode == 0 and version.stdout.startswith("pg-supervise ")


def test_console_script_is_installed(tmp_path: Path):
    script = Path(sys.executable).with_name("supervise")
    out = subprocess.run([str(script), "run", "--help"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0
    assert "--graceful-timeout" in out.stdout and "SUPERVISE_GRACEFUL_TIMEOUT" in out.stdout


def _sections(help_text: str) -> dict[str, str]:
    """Help text split into its sections: heading -> body."""
    out: dict[str, str] = {}
    heading = ""
    for line in help_text.splitlines():
        if line and not line.startswith(" ") and line.endswith(":"):
            heading = line[:-1]
            out[heading] = ""
        elif heading:
            out[heading] += line + "\n"
    return out


def test_help_groups_options_by_what_they_configure(tmp_path: Path):
    run = _sections(cli("run", "--help", cwd=tmp_path).stdout)
    assert list(run) == [
        "Options",
        "Workers",
        "Serving",
        "TLS",
        "Proxies",
        "WebSockets",
        "Overload",
        "Database",
        "Migrations",
        "Fleet",
        "Hooks",
        "Logging",
        "General",
        "Control",
        "Development",
    ]
    assert "--workers" in run["Workers"] and "--bind" in run["Serving"]
    assert "--pool-max-size" in run["Database"] and "--workers" not in run["Database"]
    # migrate only offers what a migration can use
    migrate = _sections(cli("migrate", "--help", cwd=tmp_path).stdout)
    assert list(migrate) == ["Options", "Database", "Migrations", "Logging", "General"]
    assert "--dry-run" in migrate["Options"]
    refused = cli("migrate", "--workers", "2", cwd=tmp_path)
    assert refused.returncode == 2 and "No such option '--workers'" in refused.stderr


def test_shell_completion(tmp_path: Path):
    for shell in ("bash", "zsh", "fish"):
        script = cli("completion", shell, cwd=tmp_path)
        assert script.returncode == 0 and "_SUPERVISE_COMPLETE" in script.stdout, shell
    # what the bash script asks the program, and its answers
    for words, cword, expected in [
        ("supervise mi", 1, "plain,migrate"),
        ("supervise app:main --wor", 2, "plain,--workers"),  # the implicit 'run'
        ("supervise run app:main --log-level w", 4, "plain,warning"),
    ]:
        env = {"COMP_WORDS": words, "COMP_CWORD": str(cword), "_SUPERVISE_COMPLETE": "bash_complete"}
        answer = subprocess.run(
            [str(Path(sys.executable).parent / "supervise")],
            env={**env, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert answer.stdout.split() == [expected], (words, answer.stdout, answer.stderr)
