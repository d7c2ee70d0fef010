"""The launch table: every server the benches run, ours and the peers, in one place.

A command is a template: ``{port}``, ``{workers}``, ``{host}``, ``{apps}`` (the
test apps folder), ``{bench}`` (this folder's parent) and ``{db}`` (the
PostgreSQL URL of the run, from ``PERF_DB_URL``) are filled in at launch, in
the command and in ``env`` values. The names and commands of the entries that
produced the recorded results in ``results/`` are kept as they were, so new
runs stay comparable with them.

Peers run the apps' own plain psycopg_pool for ``/db``; the ``*-pool`` entries
are pg-supervise serving ``/db`` from its own per-worker pool (``PERF_POOL=
supervise``), the product path, with the connection-check window at its
default (``--pool-check-idle 2``) or at 0 (a round trip on every checkout).
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
from dataclasses import dataclass, field

BENCH = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APPS = os.path.join(BENCH, "apps")
HOST = "127.0.0.1"  # loopback only


@dataclass(frozen=True)
class Peer:
    cmd: str
    kind: str  # "asgi" or "wsgi": which test app it serves ("main": supervisor_bench's target)
    preload: bool = False
    env: dict[str, str] = field(default_factory=dict)
    reload_signal: str = "SIGHUP"
    term_signal: str = "SIGTERM"
    needs: str | None = None  # an executable that must be installed (optional peers)
    needs_module: str | None = None  # a module the app imports (Flask, FastAPI)
    note: str = ""

    def available(self) -> bool:
        if self.needs_module is not None and importlib.util.find_spec(self.needs_module) is None:
            return False
        return self.needs is None or shutil.which(self.needs) is not None


_SUPERVISE = "supervise {app} -w {{workers}} --bind 127.0.0.1:{{port}} --log-level warning"
# the apps' own pools are 2..4 connections per worker: ours gets the same
_OWN_POOL = {"PERF_POOL": "supervise", "DATABASE_URL": "{db}"}
_POOL = " --pool-min-size 2 --pool-max-size 4 --pool-check-idle"
_ASGI = _SUPERVISE.format(app="asgi_app:app")
_WSGI = _SUPERVISE.format(app="wsgi_app:app")
_UVICORN = "uvicorn --workers {{workers}} --host 127.0.0.1 --port {{port}} {opts} --no-access-log {app}"
_NODELAY = "python {{bench}}/launchers/uvicorn_nodelay.py " + _UVICORN.removeprefix("uvicorn ")
_H11 = "--http h11 --loop asyncio"
_STD = "--http httptools --loop uvloop"
_GRANIAN = "granian --interface {iface} --workers {{workers}} --host 127.0.0.1 --port {{port}} {app}"

PEERS: dict[str, Peer] = {
    # -- ours -------------------------------------------------------------------
    "pg-supervise": Peer(_ASGI, "asgi"),
    "pg-supervise-preload": Peer(_ASGI + " --preload", "asgi", preload=True),
    # access lines are logged at info level
    "pg-supervise-access-log": Peer(_ASGI.replace("warning", "info") + " --access-log", "asgi"),
    "pg-supervise-wsgi": Peer(_WSGI + " --threads 4", "wsgi"),
    "pg-supervise-wsgi-sync": Peer(_WSGI + " --threads 1", "wsgi"),
    "pg-supervise-wsgi-preload": Peer(_WSGI + " --threads 4 --preload", "wsgi", preload=True),
    "pg-supervise-pool": Peer(_ASGI + _POOL + " 2", "asgi", env=_OWN_POOL),
    "pg-supervise-pool-check-every": Peer(_ASGI + _POOL + " 0", "asgi", env=_OWN_POOL),
    "pg-supervise-pool-access-log": Peer(
        _ASGI.replace("warning", "info") + " --access-log" + _POOL + " 2", "asgi", env=_OWN_POOL
    ),
    "pg-supervise-wsgi-pool": Peer(_WSGI + " --threads 4" + _POOL + " 2", "wsgi", env=_OWN_POOL),
    # --preload on the defaults reforks (a mold imports the app; reforks at 100 and 1,000 requests)
    "pg-supervise-pool-preload": Peer(_ASGI + _POOL + " 2 --preload", "asgi", env=_OWN_POOL, preload=True),
    "pg-supervise-pool-preload-no-refork": Peer(
        _ASGI + _POOL + " 2 --preload --refork-after off", "asgi", env=_OWN_POOL, preload=True
    ),
    "pg-supervise-wsgi-pool-preload": Peer(
        _WSGI + " --threads 4" + _POOL + " 2 --preload", "wsgi", env=_OWN_POOL, preload=True
    ),
    "pg-supervise-wsgi-pool-preload-no-refork": Peer(
        _WSGI + " --threads 4" + _POOL + " 2 --preload --refork-after off",
        "wsgi",
        env=_OWN_POOL,
        preload=True,
    ),
    "pg-supervise-wsgi-pool-check-every": Peer(_WSGI + " --threads 4" + _POOL + " 0", "wsgi", env=_OWN_POOL),
    # the same with granian's Rust HTTP stack in our workers (--http granian)
    "pg-supervise-granian": Peer(_ASGI + " --http granian", "asgi", needs="granian"),
    "pg-supervise-granian-wsgi": Peer(_WSGI + " --http granian --threads 4", "wsgi", needs="granian"),
    "pg-supervise-granian-pool": Peer(
        _ASGI + " --http granian" + _POOL + " 2", "asgi", env=_OWN_POOL, needs="granian"
    ),
    "pg-supervise-granian-wsgi-pool": Peer(
        _WSGI + " --http granian --threads 4" + _POOL + " 2", "wsgi", env=_OWN_POOL, needs="granian"
    ),
    # supervisor_bench.py: a plain main(worker) target and gunicorn sync on the same
    # module, each printing a ready marker from its ready hook (the target stays last)
    "pg-supervise-main": Peer(
        "supervise -w {workers} --hooks bench_hooks --log-format json bench_target:main", "main"
    ),
    "gunicorn-sync-main": Peer(
        "gunicorn -w {workers} -b 127.0.0.1:{port} -c bench_gunicorn_conf.py bench_target:app", "main"
    ),
    # -- uvicorn's own supervisor (baseline: the pure-Python stack of `pip install uvicorn`)
    "uvicorn": Peer(_UVICORN.format(opts=_H11, app="asgi_app:app"), "asgi"),
    "uvicorn-std": Peer(_UVICORN.format(opts=_STD, app="asgi_app:app"), "asgi"),
    "uvicorn-starlette": Peer(_UVICORN.format(opts=_H11, app="starlette_app:app"), "asgi"),
    # the same with TCP_NODELAY on the listening socket (uvicorn --workers leaves Nagle on)
    "uvicorn-nodelay": Peer(_NODELAY.format(opts=_H11, app="asgi_app:app"), "asgi"),
    "uvicorn-std-nodelay": Peer(_NODELAY.format(opts=_STD, app="asgi_app:app"), "asgi"),
    "uvicorn-starlette-nodelay": Peer(_NODELAY.format(opts=_H11, app="starlette_app:app"), "asgi"),
    # -- gunicorn ---------------------------------------------------------------
    "gunicorn-sync": Peer("gunicorn -w {workers} -b 127.0.0.1:{port} wsgi_app:app", "wsgi"),
    "gunicorn-sync-preload": Peer(
        "gunicorn --preload -w {workers} -b 127.0.0.1:{port} wsgi_app:app", "wsgi", preload=True
    ),
    "gunicorn-gthread": Peer(
        "gunicorn -w {workers} -k gthread --threads 4 -b 127.0.0.1:{port} wsgi_app:app", "wsgi"
    ),
    "gunicorn-uvicorn": Peer(
        "gunicorn -w {workers} -k uvicorn_worker.UvicornH11Worker -b 127.0.0.1:{port} asgi_app:app", "asgi"
    ),
    "gunicorn-uvicorn-preload": Peer(
        "gunicorn --preload -w {workers} -k uvicorn_worker.UvicornH11Worker -b 127.0.0.1:{port} asgi_app:app",
        "asgi",
        preload=True,
    ),
    "gunicorn-uvicorn-std": Peer(
        "gunicorn -w {workers} -k uvicorn_worker.UvicornWorker -b 127.0.0.1:{port} asgi_app:app", "asgi"
    ),
    "gunicorn-asgi-native": Peer(
        "gunicorn -w {workers} -k asgi --asgi-loop asyncio -b 127.0.0.1:{port} asgi_app:app", "asgi"
    ),
    # -- a framework on top (Flask, FastAPI): what users run ----------------------
    "pg-supervise-flask": Peer(
        _SUPERVISE.format(app="flask_app:app") + " --threads 4", "wsgi", needs_module="flask"
    ),
    "pg-supervise-flask-pool": Peer(
        _SUPERVISE.format(app="flask_app:app") + " --threads 4" + _POOL + " 2",
        "wsgi",
        env=_OWN_POOL,
        needs_module="flask",
    ),
    "gunicorn-gthread-flask": Peer(
        "gunicorn -w {workers} -k gthread --threads 4 -b 127.0.0.1:{port} flask_app:app",
        "wsgi",
        needs_module="flask",
    ),
    "pg-supervise-fastapi": Peer(_SUPERVISE.format(app="fastapi_app:app"), "asgi", needs_module="fastapi"),
    "pg-supervise-fastapi-pool": Peer(
        _SUPERVISE.format(app="fastapi_app:app") + _POOL + " 2", "asgi", env=_OWN_POOL, needs_module="fastapi"
    ),
    "uvicorn-std-fastapi": Peer(
        _UVICORN.format(opts=_STD, app="fastapi_app:app"), "asgi", needs_module="fastapi"
    ),
    # -- granian (Rust HTTP engine), when installed -------------------------------
    "granian-asgi": Peer(_GRANIAN.format(iface="asgi", app="asgi_app:app"), "asgi", needs="granian"),
    "granian-wsgi": Peer(_GRANIAN.format(iface="wsgi", app="wsgi_app:app"), "wsgi", needs="granian"),
    "granian-flask": Peer(
        _GRANIAN.format(iface="wsgi", app="flask_app:app"), "wsgi", needs="granian", needs_module="flask"
    ),
    "granian-fastapi": Peer(
        _GRANIAN.format(iface="asgi", app="fastapi_app:app"), "asgi", needs="granian", needs_module="fastapi"
    ),
}


def fill(template: str, *, port: int, workers: int, db: str = "") -> str:
    return (
        template.replace("{port}", str(port))
        .replace("{workers}", str(workers))
        .replace("{host}", HOST)
        .replace("{apps}", APPS)
        .replace("{bench}", BENCH)
        .replace("{db}", db)
    )


def launch_spec(
    cmd: str, env: dict[str, str], *, port: int, workers: int
) -> tuple[list[str], dict[str, str]]:
    """argv and environment for one launch: the test apps importable, output
    unbuffered, placeholders filled (``{db}`` from ``PERF_DB_URL``)."""
    db = env.get("PERF_DB_URL") or os.environ.get("PERF_DB_URL", "")
    full = dict(os.environ)
    full["PYTHONPATH"] = APPS + (os.pathsep + full["PYTHONPATH"] if full.get("PYTHONPATH") else "")
    full["PYTHONUNBUFFERED"] = "1"
    full.update({k: fill(v, port=port, workers=workers, db=db) for k, v in env.items()})
    return shlex.split(fill(cmd, port=port, workers=workers, db=db)), full
