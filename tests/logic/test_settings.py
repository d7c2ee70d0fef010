"""Settings in the test process: defaults and where each value came from, the
config file, environment variables, keyword arguments, and the bounds every
number is checked against (the command line's side is processes/test_bounds.py)."""

from __future__ import annotations

import signal
from dataclasses import replace
from pathlib import Path

import pytest

from supervisor.errors import ConfigError
from supervisor.hooks import Hooks
from supervisor.master import Master
from supervisor.master.handle import Slot
from supervisor.settings import config, load
from supervisor.settings.config import Config
from supervisor.settings.declare import MAX_WORKERS


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


# -- bounds: every number has a range --------------------------------------------


def test_keywords_are_checked_the_same_way(tmp_path: Path):
    from supervisor import Supervisor
    from supervisor.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^timeout: must be a finite number of seconds, got nan"):
        Supervisor("mains:wait", timeout=float("nan")).load_config()


def test_ttin_stops_at_the_worker_cap():
    cfg = replace(Config(target="app:main"), workers=MAX_WORKERS)
    master = Master(cfg, Hooks())
    master.slots = {i: Slot(i) for i in range(1, MAX_WORKERS + 1)}
    master.on_signal(signal.SIGTTIN, 0.0)
    assert master.config.workers == MAX_WORKERS
