"""A migration callable that records each run (it runs at every start)."""


def migrate(conn):
    conn.execute("create table if not exists migration_runs (app text, at timestamptz default now())")
    conn.execute("insert into migration_runs (app) values (current_setting('application_name'))")
