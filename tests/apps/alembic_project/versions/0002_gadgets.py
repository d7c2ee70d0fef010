from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade():
    op.execute("create table gadgets (id int)")
