"""A WSGI app whose request threads share the worker's own pool.

    supervise examples.web.wsgi_app:app -w 2 --threads 4 --database-url postgresql://... \
        --migrations examples/web/migrations
"""

import json
import os

from supervisor import Database

db = Database()


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    with db.connection() as conn:  # committed when the block ends
        conn.execute("insert into visits (path, pid) values (%s, %s)", (path, os.getpid()))
        (count,) = conn.execute("select count(*) from visits where path = %s", (path,)).fetchone()
    body = json.dumps({"path": path, "visits": count, "pid": os.getpid()}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
