from alembic import op

revision = "0001"
down_revision = None


def upgrade():
    op.execute("create table widgets (id int)")
    op.execute("insert into widgets values (1)")
    op.execute("select pg_sleep(0.3)")
