"""A WSGI app for the gunicorn and SQLAlchemy integration tests.

Each response says which process answered and on which PostgreSQL backend.
With GAPP_LEAK=1 it opens a psycopg connection and a SQLAlchemy engine
connection at import, as a careless app does, which is wrong in a preloading
master; GAPP_ENGINE=1 serves the queries through a SQLAlchemy engine.
"""

import json
import os

import psycopg

from supervisor import Database

URL = os.environ["DATABASE_URL"]
db = Database()
engine = None

if os.environ.get("GAPP_ENGINE"):
    import sqlalchemy

    import supervisor.integrations.sqlalchemy  # noqa: F401  (tracks engines that connect)

    p = psycopg.conninfo.conninfo_to_dict(URL)
    engine = sqlalchemy.create_engine(
        sqlalchemy.URL.create(
            "postgresql+psycopg",
            username=p.get("user"),
            password=p.get("password"),
            host=p.get("host"),
            port=int(p["port"]) if p.get("port") else None,
            database=p.get("dbname"),
            query={"application_name": "gapp:engine"},
        )
    )
    with engine.connect() as c:  # at import: in the master when preloaded
        backend = c.exec_driver_sql("select pg_backend_pid()").scalar()
    with open(os.environ["GAPP_IMPORT_FILE"], "w") as f:
        f.write(str(backend))

if os.environ.get("GAPP_LEAK"):
    leaked = psycopg.connect(URL, application_name="gapp:import")


def app(environ, start_response):
    if engine is not None:
        with engine.connect() as c:
            backend, name = c.exec_driver_sql(
                "select pg_backend_pid(), current_setting('application_name')"
            ).one()
    else:
        with db.connection() as conn:
            backend, name = conn.execute(
                "select pg_backend_pid(), current_setting('application_name')"
            ).fetchone()
    body = json.dumps({"pid": os.getpid(), "backend": backend, "app": name}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
