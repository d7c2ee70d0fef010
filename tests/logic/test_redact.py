"""Passwords scrubbed from messages and from the config's repr."""

from __future__ import annotations

from supervisor.settings import config


def test_scrub_removes_the_password_anywhere():
    from supervisor.redact import scrub

    url = "postgresql://app:s3cr%ZZet@db/app"
    assert scrub('invalid percent-encoded token: "s3cr%ZZet"', url) == 'invalid percent-encoded token: "***"'
    assert "hunter2" not in scrub("password=hunter2 failed", "host=db password=hunter2")
    assert "hunter2" not in repr(config.Config(target="a:b", database_url="postgresql://u:hunter2@h/d"))
