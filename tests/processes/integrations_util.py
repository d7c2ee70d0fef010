"""Helpers shared by the integration tests (real processes, real PostgreSQL)."""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path
from typing import Any

import psycopg

from conftest import APPS, Run, free_port, wait_until

PASSWORD = "pw-never-logged-7311"


def with_password(url: str) -> str:
    """``url`` with a password the server (trust auth) ignores but logs must not show."""
    params: dict[str, Any] = psycopg.conninfo.conninfo_to_dict(url)
    params["password"] = PASSWORD
    return psycopg.conninfo.make_conninfo(**params)


def get_json(port: int, path: str = "/") -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
        data: dict[str, Any] = json.loads(resp.read())
        return data


def wait_line(run: Run, text: str, count: int = 1, timeout: float = 20.0) -> list[str]:
    """Wait until ``count`` output lines contain ``text`` (gunicorn logs plain text)."""

    def found() -> list[str] | None:
        with run._lock:
            hits = [line for line in run.lines if text in line]
        return hits if len(hits) >= count else None

    hits: list[str] = wait_until(found, timeout, f"{count}x {text!r}\n--- output ---\n{run.output()}")
    return hits


def gunicorn(start: Any, tmp_path: Path, conf: str, *args: str, env: dict[str, str]) -> tuple[Run, int]:
    """Start gunicorn with ``conf`` as its config file; returns the run and its port."""
    port = free_port()
    path = tmp_path / "gunicorn.conf.py"
    path.write_text(conf)
    cmd = [sys.executable, "-m", "gunicorn", "-c", str(path), "-b", f"127.0.0.1:{port}", *args]
    run = start(cmd=cmd, env={"PYTHONPATH": str(APPS), **env})
    return run, port


def full_output(run: Run) -> str:
    with run._lock:
        return "\n".join(run.lines)
