"""The pytest plugin's own PostgreSQL (initdb and pg_ctl): it must start from a
private temporary directory too, as root's TMPDIR often is, since PostgreSQL
then runs as another user that cannot enter it."""

from __future__ import annotations

import os
import pwd
import tempfile
from pathlib import Path

import psycopg
import pytest

from supervisor.testing.postgres import ENV_REQUIRE, _reachable_by, local_cluster, pg_bindir


def test_a_private_directory_is_unreachable_to_others_and_reachable_to_its_owner(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    inside = private / "inside"
    inside.mkdir(mode=0o777)
    me = os.stat(private)
    other = pwd.getpwnam("nobody").pw_uid
    assert other != me.st_uid
    assert _reachable_by(str(inside), me.st_uid, me.st_gid)
    assert not _reachable_by(str(inside), other, -1)
    assert _reachable_by("/tmp", other, -1)


def test_the_local_cluster_starts_when_tmpdir_is_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if pg_bindir() is None:
        message = "needs initdb/pg_ctl"
        if os.environ.get(ENV_REQUIRE, "").strip().lower() in ("1", "true", "yes"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    monkeypatch.setenv("TMPDIR", str(private))
    monkeypatch.setattr(tempfile, "tempdir", None)  # gettempdir() caches its first answer
    with local_cluster(max_connections=10) as cluster:
        with psycopg.connect(cluster.url, connect_timeout=10) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
        made_in = Path(cluster.dir).parent
    # As root, PostgreSQL runs as another user, so the data must live where it can reach.
    if os.geteuid() == 0:
        assert made_in != private
    else:
        assert made_in == private
