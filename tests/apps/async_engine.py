"""An AsyncEngine made at import, tracked, used from an async main in each worker
(tests/processes/test_integrations_sqlalchemy.py)."""

import logging
import os

import psycopg
from sqlalchemy import URL, text
from sqlalchemy.ext.asyncio import create_async_engine

import supervisor.integrations.sqlalchemy as pgs_sqlalchemy

log = logging.getLogger("async_engine")
params = psycopg.conninfo.conninfo_to_dict(os.environ["DATABASE_URL"])
engine = pgs_sqlalchemy.track(
    create_async_engine(
        URL.create(
            "postgresql+psycopg",
            username=params.get("user"),
            host=params.get("host"),
            port=int(params.get("port", 5432)),
            database=params.get("dbname"),
        )
    )
)


async def main(worker):
    async with engine.connect() as conn:
        backend = (await conn.execute(text("select pg_backend_pid()"))).scalar()
    log.info("async engine answered", extra={"backend": backend})
    await worker.stop_requested()
    await engine.dispose()
