"""inbound mail: received messages, undeliverable and out-of-office people

Revision ID: 0007_inbound
Revises: 0006_shared_notes
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import nudger.db


revision: str = '0007_inbound'
down_revision: str | None = '0006_shared_notes'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('person', schema=None) as batch_op:
        batch_op.add_column(sa.Column('undeliverable_at', nudger.db.UTCDateTime(), nullable=True))
        batch_op.add_column(
            sa.Column('undeliverable_reason', sqlmodel.sql.sqltypes.AutoString(length=500),
                      nullable=True)
        )
        batch_op.add_column(sa.Column('out_of_office_at', nudger.db.UTCDateTime(), nullable=True))
        batch_op.create_index('ix_person_undeliverable', ['undeliverable_at'], unique=False,
                              sqlite_where=sa.text('undeliverable_at IS NOT NULL'),
                              postgresql_where=sa.text('undeliverable_at IS NOT NULL'))
    op.create_table('inboundmessage',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('message_key', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('received_at', nudger.db.UTCDateTime(), nullable=False),
    sa.Column('via', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('envelope_from', sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
    sa.Column('recipient', sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
    sa.Column('from_email', sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
    sa.Column('subject', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.Column('raw', sa.LargeBinary(), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=12), nullable=False),
    sa.Column('trusted', sa.Boolean(), nullable=False),
    sa.Column('outcome', sa.Text(), nullable=True),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=12), nullable=False),
    sa.Column('outbox_id', sa.Integer(), nullable=True),
    sa.Column('person_id', sa.Integer(), nullable=True),
    sa.Column('processed_at', nudger.db.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['outbox_id'], ['outbox.id'], ),
    sa.ForeignKeyConstraint(['person_id'], ['person.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('message_key')
    )
    with op.batch_alter_table('inboundmessage', schema=None) as batch_op:
        batch_op.create_index('ix_inboundmessage_state', ['state', 'received_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_inboundmessage_received_at'), ['received_at'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_inboundmessage_outbox_id'), ['outbox_id'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_inboundmessage_person_id'), ['person_id'],
                              unique=False)


def downgrade() -> None:
    op.drop_table('inboundmessage')
    with op.batch_alter_table('person', schema=None) as batch_op:
        batch_op.drop_index('ix_person_undeliverable')
        batch_op.drop_column('out_of_office_at')
        batch_op.drop_column('undeliverable_reason')
        batch_op.drop_column('undeliverable_at')
