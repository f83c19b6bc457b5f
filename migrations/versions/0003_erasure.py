"""erasure: when a person's data was erased; an index for pruning old subjects

Revision ID: 0003_erasure
Revises: 0002_admin_sessions
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import nudger.db


revision: str = '0003_erasure'
down_revision: str | None = '0002_admin_sessions'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('person') as batch_op:
        batch_op.add_column(sa.Column('erased_at', nudger.db.UTCDateTime(), nullable=True))
    op.create_index(
        'ix_outbox_retained',
        'outbox',
        ['created_at'],
        unique=False,
        sqlite_where=sa.text('subject IS NOT NULL'),
        postgresql_where=sa.text('subject IS NOT NULL'),
    )


def downgrade() -> None:
    op.drop_index(
        'ix_outbox_retained',
        table_name='outbox',
        sqlite_where=sa.text('subject IS NOT NULL'),
        postgresql_where=sa.text('subject IS NOT NULL'),
    )
    with op.batch_alter_table('person') as batch_op:
        batch_op.drop_column('erased_at')
