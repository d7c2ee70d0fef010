"""A naive ASGI app: a connection opened at import (with --preload, in the
master, or with reforking in the mold of generation 0) and kept in a global,
reopened at the first request of a process that finds it closed; and the
worker's own pool. Each answer names the backends both used, so a test sees
which process holds which connection. NAIVE_IMPORTS names a file each process
that imports it appends its pid to."""

import os

import psycopg

from supervisor import Database

URL = os.environ["DATABASE_URL"]
if os.environ.get("NAIVE_IMPORTS"):
    with open(os.environ["NAIVE_IMPORTS"], "a") as imports:
        imports.write(f"{os.getpid()}\n")
db = Database()
_conn = psycopg.connect(URL, autocommit=True, application_name="naive:global")


async def app(scope, receive, send):
    global _conn
    if scope["type"] != "http":
        return
    if _conn.closed:  # the fork guard closed the one this process inherited
        _conn = psycopg.connect(URL, autocommit=True, application_name="naive:global")
    (naive,) = _conn.execute("select pg_backend_pid()").fetchone()
    async with db.async_pool.connection() as conn:
        cur = await conn.execute("select pg_backend_pid()")
        (pooled,) = await cur.fetchone()
    body = f"pid={os.getpid()} naive={naive} pooled={pooled}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})
