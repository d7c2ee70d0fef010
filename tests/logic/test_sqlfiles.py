"""SQL migration files: statements split where PostgreSQL would, and the checksum."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (
            "create table a (x int); create index concurrently i on a (x);",
            ["create table a (x int)", "create index concurrently i on a (x)"],
        ),
        ("insert into t values ('a;b', 'it''s; fine');", ["insert into t values ('a;b', 'it''s; fine')"]),
        ("select E'it\\'s; here'; select 2", ["select E'it\\'s; here'", "select 2"]),
        ("/* a /* b */ c; */ select 1; select 2", ["/* a /* b */ c; */ select 1", "select 2"]),
        (
            "create function f() returns int as $body$ select 1; $body$ language sql; select 3",
            ["create function f() returns int as $body$ select 1; $body$ language sql", "select 3"],
        ),
        ("select a$b$c from t; select 4", ["select a$b$c from t", "select 4"]),
        (
            'select 1 as "x;y"; -- trailing; comment\nselect 5',
            ['select 1 as "x;y"', "-- trailing; comment\nselect 5"],
        ),
        ("-- only a comment;\n", []),
        (
            "create function f() returns int language sql begin atomic select 1; "
            "select case when true then 2 end; end; select 6",
            [
                "create function f() returns int language sql begin atomic select 1; "
                "select case when true then 2 end; end",
                "select 6",
            ],
        ),
        ("begin; select 7; end;", ["begin", "select 7", "end"]),
    ],
)
def test_split_statements(sql, expected):
    from supervisor.migrate.sqlfiles import statements

    assert [s.sql for s in statements(sql)] == expected


def test_statements_are_numbered_by_their_first_token():
    from supervisor.migrate.sqlfiles import statements

    sql = "-- no-transaction\n\ncreate table a (x int);\n/* why */\nalter table a\n  add y int; select 1;"
    assert [s.line for s in statements(sql)] == [3, 5, 6]


def test_checksum_ignores_line_endings_and_bom():
    from supervisor.migrate.sqlfiles import checksum

    assert checksum("a;\nb;\n") == checksum("a;\r\nb;\r\n") == checksum("\ufeffa;\nb;\n")
    assert checksum("a;\n") != checksum("a; \n")
