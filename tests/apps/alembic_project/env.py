"""env.py that uses the connection pg-supervise hands over (Alembic's shared-connection recipe)."""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None)
with context.begin_transaction():
    context.run_migrations()
