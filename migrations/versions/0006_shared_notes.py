"""shared step notes: a note offered to later learners, and an admin's hiding of it;
a manager's unanswered check-ins waiting for their next digest; the self-manager
gap over matched pairs

Revision ID: 0006_shared_notes
Revises: 0005_ratings
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import nudger.db


revision: str = '0006_shared_notes'
down_revision: str | None = '0005_ratings'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GAPS_FROM_RATINGS = """
    INSERT INTO ratinggap (journey_id, behaviour, checkpoint_order, difference, count)
    SELECT s.journey_id, s.behaviour, s.checkpoint_order, s.value - m.value, COUNT(*)
    FROM rating s
    JOIN rating m ON m.enrolment_id = s.enrolment_id AND m.behaviour = s.behaviour
                 AND m.checkpoint_order = s.checkpoint_order AND m.rater = 'manager'
    WHERE s.rater = 'learner' AND s.value IS NOT NULL AND m.value IS NOT NULL
    GROUP BY s.journey_id, s.behaviour, s.checkpoint_order, s.value - m.value
"""


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
    op.create_table('ratinggap',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('journey_id', sa.Integer(), nullable=False),
    sa.Column('behaviour', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('checkpoint_order', sa.Integer(), nullable=False),
    sa.Column('difference', sa.Integer(), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['journey_id'], ['journey.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('journey_id', 'behaviour', 'checkpoint_order', 'difference')
    )
    # Ratings saved before this table existed: their differences, summed once.
    op.execute(GAPS_FROM_RATINGS)


def downgrade() -> None:
    op.drop_table('ratinggap')
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
