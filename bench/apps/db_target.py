"""Units of work for bench/db_bench.py: one `select 1` each, counted."""

import logging
import os

import psycopg

log = logging.getLogger("dbbench")


def pooled(worker):
    done = 0
    while not worker.stopping.is_set():
        with worker.db.connection() as conn:
            conn.execute("select 1").fetchone()
        done += 1
    log.info("units", extra={"units": done})


def connect_each(worker):
    url = os.environ["DATABASE_URL"]
    done = 0
    while not worker.stopping.is_set():
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("select 1").fetchone()
        done += 1
    log.info("units", extra={"units": done})
