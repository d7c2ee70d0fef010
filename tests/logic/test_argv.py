"""Secret options move from the command line to the environment, and the password
spans found in a command line (what the processes test in processes/test_argv_secrets.py
relies on to keep a password out of `ps`)."""

from __future__ import annotations

import pytest

from supervisor._argv import move_secrets_to_env, password_spans


@pytest.mark.parametrize(
    ("argv", "left", "env"),
    [
        (["x", "--database-url", "u", "-w", "2"], ["x", "-w", "2"], {"SUPERVISE_DATABASE_URL": "u"}),
        (["x", "--database-url=a=b c=d"], ["x"], {"SUPERVISE_DATABASE_URL": "a=b c=d"}),
        (["x", "--hooks", "h"], ["x", "--hooks", "h"], {}),
    ],
)
def test_secret_options_move_to_the_environment(argv: list[str], left: list[str], env: dict[str, str]):
    assert move_secrets_to_env(argv) == (left, env)


def test_password_spans_in_urls_and_conninfo():
    line = b"py\0--database-url\0postgresql://u:p%40ss@h/db\0host=h password='a b' x=1\0"
    spans = list(password_spans(line))
    assert [line[a:b] for a, b in spans] == [b"p%40ss", b"'a b'"]
