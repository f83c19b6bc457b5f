"""digests carry escalation events from a queue of their own, not by marking each event

Revision ID: 0012_digest_queue
Revises: 0011_ledger_bounced
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0012_digest_queue'
down_revision: str | None = '0011_ledger_bounced'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAMED = "digest_outbox_id IS NOT NULL"


def upgrade() -> None:
    op.create_table(
        'digestqueue',
        sa.Column('event_id', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['event_id'], ['escalationevent.id'], ),
        sa.PrimaryKeyConstraint('event_id'),
    )
    # What the old index found: open events no digest has carried yet.
    op.execute(
        "INSERT INTO digestqueue (event_id) SELECT id FROM escalationevent"
        " WHERE digest_outbox_id IS NULL AND resolved_at IS NULL"
    )
    with op.batch_alter_table('escalationevent', schema=None) as batch_op:
        batch_op.drop_index('ix_escalation_undigested')
        # Only digests written before the queue are named by their events (retention keeps
        # those): a small index that new events never write to.
        batch_op.create_index(
            'ix_escalation_digest', ['digest_outbox_id'], unique=False,
            sqlite_where=sa.text(NAMED), postgresql_where=sa.text(NAMED),
        )


def downgrade() -> None:
    with op.batch_alter_table('escalationevent', schema=None) as batch_op:
        batch_op.drop_index('ix_escalation_digest')
        batch_op.create_index(
            'ix_escalation_undigested', ['digest_outbox_id', 'resolved_at'], unique=False
        )
    # Events a digest carried since the upgrade have no digest_outbox_id: mark them as carried
    # by the newest digest to their recipient, so that the downgraded code does not send them
    # again.
    op.execute(
        "UPDATE escalationevent SET digest_outbox_id = (SELECT max(o.id) FROM outbox o"
        " WHERE o.kind = 'digest' AND o.to_email = escalationevent.recipient_email)"
        " WHERE digest_outbox_id IS NULL AND resolved_at IS NULL"
        " AND id NOT IN (SELECT event_id FROM digestqueue)"
    )
    op.drop_table('digestqueue')
