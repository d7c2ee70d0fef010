"""The unsafe-operation check where it runs: before a start or `supervise
migrate` applies anything, and in `supervise migrate --check`; what the server
knows counts (a table that exists, a validated check, a function's
volatility); without pglast, --check says how to install it and a start warns
once and applies. Real PostgreSQL, real `supervise`."""

from __future__ import annotations

from pathlib import Path

import psycopg

from conftest import APPS, docs_recipes

DROP = "alter table users drop column legacy;\n"
DROP_FINDING = (
    "0002_drop.sql:2: drop-column: dropping a column breaks the code still running that reads or writes it; "
    "instead: stop using it in a release first, then drop it in a '-- contract' file"
)
ADVICE = "make each safe, move it to a '-- contract' file, or acknowledge it with '-- unsafe-ok: <reason>'"


def _dir(tmp_path: Path, files: dict[str, str]) -> Path:
    mig = tmp_path / "mig"
    mig.mkdir(exist_ok=True)
    for name, body in files.items():
        (mig / name).write_text(body)
    return mig


def _users(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("create table users (id int, email text, legacy text)")


def _recorded(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        if conn.execute("select to_regclass('supervise_migrations')").fetchone() == (None,):
            return []
        return [r[0] for r in conn.execute("select version from supervise_migrations order by 1")]


def _errors(lines: list[str]) -> list[str]:
    return [
        line.removeprefix("supervise: error: ") for line in lines if line.startswith("supervise: error: ")
    ]


def test_check_lists_each_finding_and_applies_nothing(supervise, postgres_url: str, tmp_path: Path):
    _users(postgres_url)
    mig = _dir(
        tmp_path,
        {"0001_note.sql": "alter table users add column note text;\n", "0002_drop.sql": "-- v42\n" + DROP},
    )
    run = supervise("migrate", "--migrations", str(mig), "--check", env={"DATABASE_URL": postgres_url})
    assert run.wait(60) == 5, run.output()
    assert DROP_FINDING in run.lines
    assert _errors(run.lines) == [f"unsafe migration statement: {DROP_FINDING}; {ADVICE}"]
    assert "Traceback" not in run.output()
    assert _recorded(postgres_url) == []  # not even the table: --check writes nothing

    (mig / "0002_drop.sql").write_text("-- unsafe-ok: nothing has read legacy since v40\n" + DROP)
    run = supervise("migrate", "--migrations", str(mig), "--check", env={"DATABASE_URL": postgres_url})
    assert run.wait(60) == 0, run.output()
    assert "no unsafe operations in 2 pending migrations" in run.lines


def test_a_start_refuses_unsafe_files_before_applying_any(supervise, postgres_url: str, tmp_path: Path):
    _users(postgres_url)
    mig = _dir(
        tmp_path,
        {
            "0001_note.sql": "alter table users add column note text;\n",  # safe, and pending too
            "0002_drop.sql": "-- v42\n" + DROP,
            "0003_idx.sql": "create index users_email on users (email);\n",
        },
    )
    run = supervise("mains:wait", "--migrations", str(mig), env={"DATABASE_URL": postgres_url})
    assert run.wait(60) == 5
    assert [e["finding"] for e in run.find("unsafe migration statement")] == [
        DROP_FINDING,
        "0003_idx.sql:1: index-concurrently: CREATE INDEX without CONCURRENTLY blocks every write to the "
        "table while it builds; instead: CREATE INDEX CONCURRENTLY IF NOT EXISTS, in a '-- no-transaction' "
        "file",
    ]
    assert run.final(5) == (
        f"2 unsafe migration statements (listed above; the first: {DROP_FINDING}); nothing was applied; "
        + ADVICE
    )
    assert not run.find("applying migration") and not run.find("worker spawned")
    assert _recorded(postgres_url) == []


def test_tables_created_by_applied_migrations_are_live(supervise, postgres_url: str, tmp_path: Path):
    mig = _dir(tmp_path, {"0001_users.sql": "create table users (id int, legacy text);\n"})
    assert supervise("migrate", "--migrations", str(mig), env={"DATABASE_URL": postgres_url}).wait(60) == 0
    _dir(tmp_path, {"0002_drop.sql": "-- v42\n" + DROP})
    run = supervise("migrate", "--migrations", str(mig), env={"DATABASE_URL": postgres_url})
    assert run.wait(60) == 5
    assert _errors(run.lines) == [
        f"unsafe migration statement: {DROP_FINDING}; nothing was applied; {ADVICE}"
    ]
    # offline, every file counts as pending: 0001 creates users, so dropping from it passes
    offline = supervise("migrate", "--migrations", str(mig), "--check")
    assert offline.wait(60) == 0, offline.output()
    assert "no unsafe operations in 2 pending migrations" in offline.lines


def test_what_the_server_knows_counts(supervise, postgres_url: str, tmp_path: Path):
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(
            "create table users (id int, email text);"
            "alter table users add constraint users_email_nn check (email is not null);"
            "create function tenant() returns int immutable language sql as 'select 7'"
        )
    mig = _dir(
        tmp_path,
        {
            "0001_x.sql": "alter table users alter column email set not null;\n"  # a validated check
            "alter table users add column tenant int default tenant();\n"  # immutable: stored once
            "create table if not exists users (id int);\n"  # there already: users stays live
            "create index users_id on users (id);\n"
        },
    )

    def found(run) -> list[str]:
        return [":".join(line.split(":")[1:3]) for line in run.lines if line.startswith("0001_x.sql:")]

    run = supervise("migrate", "--migrations", str(mig), "--check", env={"DATABASE_URL": postgres_url})
    assert run.wait(60) == 5
    assert found(run) == ["4: index-concurrently"]
    offline = supervise("migrate", "--migrations", str(mig), "--check")  # none of that is known offline
    assert offline.wait(60) == 5
    assert found(offline) == ["1: set-not-null", "2: volatile-default"]


def test_a_parse_error_is_exit_5_with_its_line(supervise, postgres_url: str, tmp_path: Path):
    mig = _dir(tmp_path, {"0001_bad.sql": "create table a (id int);\ncreate tabel b (id int);\n"})
    for args in (("migrate", "--check"), ("migrate",), ("mains:wait",)):
        run = supervise(*args, "--migrations", str(mig), env={"DATABASE_URL": postgres_url})
        assert run.wait(60) == 5, args
        assert "Traceback" not in run.output()
        error = run.final(5) if args[0] == "mains:wait" else _errors(run.lines)[0]
        assert error.startswith(
            'unsafe migration statement: 0001_bad.sql:2: syntax: syntax error at or near "tabel"'
        )
    assert _recorded(postgres_url) == []


def _without_pglast(tmp_path: Path) -> dict[str, str]:
    """An environment where `import pglast` fails, as where the extra is not installed."""
    shim = tmp_path / "no_pglast" / "pglast"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('pglast is not installed here')\n")
    return {"PYTHONPATH": f"{shim.parent}:{APPS}"}


def test_without_pglast_check_says_how_to_install_it_and_a_start_warns_once(
    supervise, postgres_url: str, tmp_path: Path
):
    _users(postgres_url)
    mig = _dir(tmp_path, {"0002_drop.sql": "-- v42\n" + DROP})
    env = {**_without_pglast(tmp_path), "DATABASE_URL": postgres_url}
    run = supervise("migrate", "--migrations", str(mig), "--check", env=env)
    assert run.wait(60) == 2
    assert _errors(run.lines) == [
        "the unsafe-operation check needs pglast, which is not installed: pip install 'pg-supervise[check]'"
    ]
    run = supervise("mains:wait", "-w", "1", "--migrations", str(mig), env=env)
    run.wait_ready(1)
    skipped = run.find("the unsafe-operation check was skipped")
    assert len(skipped) == 1 and skipped[0]["reason"].endswith("pip install 'pg-supervise[check]'")
    run.signal(15)
    assert run.wait() == 0
    assert _recorded(postgres_url) == [2]  # applied: the lock rule still held it to its timeout


def test_the_recipes_in_the_docs_apply(supervise, postgres_url: str, tmp_path: Path):
    """docs/migrations.md's recipes are real SQL: on live tables (no old
    master anywhere, so the contracts apply too) every file applies."""
    files = docs_recipes()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(
            "create table users (id int primary key, name text, email varchar(50));"
            "create table orders (id int, user_id int, created_at timestamptz, legacy text);"
            "create table sessions (id int);"
            "insert into users values (1, 'Ada', 'ada@example.com');"
            "insert into orders values (1, 1, now(), 'x')"
        )
    mig = _dir(tmp_path, files)
    run = supervise("migrate", "--migrations", str(mig), env={"DATABASE_URL": postgres_url})
    assert run.wait(60) == 0, run.output()
    assert _recorded(postgres_url) == sorted(int(name[:4]) for name in files)
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("select full_name, email from users").fetchall() == [("Ada", "ada@example.com")]
        assert conn.execute("select to_regclass('sessions')").fetchone() == (None,)
