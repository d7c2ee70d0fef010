"""An app that declares its own Database() at module level (the documented pattern)."""

import logging

from supervisor import Database

log = logging.getLogger("own_db")
db = Database()


def main(worker):
    with db.connection() as conn:
        conn.execute("select 1")
    log.info("own database", extra={"same": worker.db is db})
    worker.stopping.wait()
