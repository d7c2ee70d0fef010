"""Every number has a range: a bad one is a one-line exit 2 naming the setting,
from the command line, the environment or a config file, for run and check."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from test_cli import cli

from supervisor.settings.declare import MAX_SECONDS

from conftest import Run, free_port

# (arguments, environment, the message's start) for each class of bad number
BAD = [
    (["--timeout", "nan"], {}, "timeout: must be a finite number of seconds, got nan (from --timeout)"),
    (["--timeout", "inf"], {}, "timeout: must be a finite number of seconds, got inf (from --timeout)"),
    (["--boot-timeout", "-inf"], {}, "boot_timeout: must be a finite number of seconds, got -inf"),
    (["--timeout", "1e10"], {}, "timeout: must be from 0 to 604800, got 10000000000.0 (from --timeout)"),
    (["--graceful-timeout", "1e10"], {}, "graceful_timeout: must be from 0 to 604800"),
    (["--backlog", "99999999999"], {}, "backlog: must be from 1 to 65535, got 99999999999 (from --backlog)"),
    (["-w", "1025"], {}, "workers: must be from 1 to 1024, got 1025 (from --workers)"),
    (["--crash-reset", "-1"], {}, "crash_reset: must be from 0 to 604800, got -1.0 (from --crash-reset)"),
    (["--max-db-connections", "262144"], {}, "max_db_connections: must be from 1 to 262143"),
    ([], {"SUPERVISE_DB_WAIT_TIMEOUT": "NaN"}, "db_wait_timeout: must be a finite number"),
    ([], {"SUPERVISE_THREADS": "100000"}, "threads: must be from 1 to 1024, got 100000 (from env"),
]


@pytest.mark.parametrize("command", ["run", "check"])
def test_bad_numbers_exit_2_with_one_line_naming_the_setting(tmp_path: Path, command: str):
    for args, env, message in BAD:
        out = cli(command, "mains:wait", *args, cwd=tmp_path, env=env)
        assert out.returncode == 2, (args, env, out.stderr)
        assert out.stderr.startswith("supervise: error: " + message), out.stderr
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert out.stdout == ""


def test_bad_numbers_in_a_config_file(tmp_path: Path):
    # TOML has inf and nan literals, and integers of any size
    for line, message in [
        ("timeout = inf", "timeout: must be a finite number of seconds, got inf (from supervise.toml)"),
        ("pool_timeout = nan", "pool_timeout: must be a finite number of seconds, got nan"),
        ("backlog = 99999999999999999999", "backlog: must be from 1 to 65535"),
    ]:
        (tmp_path / "supervise.toml").write_text(line + "\n")
        out = cli("check", "mains:wait", cwd=tmp_path)
        assert out.returncode == 2, (line, out.stderr)
        assert out.stderr == f"supervise: error: {message}" + out.stderr.split(message, 1)[1]
        assert len(out.stderr.strip().splitlines()) == 1


def test_the_largest_values_run_and_stop_cleanly(supervise, tmp_path: Path):
    """The bounds are values the master can live with: deadlines a week away
    must not overflow a wait, at start or at stop."""
    top = str(MAX_SECONDS)
    run: Run = supervise(
        "asgiapp:app", "-w", "1", "--timeout", top, "--boot-timeout", top, "--graceful-timeout", top,
        "--crash-reset", top, "--backlog", "65535", "-b", f"127.0.0.1:{free_port()}",
    )  # fmt: skip
    run.wait_ready(1)
    run.signal(signal.SIGTERM)
    assert run.wait() == 0, run.output()
    assert "Traceback" not in run.output()
