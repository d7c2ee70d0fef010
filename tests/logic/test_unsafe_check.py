"""The unsafe-operation check on its own: each operation that locks or rewrites
a live table, or breaks the code still running, is reported at its line; its
safe form passes; an acknowledged one passes; a table created in the same run
is not live; a parse error is a finding, not a traceback. Parsed by pglast."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.migrate.sqlfiles import Migration, load
from supervisor.migrate.unsafe import Finding, check

from conftest import docs_recipes


def _run(tmp_path: Path, files: dict[str, str]) -> list[Migration]:
    mig = tmp_path / "mig"
    mig.mkdir(exist_ok=True)
    for name, body in files.items():
        (mig / name).write_text(body)
    return load(mig)


def _found(tmp_path: Path, sql: str, *, first: str = "") -> list[tuple[int, str]]:
    """(line, rule) of each finding in ``sql``, checked after ``first`` (earlier in the run)."""
    files = {"0002_x.sql": sql}
    if first:
        files["0001_first.sql"] = first
    return [(f.line, f.rule) for f in check(_run(tmp_path, files)) if f.file == "0002_x.sql"]


UNSAFE = [
    ("alter table users drop column legacy", "drop-column"),
    ("drop table sessions", "drop-table"),
    ("drop table if exists app.sessions, audit", "drop-table"),
    ("alter table users rename to members", "rename-table"),
    ("alter table users rename column name to full_name", "rename-column"),
    ("alter table users alter column id type bigint", "change-type"),
    ("alter table users alter column id set data type bigint using id::bigint", "change-type"),
    ("alter table users alter column email set not null", "set-not-null"),
    ("alter table users add constraint age_pos check (age > 0)", "constraint-not-valid"),
    (
        "alter table orders add constraint o_u foreign key (user_id) references users (id)",
        "constraint-not-valid",
    ),
    ("alter table users add primary key (id)", "add-unique"),
    ("alter table users add constraint users_email_key unique (email)", "add-unique"),
    ("create index users_created on users (created)", "index-concurrently"),
    ("create unique index if not exists users_k on public.users (k)", "index-concurrently"),
    ("drop index users_old", "drop-index-concurrently"),
    ("reindex table users", "reindex-concurrently"),
    ("vacuum full users", "rewrite-table"),
    ("cluster users using users_pkey", "rewrite-table"),
    ("alter table users add column seen timestamptz default clock_timestamp()", "volatile-default"),
    ("alter table users add column r int default (random() * 10)::int", "volatile-default"),
    ("alter table users add column u uuid default pg_catalog.gen_random_uuid()", "volatile-default"),
    ("alter table users add column k int default my_schema.next_k()", "volatile-default"),
    ("alter table users add column n bigserial", "volatile-default"),
    ("alter table users add column i int generated always as identity", "volatile-default"),
    ("alter table users add column g int generated always as (id + 1) stored", "volatile-default"),
    ("create index concurrently users_x on users (x)", "needs-no-transaction"),
    ("alter table users add column code text unique", "add-unique"),
    ("alter table users add column team_id int references teams (id)", "constraint-not-valid"),
    ("alter table users add column age int check (age > 0)", "constraint-not-valid"),
]

SAFE = [
    "alter table users add column note text",
    "alter table users add column created timestamptz default now()",
    "alter table users add column ts timestamptz not null default current_timestamp",
    "alter table users add column flags int not null default 0",
    "alter table users add column meta jsonb default '{}'::jsonb",
    "alter table users alter column note set default 'x'",
    "alter table users add constraint age_pos check (age > 0) not valid",
    "alter table users validate constraint age_pos",
    "alter table orders add constraint o_u foreign key (user_id) references users (id) not valid",
    "alter table users add constraint users_email_key unique using index users_email_idx",
    "create temp table scratch (id int)",
    "do $$ begin perform 1; end $$",
    "create function f() returns int language sql as $b$ select 1; $b$",
    "insert into users (id) values (1)",
    "update users set note = 'x' where id = 1",
]


@pytest.mark.parametrize(("sql", "rule"), UNSAFE)
def test_each_unsafe_operation_is_reported_at_its_line(tmp_path: Path, sql: str, rule: str):
    assert _found(tmp_path, f"-- a comment first\n\nselect 1;\n{sql};\n") == [(4, rule)]


@pytest.mark.parametrize("sql", SAFE)
def test_the_safe_forms_pass(tmp_path: Path, sql: str):
    assert _found(tmp_path, f"{sql};\n") == []


def test_set_not_null_passes_after_a_validated_check_in_the_run(tmp_path: Path):
    sql = (
        "alter table users add constraint users_email_nn check (email is not null) not valid;\n"
        "alter table users validate constraint users_email_nn;\n"
        "alter table users alter column email set not null;\n"
        "alter table users alter column name set not null;\n"  # no check for this one
    )
    assert _found(tmp_path, sql) == [(4, "set-not-null")]
    # a NOT VALID check proves nothing: the server still scans
    not_valid = "alter table users add constraint c check (email is not null) not valid;\n"
    assert _found(tmp_path, not_valid + "alter table users alter column email set not null;\n") == [
        (2, "set-not-null")
    ]


def test_the_concurrent_forms_pass_in_a_no_transaction_file(tmp_path: Path):
    sql = (
        "-- no-transaction\n"
        "create index concurrently if not exists users_email_idx on users (email);\n"
        "drop index concurrently if exists users_old;\n"
        "reindex index concurrently users_email_idx;\n"
    )
    assert _found(tmp_path, sql) == []


def test_tables_created_in_the_run_are_not_live(tmp_path: Path):
    first = "create table accounts (id bigint, email text);\ncreate table tmp as select 1 as x;\n"
    sql = (
        "create index accounts_email on accounts (email);\n"
        "alter table accounts add primary key (id);\n"
        "alter table accounts alter column email set not null;\n"
        "alter table accounts add column token uuid default gen_random_uuid();\n"
        "alter table accounts rename column email to mail;\n"
        "alter table accounts rename to members;\n"
        "alter table members drop column mail;\n"  # still new under its new name
        "drop index accounts_email;\n"
        "drop table tmp;\n"
        "alter table users drop column x;\n"  # but users is live
    )
    assert _found(tmp_path, sql, first=first) == [(10, "drop-column")]


def test_an_acknowledged_statement_passes_and_a_marker_needs_a_reason(tmp_path: Path):
    sql = (
        "-- unsafe-ok: the column is unused since release 41 (PR 812)\n"
        "alter table users drop column legacy;\n"
        "alter table users rename column nick to handle; -- unsafe-ok: read nowhere since v40\n"
        "/* unsafe-ok: sessions is empty */ drop table sessions;\n"
        "alter table users drop column other; -- a trailing comment that acknowledges nothing\n"
        "-- unsafe-ok\n"
        "alter table users drop column third;\n"
    )
    assert _found(tmp_path, sql) == [(5, "drop-column"), (7, "drop-column"), (7, "ack-needs-reason")]


def test_a_marker_after_a_statement_does_not_acknowledge_the_next(tmp_path: Path):
    sql = "select 1; -- unsafe-ok: about the select\nalter table users drop column legacy;\n"
    assert _found(tmp_path, sql) == [(2, "drop-column")]


def test_a_parse_error_is_a_finding_with_its_line(tmp_path: Path):
    findings = check(
        _run(
            tmp_path, {"0001_bad.sql": "alter table users add x int;\n\nalter table users add colum y int;\n"}
        )
    )
    assert findings == [Finding("0001_bad.sql", 3, "syntax", 'syntax error at or near "int"')]
    assert str(findings[0]) == '0001_bad.sql:3: syntax: syntax error at or near "int"'
    unterminated = check(_run(tmp_path, {"0001_bad.sql": "select 1;\nselect 'abc;\n"}))
    assert [(f.line, f.rule) for f in unterminated] == [(2, "syntax")]


def test_contract_files_are_not_checked(tmp_path: Path):
    files = {
        "0002_x.sql": "-- contract: the old code stopped reading legacy in v41\n"
        "alter table users drop column legacy;\n"
    }
    migrations = _run(tmp_path, files)
    assert migrations[0].contract and check(migrations) == []


def test_a_finding_says_why_and_what_to_do_instead(tmp_path: Path):
    (finding,) = check(_run(tmp_path, {"0007_x.sql": "alter table users alter column email set not null;"}))
    assert str(finding) == (
        "0007_x.sql:1: set-not-null: SET NOT NULL holds ACCESS EXCLUSIVE while it scans every row; instead: "
        "ADD CONSTRAINT c CHECK (col IS NOT NULL) NOT VALID, then VALIDATE CONSTRAINT c; SET NOT NULL then "
        "uses the validated check and scans nothing"
    )


def test_the_recipes_in_the_docs_pass_the_check(tmp_path: Path):
    """Every file of docs/migrations.md's recipes, as one run on live tables."""
    files = docs_recipes()
    assert len(files) == 13  # every change in the list has its files
    migrations = _run(tmp_path, files)
    assert check(migrations) == []
    assert {m.file for m in migrations if m.contract} == {
        "0011_orders_drop_legacy.sql",
        "0022_users_drop_name.sql",
        "0070_drop_sessions.sql",
    }
