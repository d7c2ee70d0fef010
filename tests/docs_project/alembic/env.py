"""An Alembic env.py that runs on the connection pg-supervise hands over;
docs/migrations.md shows the part below as an excerpt of this file."""

from alembic import context

target_metadata = None

connection = context.config.attributes.get("connection")
if connection is not None:  # run by pg-supervise: use its locked connection
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()
else:
    raise SystemExit("run by supervise (--migrations alembic:alembic.ini) in this project")
