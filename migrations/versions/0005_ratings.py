"""check-ins and ratings of a journey's behaviours

Revision ID: 0005_ratings
Revises: 0003_erasure
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import nudger.db


revision: str = '0005_ratings'
down_revision: str | None = '0003_erasure'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('enrolment', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('checkins_planned', sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.create_index(
            'ix_enrolment_checkins_unplanned', ['id'], unique=False,
            sqlite_where=sa.text('checkins_planned = 0'),
            postgresql_where=sa.text('NOT checkins_planned'),
        )
    op.create_table('checkin',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('enrolment_id', sa.Integer(), nullable=False),
    sa.Column('journey_id', sa.Integer(), nullable=False),
    sa.Column('rater', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('checkpoint', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
    sa.Column('send_at', nudger.db.UTCDateTime(), nullable=False),
    sa.Column('rater_id', sa.Integer(), nullable=True),
    sa.Column('sent_at', nudger.db.UTCDateTime(), nullable=True),
    sa.Column('closes_at', nudger.db.UTCDateTime(), nullable=True),
    sa.Column('remind_at', nudger.db.UTCDateTime(), nullable=True),
    sa.Column('reminded_at', nudger.db.UTCDateTime(), nullable=True),
    sa.Column('answered_at', nudger.db.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['enrolment_id'], ['enrolment.id'], ),
    sa.ForeignKeyConstraint(['journey_id'], ['journey.id'], ),
    sa.ForeignKeyConstraint(['rater_id'], ['person.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('enrolment_id', 'rater', 'checkpoint')
    )
    with op.batch_alter_table('checkin', schema=None) as batch_op:
        batch_op.create_index('ix_checkin_due', ['send_at'], unique=False,
            sqlite_where=sa.text("state = 'planned'"), postgresql_where=sa.text("state = 'planned'"))
        batch_op.create_index('ix_checkin_remind', ['remind_at'], unique=False,
            sqlite_where=sa.text('remind_at IS NOT NULL'),
            postgresql_where=sa.text('remind_at IS NOT NULL'))
        batch_op.create_index('ix_checkin_rates',
            ['journey_id', 'checkpoint', 'rater', 'state', 'answered_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_checkin_enrolment_id'), ['enrolment_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_checkin_rater_id'), ['rater_id'], unique=False)
    op.create_table('rating',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('checkin_id', sa.Integer(), nullable=False),
    sa.Column('enrolment_id', sa.Integer(), nullable=False),
    sa.Column('journey_id', sa.Integer(), nullable=False),
    sa.Column('behaviour', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('rater', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('checkpoint', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('checkpoint_order', sa.Integer(), nullable=False),
    sa.Column('value', sa.Integer(), nullable=True),
    sa.Column('recorded_at', nudger.db.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['checkin_id'], ['checkin.id'], ),
    sa.ForeignKeyConstraint(['enrolment_id'], ['enrolment.id'], ),
    sa.ForeignKeyConstraint(['journey_id'], ['journey.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('checkin_id', 'behaviour')
    )
    with op.batch_alter_table('rating', schema=None) as batch_op:
        batch_op.create_index('ix_rating_panel',
            ['journey_id', 'behaviour', 'rater', 'checkpoint_order', 'enrolment_id', 'value'],
            unique=False)
        batch_op.create_index(batch_op.f('ix_rating_enrolment_id'), ['enrolment_id'], unique=False)
    op.create_table('ratingsummary',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('journey_id', sa.Integer(), nullable=False),
    sa.Column('behaviour', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('rater', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('pairs', sa.Integer(), nullable=False),
    sa.Column('start_sum', sa.Integer(), nullable=False),
    sa.Column('latest_sum', sa.Integer(), nullable=False),
    sa.Column('improved', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['journey_id'], ['journey.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('journey_id', 'behaviour', 'rater')
    )
    op.create_table('ratingcount',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('journey_id', sa.Integer(), nullable=False),
    sa.Column('behaviour', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('rater', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('checkpoint_order', sa.Integer(), nullable=False),
    sa.Column('value', sa.Integer(), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['journey_id'], ['journey.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('journey_id', 'behaviour', 'rater', 'checkpoint_order', 'value')
    )


def downgrade() -> None:
    op.drop_table('ratingcount')
    op.drop_table('ratingsummary')
    op.drop_table('rating')
    op.drop_table('checkin')
    with op.batch_alter_table('enrolment', schema=None) as batch_op:
        batch_op.drop_index('ix_enrolment_checkins_unplanned')
        batch_op.drop_column('checkins_planned')
