"""A WSGI app whose request threads query the worker's own pool."""

import os

from supervisor import Database

db = Database()


def app(environ, start_response):
    with db.connection() as conn:
        app_name = conn.execute("select current_setting('application_name')").fetchone()[0]
    body = f"pid={os.getpid()} app={app_name}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
