"""shared step notes: a note offered to later learners, and an admin's hiding of it;
a manager's unanswered check-ins waiting for their next digest

Revision ID: 0006_shared_notes
Revises: 0005_ratings
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import nudger.db


revision: str = '0006_shared_notes'
down_revision: str | None = '0005_ratings'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('enrolmentstep', schema=None) as batch_op:
        # Notes written before the choice existed were never offered to anyone.
        batch_op.add_column(
            sa.Column('note_for_others', sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(sa.Column('note_hidden_at', nudger.db.UTCDateTime(), nullable=True))
        batch_op.create_index(
            'ix_enrolmentstep_shared_notes', ['step_id', 'done_at'], unique=False,
            sqlite_where=sa.text('note_for_others = 1'),
            postgresql_where=sa.text('note_for_others'),
        )
    with op.batch_alter_table('checkin', schema=None) as batch_op:
        batch_op.add_column(sa.Column('digest_at', nudger.db.UTCDateTime(), nullable=True))
        batch_op.create_index(
            'ix_checkin_digest', ['digest_at'], unique=False,
            sqlite_where=sa.text('digest_at IS NOT NULL'),
            postgresql_where=sa.text('digest_at IS NOT NULL'),
        )


def downgrade() -> None:
    with op.batch_alter_table('checkin', schema=None) as batch_op:
        batch_op.drop_index(
            'ix_checkin_digest',
            sqlite_where=sa.text('digest_at IS NOT NULL'),
            postgresql_where=sa.text('digest_at IS NOT NULL'),
        )
        batch_op.drop_column('digest_at')
    with op.batch_alter_table('enrolmentstep', schema=None) as batch_op:
        batch_op.drop_index(
            'ix_enrolmentstep_shared_notes',
            sqlite_where=sa.text('note_for_others = 1'),
            postgresql_where=sa.text('note_for_others'),
        )
        batch_op.drop_column('note_hidden_at')
        batch_op.drop_column('note_for_others')
