"""main(worker) targets that use the worker's own pool."""

import logging

import psycopg

log = logging.getLogger("dbapp")


def query_loop(worker):
    """Query every 50 ms; log each success and each failure."""
    ok = 0
    while not worker.stopping.wait(0.05):
        try:
            with worker.db.connection() as conn:
                pid, app = conn.execute(
                    "select pg_backend_pid(), current_setting('application_name')"
                ).fetchone()
            ok += 1
            if ok == 1 or ok % 20 == 0:
                log.info("query ok", extra={"backend_pid": pid, "application_name": app, "ok": ok})
        except psycopg.Error as exc:
            log.warning("query failed", extra={"error": type(exc).__name__})


def hold(worker):
    with worker.db.connection() as conn:
        pid = conn.execute("select pg_backend_pid()").fetchone()[0]
    log.info("backend", extra={"backend_pid": pid, "slot": worker.id})
    worker.stopping.wait()


async def async_queries(worker):
    async with worker.db.async_pool.connection() as conn:
        cur = await conn.execute("select current_setting('application_name')")
        (app,) = await cur.fetchone()
    try:
        worker.db.pool  # noqa: B018
    except Exception as exc:
        log.info("sync pool refused", extra={"error": str(exc)})
    log.info("async query ok", extra={"application_name": app})
    await worker.stop_requested()


def unreachable(worker):
    while not worker.stopping.wait(0.1):
        try:
            with worker.db.connection(timeout=0.5) as conn:
                conn.execute("select 1")
        except Exception:
            pass
