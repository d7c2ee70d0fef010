"""Hooks in one process: their order (built-in around user), and the policy on a failure."""

from __future__ import annotations

import pytest

from supervisor.errors import HookError
from supervisor.hooks import NAMES, Hooks


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
