"""Appends '<hook> <pid> <worker id or ->' to $HOOKS_LOG for every hook."""

import os


def _write(name, ctx):
    wid = getattr(ctx, "id", "-")
    with open(os.environ["HOOKS_LOG"], "a") as f:
        f.write(f"{name} {os.getpid()} {wid}\n")


def on_starting(m):
    _write("on_starting", m)


def when_ready(m):
    _write("when_ready", m)


def before_fork(w):
    _write("before_fork", w)


def after_fork(w):
    _write("after_fork", w)


def worker_ready(w):
    _write("worker_ready", w)


def worker_exit(w):
    _write("worker_exit", w)


def child_exit(w):
    _write("child_exit", w)


def on_reload(m):
    _write("on_reload", m)


def on_exit(m):
    _write(f"on_exit:{m.exit_code}", m)
