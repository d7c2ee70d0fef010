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
    assert _row(out.stdout, "timeout") == ["timeout", "11.0", "env file .env: SUPERVISE_TIMEOUT"]
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


def test_env_file_named_in_a_config_file_is_relative_to_that_file(tmp_path: Path):
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "supervise.toml").write_text('env_file = "app.env"\n')
    (conf / "app.env").write_text("SUPERVISE_WORKERS=5\nDATABASE_URL=postgresql://app@db/app\n")
    (tmp_path / "app.env").write_text("SUPERVISE_WORKERS=9\n")  # the working directory's: not read
    out = cli("check", "mains:wait", "-c", "conf/supervise.toml", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert _row(out.stdout, "workers") == ["workers", "5", "env file app.env: SUPERVISE_WORKERS"]
    assert _row(out.stdout, "database_url")[2] == "env file app.env: DATABASE_URL"
    # on the command line, a path is the working directory's
    out = cli("check", "mains:wait", "--env-file", "app.env", cwd=tmp_path)
    assert _row(out.stdout, "workers") == ["workers", "9", "env file app.env: SUPERVISE_WORKERS"]
    # a variable set outside the file is the environment's, and says so
    out = cli("check", "mains:wait", "--env-file", "app.env", cwd=tmp_path, env={"SUPERVISE_WORKERS": "3"})
    assert _row(out.stdout, "workers") == ["workers", "3", "env SUPERVISE_WORKERS"]


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


def _peer_options() -> dict[str, set[str]]:
    """The options in the peers' column of docs/coming-from.md's option tables,
    by table (gunicorn, uvicorn)."""
    import re

    text = (Path(__file__).resolve().parents[2] / "docs" / "coming-from.md").read_text()
    out: dict[str, set[str]] = {}
    peer = ""
    for line in text.splitlines():
        if line.startswith("## "):
            peer = line[3:].strip()
        elif line.startswith("| ") and peer in ("gunicorn", "uvicorn") and "---" not in line:
            first = line.split(" | ")[0]
            if first.strip("| ") in (peer, "gunicorn hook"):
                continue
            out.setdefault(peer, set()).update(re.findall(r"`(--?[a-z][a-z0-9-]*)", first))
    return out


def test_every_peer_option_in_the_docs_is_ours_or_answered():
    from supervisor.cli import cli as group

    real = {o for p in group.commands["run"].params for o in (*p.opts, *p.secondary_opts)}
    habits = {flag for flags, _, _ in HABITS for flag in flags}
    options = _peer_options()
    assert len(options["gunicorn"]) > 30 and len(options["uvicorn"]) > 30  # the parse found the tables
    missing = {o for found in options.values() for o in found if o not in real | habits}
    assert not missing, f"peer options that get click's generic error: {sorted(missing)}"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--http", "httptools"],
            "--http chooses the HTTP engine here (uvicorn or granian); uvicorn's --http h11|httptools "
            "has no counterpart: the uvicorn engine always parses with httptools",
        ),
        (["--interface", "asgi3"], "ASGI 2 and 3 are told apart by signature: --interface asgi"),
        (["--ssl-cert-reqs", "2"], "uvicorn's --ssl-cert-reqs 2 is --ssl-cert-reqs required here"),
        (["--loop", "uvloop"], None),
        (["--lifespan", "on"], None),
        (["--env", "A=B"], None),
    ],
)
def test_a_peers_value_or_option_gets_a_pointer_not_a_guess(tmp_path: Path, args, message):
    out = cli("mains:wait", *args, cwd=tmp_path)
    assert out.returncode == 2
    assert len(out.stderr.splitlines()) == 1 and out.stderr.startswith("supervise: error: "), out.stderr
    assert "did you mean" not in out.stderr.lower() and "not one of" not in out.stderr
    if message:
        assert out.stderr == f"supervise: error: {message}\n"
    # a value of ours is still taken, and a wrong one still gets click's list
    assert cli("check", "mains:wait", "--http", "uvicorn", cwd=tmp_path).returncode == 0
    assert "'uvicorn', 'granian'" in cli("mains:wait", "--http", "nope", cwd=tmp_path).stderr


def test_a_factory_without_factory_says_so(tmp_path: Path):
    (tmp_path / "fact.py").write_text(
        "def create_app():\n    async def app(scope, receive, send):\n        pass\n    return app\n"
    )
    out = cli("check", "fact:create_app", cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
    assert out.returncode == 4
    assert out.stderr == (
        "supervise: error: target 'fact:create_app' takes no arguments: if it builds the app (an app "
        "factory), pass --factory to call it; a main target is 'def main(worker)'\n"
    )
    out = cli("check", "fact:create_app", "--factory", cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
    assert out.returncode == 0 and "[asgi (async)]" in out.stdout, out.stderr
