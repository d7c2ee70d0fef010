"""widgets"""

from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.execute("create table widgets (id bigserial primary key, name text not null)")
