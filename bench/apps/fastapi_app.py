"""FastAPI test app: `fastapi_app:app` (`/`, `/db`), what a framework adds on
top of asgi_app's bare ASGI callable. /db is one `SELECT 1` through a
per-worker psycopg_pool.AsyncConnectionPool opened in the lifespan, or
pg-supervise's own with PERF_POOL=supervise."""

import asyncio
import contextlib
import os

import perfapp_common as C
from fastapi import FastAPI, Response

DB = C.supervise_db()
_state = {"pool": None}


@contextlib.asynccontextmanager
async def lifespan(_app):
    if C.DB_URL and DB is None:
        from psycopg_pool import AsyncConnectionPool

        pool = AsyncConnectionPool(C.DB_URL, min_size=C.POOL_MIN, max_size=C.POOL_MAX, open=False)
        await pool.open(wait=True)
        _state["pool"] = pool
    yield
    if _state["pool"] is not None:
        await _state["pool"].close()


app = FastAPI(lifespan=lifespan)


@app.get("/")
async def hello() -> Response:
    return Response(C.HELLO, media_type="text/plain", headers={"X-Worker-Pid": str(os.getpid())})


@app.get("/block")
async def block(ms: int = 10) -> Response:
    import time

    time.sleep(ms / 1000.0)  # blocks the loop on purpose (the readiness probe)
    return Response(b"blocked\n", headers={"X-Worker-Pid": str(os.getpid())})


@app.get("/sleep")
async def sleep(s: int = 2) -> Response:
    await asyncio.sleep(s)
    return Response(b"slept\n", headers={"X-Worker-Pid": str(os.getpid())})


@app.get("/db")
async def db() -> Response:
    pool = DB.async_pool if DB is not None else _state["pool"]
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT 1")
        v = (await cur.fetchone())[0]
    return Response(b"db %d\n" % v, media_type="text/plain", headers={"X-Worker-Pid": str(os.getpid())})
