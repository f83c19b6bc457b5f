"""indexes for a million enrolments: the ledger's filters, retention oldest first

Revision ID: 0010_scale
Revises: 0005_ratings
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0010_scale'
down_revision: str | None = '0005_ratings'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FAILED = "state = 'failed' AND last_error LIKE '5__ %'"
FAILED_OTHER = "state = 'failed' AND last_error NOT LIKE '5__ %'"


def upgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_state_id', ['state', 'id'], unique=False)
        batch_op.create_index('ix_outbox_kind_id', ['kind', 'id'], unique=False)
        batch_op.create_index('ix_outbox_created', ['created_at'], unique=False)
        batch_op.create_index(
            'ix_outbox_bounced', ['id'], unique=False,
            sqlite_where=sa.text(FAILED), postgresql_where=sa.text(FAILED),
        )
        batch_op.create_index(
            'ix_outbox_failed', ['id'], unique=False,
            sqlite_where=sa.text(FAILED_OTHER), postgresql_where=sa.text(FAILED_OTHER),
        )
    with op.batch_alter_table('linkhit', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_linkhit_at'), ['at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('linkhit', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_linkhit_at'))
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_failed')
        batch_op.drop_index('ix_outbox_bounced')
        batch_op.drop_index('ix_outbox_created')
        batch_op.drop_index('ix_outbox_kind_id')
        batch_op.drop_index('ix_outbox_state_id')
