"""gunicorn/uvicorn habits (-c, --port, -k, --daemon...) and --env-file."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_cli import _row, cli

from supervisor.cli_habits import HABITS, _taken


@pytest.mark.parametrize(("flags", "takes_value", "message"), HABITS)
def test_each_habit_gets_a_one_line_pointer(tmp_path: Path, flags, takes_value, message):
    for flag in set(flags) - _taken():  # a flag that became a real setting is the setting's
        args = [flag, "x"] if takes_value else [flag]
        out = cli("mains:wait", *args, cwd=tmp_path)
        assert out.returncode == 2
        assert out.stderr == f"supervise: error: {message}\n"
        assert "did you mean" not in out.stderr


def test_c_is_config_and_habits_are_not_in_help(tmp_path: Path):
    (tmp_path / "other.toml").write_text("workers = 9\n")
    out = cli("check", "mains:wait", "-c", "other.toml", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert _row(out.stdout, "workers")[:2] == ["workers", "9"]
    help_text = cli("run", "--help", cwd=tmp_path).stdout
    assert "-c, --config" in help_text
    assert "--daemon" not in help_text and "--port" not in help_text


def test_env_file_precedence(tmp_path: Path):
    (tmp_path / "supervise.toml").write_text("workers = 3\ntimeout = 7\ngraceful_timeout = 8\n")
    (tmp_path / ".env").write_text(
        "# comment\nSUPERVISE_TIMEOUT=11\nSUPERVISE_GRACEFUL_TIMEOUT=12\nexport SUPERVISE_BACKLOG=99\n"
    )
    env = {"SUPERVISE_GRACEFUL_TIMEOUT": "13"}
    out = cli("check", "mains:wait", "--env-file", ".env", "--backlog", "5", cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert _row(out.stdout, "workers") == ["workers", "3", "supervise.toml"]
    # the file beats the config file; the real environment beats the file; options beat both
    assert _row(out.stdout, "timeout") == ["timeout", "11.0", "env SUPERVISE_TIMEOUT"]
    assert _row(out.stdout, "graceful_timeout") == [
        "graceful_timeout",
        "13.0",
        "env SUPERVISE_GRACEFUL_TIMEOUT",
    ]
    assert _row(out.stdout, "backlog") == ["backlog", "5", "--backlog"]
    # named in the config file, or by SUPERVISE_ENV_FILE, it counts the same
    (tmp_path / "supervise.toml").write_text('env_file = ".env"\n')
    assert _row(cli("check", "mains:wait", cwd=tmp_path).stdout, "timeout")[1] == "11.0"
    out = cli("check", "mains:wait", cwd=tmp_path, env={"SUPERVISE_ENV_FILE": "missing.env"})
    assert out.returncode == 2
    assert out.stderr.startswith("supervise: error: env_file: file not found: ")


def test_env_file_reaches_the_workers(supervise, tmp_path: Path):
    (tmp_path / ".env").write_text("GREETING=from-the-env-file\n")
    (tmp_path / "greet.py").write_text(
        "import logging, os\n"
        "def main(worker):\n"
        "    logging.getLogger('greet').info('greeting', extra={'value': os.environ['GREETING']})\n"
    )
    run = supervise("greet:main", "-w", "1", "--env-file", ".env")
    assert run.wait() == 0
    assert run.find("greeting", value="from-the-env-file")


def test_a_real_setting_wins_over_its_habit_entry(tmp_path: Path):
    # gunicorn's --keep-alive is a setting; uvicorn's spelling still gets a pointer to it
    out = cli("check", "mains:wait", "--keep-alive", "3", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert _row(out.stdout, "keep_alive") == ["keep_alive", "3.0", "--keep-alive"]
    out = cli("mains:wait", "--timeout-keep-alive", "3", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr == "supervise: error: uvicorn's --timeout-keep-alive is --keep-alive S\n"
