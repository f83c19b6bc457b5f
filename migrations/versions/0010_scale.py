"""indexes for a million enrolments: the ledger's filters, retention oldest first, search, the dashboard's snapshot

Revision ID: 0010_scale
Revises: 0009_api_tokens
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import nudger.db

revision: str = '0010_scale'
down_revision: str | None = '0009_api_tokens'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FAILED = "state = 'failed' AND last_error LIKE '5__ %'"
FAILED_OTHER = "state = 'failed' AND last_error NOT LIKE '5__ %'"


TRIGRAMS = [
    ('ix_person_email_trgm', 'person', 'email'),
    ('ix_person_name_trgm', 'person', 'name'),
    ('ix_outbox_to_email_trgm', 'outbox', 'to_email'),
]


def upgrade() -> None:
    op.create_table('dashboardsnapshot',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('computed_at', nudger.db.UTCDateTime(), nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    if op.get_bind().dialect.name == 'postgresql':
        # Searches for any part of an address or a name read these, not every row.
        op.execute('CREATE EXTENSION IF NOT EXISTS pg_trgm')
        for name, table, expression in TRIGRAMS:
            op.execute(f'CREATE INDEX {name} ON {table} USING gin ({expression} gin_trgm_ops)')
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
    op.drop_table('dashboardsnapshot')
    if op.get_bind().dialect.name == 'postgresql':
        for name, _table, _expression in TRIGRAMS:
            op.execute(f'DROP INDEX {name}')
    with op.batch_alter_table('linkhit', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_linkhit_at'))
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_failed')
        batch_op.drop_index('ix_outbox_bounced')
        batch_op.drop_index('ix_outbox_created')
        batch_op.drop_index('ix_outbox_kind_id')
        batch_op.drop_index('ix_outbox_state_id')
