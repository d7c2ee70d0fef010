"""Opens a connection and a pool at import: wrong in a preloaded master."""

import os

import psycopg
from psycopg_pool import ConnectionPool

URL = os.environ["DATABASE_URL"]
conn = psycopg.connect(URL, application_name="leaky:import")
pool = ConnectionPool(
    URL, min_size=1, open=True, name="import-pool", kwargs={"application_name": "leaky:pool"}
)
pool.wait()


def main(worker):
    with worker.db.connection() as c:
        c.execute("select 1")
    worker.stopping.wait()
