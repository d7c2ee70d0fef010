"""Flask test app: `flask_app:app` (`/`, `/db`), what a framework adds on top of
wsgi_app's bare WSGI callable. /db is one `SELECT 1` through a per-worker
psycopg_pool.ConnectionPool, or pg-supervise's own with PERF_POOL=supervise."""

import os

import perfapp_common as C
from flask import Flask

DB = C.supervise_db()
app = Flask(__name__)
_pool = {"pid": None, "pool": None}


def _get_pool():
    if DB is not None:
        return DB.pool
    if _pool["pid"] != os.getpid():  # one pool per worker, made after fork
        from psycopg_pool import ConnectionPool

        _pool["pool"] = ConnectionPool(C.DB_URL, min_size=C.POOL_MIN, max_size=C.POOL_MAX, open=True)
        _pool["pool"].wait()
        _pool["pid"] = os.getpid()
    return _pool["pool"]


@app.get("/")
def hello():
    return C.HELLO, 200, {"Content-Type": "text/plain", "X-Worker-Pid": str(os.getpid())}


@app.get("/block")
def block():
    import time

    from flask import request

    time.sleep(int(request.args.get("ms", "10")) / 1000.0)
    return b"blocked\n", 200, {"X-Worker-Pid": str(os.getpid())}


@app.get("/db")
def db():
    with _get_pool().connection() as conn:
        v = conn.execute("SELECT 1").fetchone()[0]
    return b"db %d\n" % v, 200, {"Content-Type": "text/plain", "X-Worker-Pid": str(os.getpid())}
