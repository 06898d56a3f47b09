"""An indexed semver sort key on versions: latest and ranges become one indexed lookup.

``sort_key`` is :meth:`Version.index_key` of the version, written with the row; this
migration backfills it for rows written before. Its byte order is semver precedence, so
PostgreSQL compares it with the "C" collation (SQLite compares bytes already).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

from sentenialx.hub.refs import Version

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    collation = "C" if bind.dialect.name == "postgresql" else None
    op.add_column("versions", sa.Column("sort_key", sa.String(700, collation=collation),
                                        nullable=True))
    rows = bind.execute(sa.text("SELECT id, version FROM versions")).all()
    if rows:
        bind.execute(sa.text("UPDATE versions SET sort_key = :k WHERE id = :id"),
                     [{"k": Version.parse(v).index_key(), "id": i} for i, v in rows])
    op.create_index("ix_versions_model_sort", "versions", ["model", "sort_key", "id"])


def downgrade() -> None:
    op.drop_index("ix_versions_model_sort", table_name="versions")
    with op.batch_alter_table("versions") as batch:
        batch.drop_column("sort_key")
