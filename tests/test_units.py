"""Pure logic: config loading and target classification."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.errors import ConfigError, HookError, TargetError
from supervisor.hooks import NAMES, Hooks
from supervisor.settings import config, load
from supervisor.target import Kind, classify, split


def test_defaults_and_sources(tmp_path: Path):
    cfg = load.load("app:main", environ={}, cwd=tmp_path)
    assert cfg.timeout == 30.0 and cfg.preload is False and cfg.workers >= 1
    assert set(cfg.sources.values()) == {"default"}


def test_programmatic_values_are_checked():
    with pytest.raises(ConfigError, match=r"workers: expected int, got str '4' \(from Supervisor"):
        load.load("a:b", {"workers": ("4", "Supervisor(workers=)")}, environ={})
    with pytest.raises(
        ConfigError,
        match=r"log_format: must be one of auto, console, json, got 'jsn' "
        r"\(from x\); did you mean 'json'\?",
    ):
        load.load("a:b", {"log_format": ("jsn", "x")}, environ={})


def test_empty_env_var_counts_as_unset(tmp_path: Path):
    cfg = load.load("a:b", environ={"SUPERVISE_WORKERS": " "}, cwd=tmp_path)
    assert cfg.sources["workers"] == "default"


def test_dashed_keys_in_the_file(tmp_path: Path):
    (tmp_path / "supervise.toml").write_text("graceful-timeout = 2\n")
    cfg = load.load("a:b", environ={}, cwd=tmp_path)
    assert cfg.graceful_timeout == 2.0


def test_config_key_is_refused_inside_a_config_file(tmp_path: Path):
    (tmp_path / "supervise.toml").write_text("config = 'x.toml'\n")
    with pytest.raises(ConfigError, match="unknown setting 'config'"):
        load.load("a:b", environ={}, cwd=tmp_path)


def test_every_setting_has_a_long_flag_and_help():
    for field, meta in config.settings():
        assert config.option_name(meta).startswith("--"), field.name
        assert meta.help.endswith((".", ")")), field.name


def _main(worker): ...
async def _amain(worker): ...
def _wsgi(environ, start_response): ...
async def _asgi(scope, receive, send): ...
def _two_defaults(a, b=1, c=2): ...


@pytest.mark.parametrize(
    ("obj", "kind", "is_async"),
    [
        (_main, Kind.MAIN, False),
        (_amain, Kind.MAIN, True),
        (_wsgi, Kind.WSGI, False),
        (_asgi, Kind.ASGI, True),
        (_two_defaults, Kind.MAIN, False),
    ],
)
def test_classify(obj, kind, is_async):
    target = classify("m:x", obj)
    assert (target.kind, target.is_async) == (kind, is_async)


def test_classify_refuses_what_it_cannot_tell():
    with pytest.raises(TargetError, match="cannot tell what kind of target"):
        classify("m:x", lambda a, b, c, d: None)
    with pytest.raises(TargetError, match="is a int, not a callable"):
        classify("m:x", 3)
    with pytest.raises(TargetError, match="must take one argument"):
        classify("m:x", _wsgi, "main")


def test_split():
    assert split("pkg.mod:obj.attr") == ("pkg.mod", "obj.attr")
    for bad in ("app", "app:", ":main"):
        with pytest.raises(TargetError, match="must look like 'module:attribute'"):
            split(bad)


def test_hooks_setup_order_and_teardown_order():
    calls = []
    hooks = Hooks()
    hooks.register("after_fork", lambda w: calls.append("user"))
    hooks.register("after_fork", lambda w: calls.append("builtin"), builtin=True)
    hooks.register("worker_exit", lambda w: calls.append("user-exit"))
    hooks.register("worker_exit", lambda w: calls.append("builtin-exit"), builtin=True)
    hooks.run("after_fork", None)
    hooks.run("worker_exit", None)
    assert calls == ["builtin", "user", "user-exit", "builtin-exit"]
    with pytest.raises(ValueError, match="unknown hook 'after_frok'"):
        hooks.register("after_frok", print)
    assert len(NAMES) == 11


def test_a_hook_failure_follows_its_policy():
    def broken(_: object) -> None:
        raise ValueError("broken")

    calls: list[str] = []
    hooks = Hooks()
    for name in ("after_fork", "worker_exit"):
        hooks.register(name, broken)
        hooks.register(name, lambda _: calls.append("after"))
    with pytest.raises(HookError, match=r"hook after_fork .* failed: ValueError: broken"):
        hooks.run("after_fork", None)
    assert calls == []  # the first failure aborts: the rest never runs
    hooks.run("worker_exit", None)  # a teardown hook: logged, and the next one still runs
    assert calls == ["after"]


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


def test_scrub_removes_the_password_anywhere():
    from supervisor.redact import scrub

    url = "postgresql://app:s3cr%ZZet@db/app"
    assert scrub('invalid percent-encoded token: "s3cr%ZZet"', url) == 'invalid percent-encoded token: "***"'
    assert "hunter2" not in scrub("password=hunter2 failed", "host=db password=hunter2")
    assert "hunter2" not in repr(config.Config(target="a:b", database_url="postgresql://u:hunter2@h/d"))


class _Asgi2:
    def __init__(self, scope): ...

    async def __call__(self, receive, send): ...


def test_classify_asgi2_class():
    target = classify("m:x", _Asgi2)
    assert target.kind is Kind.ASGI


@pytest.mark.parametrize(
    ("files", "limit"),
    [
        ({"cpu.max": "200000 100000\n"}, 2.0),
        ({"cpu.max": "150000 100000\n"}, 1.5),
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu.cfs_quota_us": "50000\n", "cpu.cfs_period_us": "100000\n"}, 0.5),
        ({"cpu.cfs_quota_us": "-1\n", "cpu.cfs_period_us": "100000\n"}, None),
        ({}, None),
        ({"cpu.max": "garbage"}, None),
    ],
)
def test_container_cpu_limit(files, limit):
    from supervisor.settings.cpus import cgroup_cpu_limit

    assert cgroup_cpu_limit(files) == limit


def test_default_workers_is_capped_by_the_container_limit(monkeypatch):
    from supervisor.settings import cpus, declare

    monkeypatch.setattr(cpus.os, "sched_getaffinity", lambda pid: set(range(64)))
    monkeypatch.setattr(cpus, "_read_cgroup_files", lambda: {"cpu.max": "150000 100000"})
    assert declare.default_workers() == 2  # 1.5 CPUs: two workers, not 64
    monkeypatch.setattr(cpus, "_read_cgroup_files", lambda: {"cpu.max": "max 100000"})
    assert declare.default_workers() == 64
