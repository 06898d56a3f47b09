"""An index on events (kind, seq): the newest event of a kind is found without a scan.

The trust policy in force is the newest ``trust`` event, read on every trust check and by
the cold ``models path``; on a long history a scan of every event made that cost grow with
the history.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_events_kind_seq", "events", ["kind", "seq"])


def downgrade() -> None:
    op.drop_index("ix_events_kind_seq", table_name="events")
