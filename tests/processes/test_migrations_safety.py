"""Migrations that must not be applied, or recorded, as they are: a file that is
not UTF-8, a file numbered below an applied one, a concurrent index left
INVALID; and a lock holder described with only what the server shows."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from supervisor.migrate.lock import LOCK_KEY


def _dir(tmp_path: Path, files: dict[str, str | bytes]) -> Path:
    mig = tmp_path / "mig"
    mig.mkdir(exist_ok=True)
    for name, body in files.items():
        if isinstance(body, bytes):
            (mig / name).write_bytes(body)
        else:
            (mig / name).write_text(body)
    return mig


def _migrate(supervise, url: str, mig: Path, *args: str) -> tuple[int, str]:
    run = supervise("migrate", "--migrations", str(mig), *args, env={"DATABASE_URL": url})
    code = run.wait(60)
    return code, run.output()


def _recorded(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("select version from supervise_migrations order by 1")]


def _error(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("supervise: error: ")]
    assert len(lines) == 1, output
    assert "Traceback" not in output
    return lines[0].removeprefix("supervise: error: ")


def test_a_file_that_is_not_utf8_is_named_with_its_offset(supervise, postgres_url, tmp_path):
    body = b"create table a (id int);\n-- caf\xe9\n"
    mig = _dir(tmp_path, {"0001_a.sql": body})
    code, out = _migrate(supervise, postgres_url, mig)
    assert code == 5, out
    assert _error(out) == (
        "migration file 0001_a.sql is not UTF-8: byte 0xe9 at offset 31 (line 2); save it as UTF-8"
    )
    # the master: the same line, exit 5, nothing forked
    run = supervise("mains:wait", "--migrations", str(mig), env={"DATABASE_URL": postgres_url})
    assert run.wait(30) == 5
    assert run.final(5).endswith("is not UTF-8: byte 0xe9 at offset 31 (line 2); save it as UTF-8")
    assert "Traceback" not in run.output() and not run.find("worker spawned")


def test_a_migration_numbered_below_an_applied_one_is_refused(supervise, postgres_url, tmp_path):
    mig = _dir(tmp_path, {"0001_a.sql": "create table a ();", "0003_c.sql": "create table c ();"})
    assert _migrate(supervise, postgres_url, mig)[0] == 0
    _dir(tmp_path, {"0002_b.sql": "create table b ();"})  # a branch merged late
    for args in ((), ("--dry-run",)):
        code, out = _migrate(supervise, postgres_url, mig, *args)
        assert code == 5, out
        assert _error(out) == (
            "migration 0002_b.sql is numbered below 0003_c.sql, which is already applied; "
            "renumber it above 3, or pass --migrations-out-of-order to apply it anyway"
        )
    assert _recorded(postgres_url) == [1, 3]
    run = supervise("mains:wait", "--migrations", str(mig), env={"DATABASE_URL": postgres_url})
    assert run.wait(30) == 5 and "is numbered below 0003_c.sql" in run.final(5)
    assert not run.find("worker spawned")

    code, out = _migrate(supervise, postgres_url, mig, "--migrations-out-of-order")
    assert code == 0, out
    assert "applying migrations out of order" in out
    assert _recorded(postgres_url) == [1, 2, 3]


CONCURRENT = "-- no-transaction\ncreate unique index concurrently if not exists t_v_key on t (v);\n"


def _index_valid(url: str, name: str) -> bool | None:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "select i.indisvalid from pg_index i join pg_class c on c.oid = i.indexrelid "
            "where c.relname = %s",
            (name,),
        ).fetchone()
    return None if row is None else bool(row[0])


def test_an_invalid_index_left_by_a_concurrent_build_is_never_recorded(supervise, postgres_url, tmp_path):
    mig = _dir(
        tmp_path,
        {"0001_t.sql": "create table t (v int); insert into t values (1), (1);", "0002_idx.sql": CONCURRENT},
    )
    # 1. the build fails on the duplicate and leaves the index INVALID: say so
    code, out = _migrate(supervise, postgres_url, mig)
    assert code == 5, out
    error = _error(out)
    assert "migration 0002_idx.sql failed in statement" in error
    assert error.endswith(
        "it left INVALID index public.t_v_key (a failed concurrent build; queries do not use it): "
        "run DROP INDEX CONCURRENTLY public.t_v_key; before running it again"
    )
    assert _index_valid(postgres_url, "t_v_key") is False
    # 2. the data is fixed, the migration retried: IF NOT EXISTS skips the
    #    broken index, which must not be taken for a success
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("delete from t where ctid <> (select min(ctid) from t)")
    code, out = _migrate(supervise, postgres_url, mig)
    assert code == 5, out
    assert _error(out) == (
        "migration 0002_idx.sql is not recorded as applied: it leaves INVALID index public.t_v_key "
        "(a failed concurrent build; queries do not use it): run DROP INDEX CONCURRENTLY "
        "public.t_v_key;, then run the migrations again"
    )
    assert _recorded(postgres_url) == [1]
    # 3. the advice works
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("drop index concurrently public.t_v_key")
    code, out = _migrate(supervise, postgres_url, mig)
    assert code == 0, out
    assert _recorded(postgres_url) == [1, 2]
    assert _index_valid(postgres_url, "t_v_key") is True


def test_an_unrelated_invalid_index_does_not_block_migrations(supervise, postgres_url, tmp_path):
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("create table u (v int); insert into u values (1), (1)")
        with contextlib.suppress(psycopg.errors.UniqueViolation):
            conn.execute("create unique index concurrently u_v_key on u (v)")
    assert _index_valid(postgres_url, "u_v_key") is False
    mig = _dir(tmp_path, {"0001_a.sql": "-- no-transaction\ncreate index concurrently a_idx on u (v);\n"})
    code, out = _migrate(supervise, postgres_url, mig)
    assert code == 0, out
    assert _recorded(postgres_url) == [1]


def _as(url: str, **params: str) -> str:
    return make_conninfo(**{**conninfo_to_dict(url), **params})


def test_the_lock_holder_is_described_with_what_the_server_shows(supervise, postgres_url, tmp_path):
    suffix = uuid.uuid4().hex[:8]
    holder_role, waiter_role = f"holder_{suffix}", f"waiter_{suffix}"
    mig = _dir(tmp_path, {"0001_a.sql": "create table a ();"})
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f"create role {holder_role} login")
        admin.execute(f"create role {waiter_role} login")
    try:
        with psycopg.connect(
            _as(postgres_url, user=holder_role, application_name="other-deploy"), autocommit=True
        ) as held:
            held.execute("select pg_advisory_lock(%s)", (LOCK_KEY,))
            pid = held.info.backend_pid
            # another role over TCP: its address and age are hidden from this one
            code, out = _migrate(
                supervise, _as(postgres_url, user=waiter_role), mig, "--migration-lock-timeout", "0.5"
            )
            assert code == 5, out
            assert _error(out) == (
                f"the migration lock is held by pid {pid} other-deploy (role {holder_role}); its address "
                f"and connection time are hidden from role {waiter_role}; gave up after waiting 0.5 s "
                "(--migration-lock-timeout)"
            )
            # a superuser sees everything
            code, out = _migrate(supervise, postgres_url, mig, "--migration-lock-timeout", "0.5")
            assert code == 5, out
            error = _error(out)
            assert error.startswith(
                f"the migration lock is held by pid {pid} other-deploy (role {holder_role}) from 127.0.0.1:"
            )
            assert " s ago; gave up after waiting 0.5 s" in error and "None" not in error
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            for role in (holder_role, waiter_role):
                admin.execute(f"drop role if exists {role}")


@contextlib.contextmanager
def _role(url: str, prefix: str, *grants: str) -> Iterator[str]:
    """A login role of its own, dropped afterwards (roles outlive the test's database)."""
    role = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"create role {role} login")
        for grant in grants:
            admin.execute(grant.format(role=role))
    try:
        yield role
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f"drop owned by {role}")
            admin.execute(f"drop role {role}")


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {r[0] for r in conn.execute("select tablename from pg_tables where schemaname = 'public'")}


def test_a_dry_run_changes_nothing_and_a_read_only_role_may_run_it(supervise, postgres_url, tmp_path):
    mig = _dir(tmp_path, {"0001_a.sql": "create table a (id int);"})
    with _role(postgres_url, "reader") as reader:
        code, out = _migrate(supervise, _as(postgres_url, user=reader), mig, "--dry-run")
        assert code == 0, out
        assert _tables(postgres_url) == set()  # not even supervise_migrations
        assert _migrate(supervise, postgres_url, mig)[0] == 0
        _dir(tmp_path, {"0002_b.sql": "create table b (id int);"})
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(f"grant select on supervise_migrations to {reader}")
        run = supervise(
            "migrate",
            "--migrations",
            str(mig),
            "--dry-run",
            env={"DATABASE_URL": _as(postgres_url, user=reader)},
        )
        assert run.wait(60) == 0, run.output()
        assert run.find("migrations pending")[0]["pending"] == ["0002_b.sql"]
    assert _recorded(postgres_url) == [1] and _tables(postgres_url) == {"a", "supervise_migrations"}


def test_migrate_without_migrations_or_database_says_what_it_takes(supervise, tmp_path):
    code, out = _migrate(supervise, "", tmp_path)  # a directory, but no database
    assert code == 2, out
    assert _error(out) == "no database: pass --database-url or set DATABASE_URL"
    run = supervise("migrate", env={"DATABASE_URL": "postgresql://app@127.0.0.1:1/x"})
    assert run.wait(30) == 2
    assert _error(run.output()) == (
        "no migrations: pass --migrations DIR, module:callable or alembic:PATH/alembic.ini"
    )


def test_a_role_that_may_not_create_the_fleet_table_is_warned_in_one_line(supervise, postgres_url):
    # since PostgreSQL 15 a role may not create tables in public unless granted
    with _role(postgres_url, "app") as app:
        run = supervise("mains:wait", "-w", "1", env={"DATABASE_URL": _as(postgres_url, user=app)})
        run.wait_ready(1)
        warning = run.find("the connection budget counts this master alone")[0]["reason"]
        run.signal(15)
        assert run.wait() == 0
    assert warning.startswith(
        "the fleet's table supervise_fleet does not exist and this role may not create it "
        "(permission denied for schema public); create it once"
    )
    assert "\n" not in warning and "^" not in warning
